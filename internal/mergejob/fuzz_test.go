package mergejob

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/shard"
)

func sampleUpdates() shard.Updates {
	return shard.Updates{
		"model.layers.0.self_attn.q_proj": {B: mat.NewDense(2, 1, []float64{1, -2}), A: mat.NewDense(1, 3, []float64{0.5, 0, -0}), Coefs: []float64{1, 2.5}},
		"model.layers.1.mlp.down_proj":    {B: mat.NewDense(1, 2, []float64{3, 4}), A: mat.NewDense(2, 1, []float64{5, 6})},
	}
}

// FuzzDecodeUpdates feeds arbitrary factors artifacts (a worker's output, read by the leader and
// by the next jacobi solve) to DecodeUpdates: it never panics, and what it accepts has non-empty
// finite factors whose shapes agree, and encodes again.
func FuzzDecodeUpdates(f *testing.F) {
	b, err := EncodeUpdates(sampleUpdates())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	recs, _ := EncodeRecords(StepRecords{Sites: map[string]output.SiteRecord{}})
	f.Add(recs)
	f.Fuzz(func(t *testing.T, b []byte) {
		up, err := DecodeUpdates(b)
		if err != nil {
			return
		}
		for name, u := range up {
			m, k := u.B.Dims()
			k2, n := u.A.Dims()
			if m == 0 || k == 0 || n == 0 || k != k2 {
				t.Fatalf("site %s accepted as %dx%d times %dx%d", name, m, k, k2, n)
			}
			for _, d := range []*mat.Dense{u.B, u.A} {
				for _, v := range d.RawMatrix().Data {
					if math.IsNaN(v) || math.IsInf(v, 0) {
						t.Fatalf("site %s accepted with %v", name, v)
					}
				}
			}
		}
		if _, err := EncodeUpdates(up); err != nil {
			t.Fatalf("accepted updates do not encode: %v", err)
		}
	})
}

// FuzzDecodeRecords feeds arbitrary records artifacts (read by the leader's check and by the
// assembly of the merge report) to DecodeRecords: it never panics, and what it accepts encodes
// again.
func FuzzDecodeRecords(f *testing.F) {
	rc := 0.5
	b, err := EncodeRecords(StepRecords{Sites: map[string]output.SiteRecord{"model.layers.0.self_attn.q_proj": {Residual: 0.25, RelChange: &rc}},
		CaptureSeconds: 1, SolveSeconds: 2, RefineSeconds: 3, Layers: []output.LayerRecord{{Layer: 0}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecords(b)
		if err != nil {
			return
		}
		if _, err := EncodeRecords(r); err != nil {
			t.Fatalf("accepted records do not encode: %v", err)
		}
	})
}
