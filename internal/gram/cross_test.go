package gram

import (
	"errors"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestCrossAddMatchesNaive checks R = D^T X~ against a dense float64
// product, for one block and for several blocks split across chunks, with
// the drift given (Add) and formed from the two residual streams (AddDiff).
func TestCrossAddMatchesNaive(t *testing.T) {
	cases := []struct {
		name    string
		out, in int
		rows    []int
		chunk   int // 0 = default
	}{
		{"one block", 6, 9, []int{40}, 0},
		{"chunked", 7, 5, []int{40, 3, 0, 17}, 6},
		{"one row", 3, 4, []int{1}, 0},
		{"wide drift", 13, 2, []int{9, 9}, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, uint64(tc.out*100+tc.in)))
			total := 0
			for _, r := range tc.rows {
				total += r
			}
			h32, h := features(t, rng, total, tc.out)
			ht32, ht := features(t, rng, total, tc.out)
			xt32, xt := features(t, rng, total, tc.in)
			var d mat.Dense
			d.Sub(h, ht)
			want := new(mat.Dense)
			want.Mul(d.T(), xt)

			diff := NewCrossAccumulator(tc.out, tc.in)
			given := NewCrossAccumulator(tc.out, tc.in)
			if tc.chunk > 0 {
				diff.chunk, given.chunk = tc.chunk, tc.chunk
			}
			off := 0
			for _, r := range tc.rows {
				ho, hto := h32[off*tc.out:(off+r)*tc.out], ht32[off*tc.out:(off+r)*tc.out]
				xo := xt32[off*tc.in : (off+r)*tc.in]
				if err := diff.AddDiff(ho, hto, xo, r); err != nil {
					t.Fatalf("AddDiff: %v", err)
				}
				d32 := make([]float32, len(ho))
				for i := range ho {
					d32[i] = ho[i] - hto[i]
				}
				if err := given.Add(d32, xo, r); err != nil {
					t.Fatalf("Add: %v", err)
				}
				off += r
			}
			if diff.Tokens() != total || given.Tokens() != total {
				t.Fatalf("tokens %d, %d, want %d", diff.Tokens(), given.Tokens(), total)
			}
			if o, i := diff.Dims(); o != tc.out || i != tc.in {
				t.Fatalf("Dims = %d, %d, want %d, %d", o, i, tc.out, tc.in)
			}
			// AddDiff forms the drift exactly in float64; Add takes it
			// rounded to float32 once.
			checkClose(t, "AddDiff", diff.Sum(), want, 1e-13)
			checkClose(t, "Add", given.Sum(), want, 1e-6)
		})
	}
}

func TestCrossMergeAndFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const out, in, rows, cut = 8, 11, 30, 13
	_, d := features(t, rng, rows, out)
	_, xt := features(t, rng, rows, in)
	one := NewCrossAccumulator(out, in)
	if err := one.AddFloat64(d.RawMatrix().Data, xt.RawMatrix().Data, rows); err != nil {
		t.Fatal(err)
	}
	h1, h2 := NewCrossAccumulator(out, in), NewCrossAccumulator(out, in)
	if err := h1.AddFloat64(d.RawMatrix().Data[:cut*out], xt.RawMatrix().Data[:cut*in], cut); err != nil {
		t.Fatal(err)
	}
	if err := h2.AddFloat64(d.RawMatrix().Data[cut*out:], xt.RawMatrix().Data[cut*in:], rows-cut); err != nil {
		t.Fatal(err)
	}
	if err := h1.Merge(h2); err != nil {
		t.Fatal(err)
	}
	if err := h1.Merge(nil); err != nil {
		t.Fatal(err)
	}
	var want mat.Dense
	want.Mul(d.T(), xt)
	checkClose(t, "one pass", one.Sum(), &want, 1e-14)
	checkClose(t, "merged halves", h1.Sum(), &want, 1e-14)
	if h1.Tokens() != rows {
		t.Fatalf("merged tokens %d, want %d", h1.Tokens(), rows)
	}
	// Sum is a copy.
	s := one.Sum()
	s.Set(0, 0, 1e9)
	if one.Sum().At(0, 0) == 1e9 {
		t.Fatal("Sum shares the accumulator's storage")
	}
}

func TestCrossErrors(t *testing.T) {
	cases := []struct {
		name string
		run  func(a *CrossAccumulator) error
	}{
		{"short drift", func(a *CrossAccumulator) error { return a.Add(make([]float32, 5), make([]float32, 6), 2) }},
		{"short xt", func(a *CrossAccumulator) error { return a.Add(make([]float32, 4), make([]float32, 5), 2) }},
		{"short merged residual", func(a *CrossAccumulator) error {
			return a.AddDiff(make([]float32, 4), make([]float32, 3), make([]float32, 6), 2)
		}},
		{"negative rows", func(a *CrossAccumulator) error { return a.Add(nil, nil, -1) }},
		{"float64 shape", func(a *CrossAccumulator) error { return a.AddFloat64(make([]float64, 4), nil, 2) }},
		{"merge shape", func(a *CrossAccumulator) error { return a.Merge(NewCrossAccumulator(3, 2)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := NewCrossAccumulator(2, 3)
			if err := tc.run(a); !errors.Is(err, ErrShape) {
				t.Fatalf("got %v, want ErrShape", err)
			}
			if a.Tokens() != 0 || mat.Norm(a.Sum(), 2) != 0 {
				t.Fatalf("rejected call changed the accumulator")
			}
		})
	}
	if NewCrossAccumulator(0, 4).Sum() != nil {
		t.Fatal("Sum of an empty-width accumulator should be nil")
	}
}
