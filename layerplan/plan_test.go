package layerplan

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden plan files")

// goldenPlans are the plans whose canonical JSON is kept in testdata: a change to the Plan's
// fields, their order or any estimate shows up as a diff there.
var goldenPlans = []struct {
	file    string
	in      func() Input
	workers []Worker
}{
	{"plan-tiny-jacobi.json", func() Input { return tinyInput(jacobi(2, Full, true, 2)) }, workersOf(2, 64*miB)},
	{"plan-tiny-sweep.json", func() Input { return tinyInput(sweep(Full, true, 2)) }, workersOf(3, 64*miB)},
}

func TestGoldenPlans(t *testing.T) {
	for _, g := range goldenPlans {
		p := buildPlan(t, g.in(), g.workers)
		got, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", g.file)
		if *update {
			if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to write it)", err)
		}
		if got := append(got, '\n'); !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			lo := max(0, i-120)
			t.Errorf("%s: the plan's JSON changed at byte %d (go test -update rewrites it):\n got  ...%.240s\n want ...%.240s", g.file, i, got[lo:], want[lo:])
		}
		// Decoding the golden bytes gives the same plan and hash; the plan verifies.
		q, err := Decode(want)
		if err != nil {
			t.Fatalf("%s: %v", g.file, err)
		}
		if q.Hash() != p.Hash() || len(p.Hash()) != 64 {
			t.Errorf("%s: decoded hash %s, built %s", g.file, q.Hash(), p.Hash())
		}
		if err := q.Verify(); err != nil {
			t.Errorf("%s: %v", g.file, err)
		}
	}
}

func TestBuildIsAValue(t *testing.T) {
	in := llamaInput(llama8B, jacobi(5, Full, true, 16))
	a := buildPlan(t, in, workersOf(4, 72*giB))
	// Changing the caller's input afterwards does not change the plan.
	in.Tasks[0].Lengths[0] = 1
	in.Sites[0].Ranks[0] = 1
	b := buildPlan(t, llamaInput(llama8B, jacobi(5, Full, true, 16)), workersOf(4, 72*giB))
	if a.Hash() != b.Hash() {
		t.Errorf("hashes differ: %s vs %s", a.Hash(), b.Hash())
	}
	if a.Input.Tasks[0].Lengths[0] != 128 || a.Input.Sites[0].Ranks[0] != 16 {
		t.Error("the plan shares the caller's slices")
	}
	// A different worker list is a different plan.
	c := buildPlan(t, llamaInput(llama8B, jacobi(5, Full, true, 16)), workersOf(4, 73*giB))
	if c.Hash() == a.Hash() {
		t.Error("plans for different workers hash alike")
	}
	if a.SingleProcess.Peak != 102192660480 {
		t.Errorf("single-process estimate %d, want 102192660480", a.SingleProcess.Peak)
	}
}

func TestDecodeRefuses(t *testing.T) {
	p := buildPlan(t, tinyInput(jacobi(2, Full, true, 2)), workersOf(2, 64*miB))
	good, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	s := string(good)
	tests := []struct {
		name string
		json string
		want string
	}{
		{"trailing data", s + " {}", "data after the plan object"},
		{"trailing garbage", s + "x", "data after the plan object"},
		{"unknown field", strings.Replace(s, `"version":1`, `"version":1,"extra":2`, 1), `unknown field "extra"`},
		{"version", strings.Replace(s, `"version":1`, `"version":2`, 1), "version 2 (this build reads 1)"},
		{"not json", "plan", "not a plan JSON object"},
		{"bad point", strings.Replace(s, `"point":"o_in"`, `"point":"x_in"`, 1), `point "x_in"`},
		{"input", strings.Replace(s, `"layers":4`, `"layers":0`, 1), "model.layers: 0"},
		{"shard gap", strings.Replace(s, `"lo":2,"hi":4`, `"lo":3,"hi":4`, 1), "shards[1] is #1 [3, 4), want #1 starting at layer 2"},
		{"worker memory", strings.Replace(s, `"memory":67108864`, `"memory":1000`, 1), "shards[0]: peak"},
		{"forward dependency", strings.Replace(s, `"after":[0,1]`, `"after":[0,7]`, 1), "depends on step 7"},
		{"step bytes", strings.Replace(s, `"bytes":1088}`, `"bytes":1089}`, 1), "its transfers sum to 1088"},
		{"too large", s + strings.Repeat(" ", MaxPlanBytes), "bytes of JSON, at most"},
	}
	for _, tc := range tests {
		if tc.json == s {
			t.Fatalf("%s: the edit did not apply", tc.name)
		}
		_, err := Decode([]byte(tc.json))
		if !errors.Is(err, ErrPlan) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrPlan with %q", tc.name, err, tc.want)
		}
	}
	// A structurally valid plan with a changed estimate decodes, and Verify catches it.
	tampered := regexp.MustCompile(`"peak":(\d+)`).ReplaceAllStringFunc(s, func(m string) string { return m[:len(m)-1] + "0" })
	q, err := Decode([]byte(tampered))
	if tampered == s || err != nil {
		t.Fatalf("tampered plan: %v", err)
	}
	if err := q.Verify(); !errors.Is(err, ErrPlan) {
		t.Errorf("Verify of a tampered plan: %v", err)
	}
}

// FuzzDecode: no input crashes Decode, and whatever it accepts re-encodes to a plan that
// decodes to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, g := range goldenPlans {
		b, err := os.ReadFile(filepath.Join("testdata", g.file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"input":{"model":{"layers":1}},"shards":[{"lo":0,"hi":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrPlan) {
				t.Fatalf("error %v does not wrap ErrPlan", err)
			}
			return
		}
		e1, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		q, err := Decode(e1)
		if err != nil {
			t.Fatalf("re-encoded plan does not decode: %v", err)
		}
		e2, _ := q.Encode()
		if !bytes.Equal(e1, e2) {
			t.Fatal("encode(decode(encode(p))) differs")
		}
	})
}
