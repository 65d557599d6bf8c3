package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestEveryMessageRefusesOtherVersionsAndSizes: every JSON message decoder refuses a message of
// another version (naming both versions and the message), one over MaxMessageSize (before
// parsing it), and trailing data.
func TestEveryMessageRefusesOtherVersionsAndSizes(t *testing.T) {
	for _, tc := range sampleMessages() {
		t.Run(tc.name, func(t *testing.T) {
			b := Encode(tc.msg)
			if !bytes.HasPrefix(b, []byte(`{"v":1`)) {
				t.Fatalf("%s does not start with its version: %s", tc.name, b)
			}
			for _, v := range []string{"2", "0", "-1", "1000000"} {
				_, err := tc.decode(bytes.Replace(b, []byte(`{"v":1`), []byte(`{"v":`+v), 1))
				if !errors.Is(err, ErrMessageVersion) || !strings.Contains(err.Error(), "version "+v+" (this build speaks 1)") {
					t.Errorf("version %s: %v", v, err)
				}
			}
			huge := append(append([]byte{}, b...), bytes.Repeat([]byte(" "), MaxMessageSize)...)
			if _, err := tc.decode(huge); !errors.Is(err, ErrMessage) || !strings.Contains(err.Error(), "(at most 8388608)") {
				t.Errorf("oversized: %v", err)
			}
			if _, err := tc.decode(append(append([]byte{}, b...), "{}"...)); !errors.Is(err, ErrMessage) || !strings.Contains(err.Error(), "data after the message") {
				t.Errorf("trailing data: %v", err)
			}
		})
	}
	g := EncodeGenStep(GenStep{Job: "j-1", Attempt: 1, Slots: []int{0}}, nil)
	g2 := bytes.Replace(g, []byte(`{"v":1`), []byte(`{"v":2`), 1)
	if _, _, err := DecodeGenStep(g2); !errors.Is(err, ErrMessageVersion) || !strings.Contains(err.Error(), "generation step") {
		t.Errorf("generation step of version 2: %v", err)
	}
	if _, _, err := DecodeGenStep(make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrMessage) {
		t.Errorf("oversized generation step: %v", err)
	}
}

// TestJobIDsFromPeersAreSafe: wherever a message carries a job id (which becomes part of bucket,
// stream, subject and consumer names), one that could escape a name or a path is refused.
func TestJobIDsFromPeersAreSafe(t *testing.T) {
	key := `"job":"j-0001"`
	for _, tc := range sampleMessages() {
		b := Encode(tc.msg)
		if !bytes.Contains(b, []byte(key)) {
			continue
		}
		for _, bad := range []string{"../etc", "a/b", ".", "..", "J", "a.b", "a>", "a*", "a b", `a\\b`, strings.Repeat("j", 65)} {
			_, err := tc.decode(bytes.ReplaceAll(b, []byte(key), []byte(`"job":"`+bad+`"`)))
			if !errors.Is(err, ErrMessage) || !strings.Contains(err.Error(), "invalid job id") {
				t.Errorf("%s with job %q: %v", tc.name, bad, err)
			}
		}
	}
	g := EncodeGenStep(GenStep{Job: "../x", Attempt: 1}, nil)
	if _, _, err := DecodeGenStep(g); !errors.Is(err, ErrMessage) || !strings.Contains(err.Error(), "invalid job id") {
		t.Errorf("generation step with job ../x: %v", err)
	}
	for _, bad := range []string{"../w", "w/1", "", strings.Repeat("w", MaxNameLen+1)} {
		if err := ValidateName("worker", bad); err == nil {
			t.Errorf("worker id %q accepted", bad)
		}
	}
}
