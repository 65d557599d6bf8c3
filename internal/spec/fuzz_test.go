package spec

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error wraps
// ErrConfig and names the file, and that an accepted config passes its own
// value checks and yields a Canonical form that marshals to JSON.
func FuzzParse(f *testing.F) {
	if good, err := os.ReadFile("testdata/good.yaml"); err == nil {
		f.Add(good)
	}
	for _, s := range []string{
		"", "---\n", headCat, headIterIS, headCat + "---\n" + headCat,
		headCat + "parameters: &p {density: 0.5, <<: *p}\n",
		headCat + "  - <<: [{name: x}, {weight: 2}]\n    path: b\n",
		headIterIS + "parameters: {schedule: jacobi, completion_tokens: 5, seed: 0x10}\noutput: {rank: full}\n",
		headCat + "cluster: {mode: nats, url: \"nats://a:1,b:2\"}\n",
		"a: &a [*a, *a]\nbase_model: *a\n",
		headIterIS + "parameters: {objective: residual, refine: {steps: 3, lr: 1.0e-3}, samples: all, truncation: svd}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q does not wrap ErrConfig or name the file", err)
			}
			if s != nil {
				t.Fatal("non-nil Spec with an error")
			}
			return
		}
		if errs := s.check(); len(errs) != 0 {
			t.Fatalf("accepted config fails its own checks: %v", joinErrors(errs))
		}
		if _, err := json.Marshal(s.Canonical()); err != nil {
			t.Fatalf("Canonical does not marshal: %v", err)
		}
		_ = s.Warnings()
	})
}
