package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestJSONEvents(t *testing.T) {
	var buf bytes.Buffer
	r, err := New(JSON, &buf)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(0, 0)
	r.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	p := r.Phase("capture", 3)
	p.Set(1)
	p.Set(2)
	p.Done()
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		kinds = append(kinds, ev["event"].(string))
		if ev["phase"] != "capture" {
			t.Errorf("event %v: phase %v, want capture", ev["event"], ev["phase"])
		}
	}
	want := "phase_start progress progress phase_end"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("events %q, want %q", got, want)
	}
}

func TestModes(t *testing.T) {
	tests := []struct {
		mode    Mode
		want    Mode
		wantErr bool
	}{
		{Auto, None, false}, // a bytes.Buffer is not a terminal
		{Bar, Bar, false},
		{None, None, false},
		{"fancy", "", true},
	}
	for _, tc := range tests {
		r, err := New(tc.mode, &bytes.Buffer{})
		if tc.wantErr {
			if !errors.Is(err, ErrMode) || !strings.Contains(err.Error(), "fancy") {
				t.Errorf("mode %q: error %v, want ErrMode naming it", tc.mode, err)
			}
			continue
		}
		if err != nil || r.Mode() != tc.want {
			t.Errorf("mode %q: got %v, %v; want %v", tc.mode, r.Mode(), err, tc.want)
		}
	}
}

func TestBarDraws(t *testing.T) {
	var buf bytes.Buffer
	r, _ := New(Bar, &buf)
	p := r.Phase("eval", 4)
	p.Done()
	if !strings.Contains(buf.String(), "4/4") || !strings.Contains(buf.String(), "eval") {
		t.Errorf("bar output %q lacks the phase name and 4/4", buf.String())
	}
}
