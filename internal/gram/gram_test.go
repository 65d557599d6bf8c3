package gram

import (
	"errors"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/linalg"
)

// features returns a rows x n float32 block and its float64 twin.
func features(t testing.TB, rng *rand.Rand, rows, n int) ([]float32, *mat.Dense) {
	t.Helper()
	f := make([]float32, rows*n)
	d := make([]float64, rows*n)
	for i := range f {
		f[i] = float32(rng.NormFloat64())
		d[i] = float64(f[i])
	}
	return f, mat.NewDense(rows, n, d)
}

// relErr returns ||got - want||_F / ||want||_F.
func relErr(t *testing.T, got, want *mat.Dense) float64 {
	t.Helper()
	var d mat.Dense
	d.Sub(got, want)
	return mat.Norm(&d, 2) / mat.Norm(want, 2)
}

func checkClose(t *testing.T, name string, got, want *mat.Dense, tol float64) {
	t.Helper()
	if e := relErr(t, got, want); e > tol {
		t.Errorf("%s: relative error %.3g > %.3g", name, e, tol)
	}
}

func TestAddMatchesNaive(t *testing.T) {
	cases := []struct {
		name  string
		n     int
		rows  []int // blocks added one after another
		chunk int   // 0 = default
		cross bool
	}{
		{"cross one block", 9, []int{40}, 0, true},
		{"cross chunked", 9, []int{40, 3, 0, 17}, 7, true},
		{"plain chunked", 12, []int{33, 1}, 5, false},
		{"plain one row", 4, []int{1}, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tc.n)))
			acc := NewAccumulator(tc.n, tc.cross)
			if tc.chunk > 0 {
				acc.chunk = tc.chunk
			}
			total := 0
			for _, r := range tc.rows {
				total += r
			}
			_, x := features(t, rng, total, tc.n)
			_, xt := features(t, rng, total, tc.n)
			off := 0
			for _, r := range tc.rows {
				x32 := toF32(x.Slice(off, off+r, 0, tc.n).(*mat.Dense))
				xt32 := toF32(xt.Slice(off, off+r, 0, tc.n).(*mat.Dense))
				if !tc.cross {
					xt32 = nil
				}
				if err := acc.Add(x32, xt32, r); err != nil {
					t.Fatalf("Add: %v", err)
				}
				off += r
			}
			g := acc.Grams()
			if g.N != tc.n || g.Tokens != total {
				t.Fatalf("N, Tokens = %d, %d, want %d, %d", g.N, g.Tokens, tc.n, total)
			}
			var wg, wp, wq mat.Dense
			wg.Mul(x.T(), x)
			checkClose(t, "G", g.G, &wg, 1e-13)
			if !tc.cross {
				if g.P != g.G || g.Q != g.G {
					t.Fatalf("without cross terms P and Q must be G itself")
				}
				return
			}
			wp.Mul(x.T(), xt)
			wq.Mul(xt.T(), xt)
			checkClose(t, "P", g.P, &wp, 1e-13)
			checkClose(t, "Q", g.Q, &wq, 1e-13)
			if !mat.Equal(g.Q, g.Q.T()) || !mat.Equal(g.G, g.G.T()) {
				t.Fatalf("G and Q must be exactly symmetric")
			}
		})
	}
}

func toF32(m *mat.Dense) []float32 {
	r, c := m.Dims()
	out := make([]float32, 0, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out = append(out, float32(m.At(i, j)))
		}
	}
	return out
}

func TestMergeHalvesEqualsOnePass(t *testing.T) {
	for _, cross := range []bool{true, false} {
		rng := rand.New(rand.NewPCG(7, 8))
		const n, rows = 16, 50
		x, _ := features(t, rng, rows, n)
		xt, _ := features(t, rng, rows, n)
		if !cross {
			xt = nil
		}
		one := NewAccumulator(n, cross)
		if err := one.Add(x, xt, rows); err != nil {
			t.Fatal(err)
		}
		h1, h2 := NewAccumulator(n, cross), NewAccumulator(n, cross)
		const cut = 19
		var xt1, xt2 []float32
		if cross {
			xt1, xt2 = xt[:cut*n], xt[cut*n:]
		}
		if err := h1.Add(x[:cut*n], xt1, cut); err != nil {
			t.Fatal(err)
		}
		if err := h2.Add(x[cut*n:], xt2, rows-cut); err != nil {
			t.Fatal(err)
		}
		if err := h1.Merge(h2); err != nil {
			t.Fatal(err)
		}
		a, b := one.Grams(), h1.Grams()
		if a.Tokens != b.Tokens {
			t.Fatalf("tokens %d vs %d", a.Tokens, b.Tokens)
		}
		checkClose(t, "G", b.G, a.G, 1e-14)
		checkClose(t, "P", b.P, a.P, 1e-14)
		checkClose(t, "Q", b.Q, a.Q, 1e-14)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		run  func() error
		want error
	}{
		{"short x", func() error { return NewAccumulator(4, false).Add(make([]float32, 7), nil, 2) }, ErrShape},
		{"missing xt", func() error { return NewAccumulator(4, true).Add(make([]float32, 8), nil, 2) }, ErrShape},
		{"negative rows", func() error { return NewAccumulator(4, false).Add(nil, nil, -1) }, ErrShape},
		{"merge width", func() error { return NewAccumulator(4, false).Merge(NewAccumulator(5, false)) }, ErrShape},
		{"merge mode", func() error { return NewAccumulator(4, false).Merge(NewAccumulator(4, true)) }, ErrMode},
		{"features shape", func() error {
			_, err := FromFeatures(mat.NewDense(3, 2, nil), mat.NewDense(2, 2, nil))
			return err
		}, ErrShape},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A rejected block leaves the sums untouched.
	a := NewAccumulator(2, false)
	_ = a.Add([]float32{1, 2, 3}, nil, 2)
	if a.Tokens() != 0 || mat.Norm(a.Grams().G, 2) != 0 {
		t.Fatalf("rejected block changed the accumulator")
	}
}

func TestFromFeatures(t *testing.T) {
	x := mat.NewDense(3, 2, []float64{1, 2, 3, 4, 5, 6})
	xt := mat.NewDense(3, 2, []float64{1, 0, 0, 1, 1, 1})
	g, err := FromFeatures(x, xt)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		got  *mat.Dense
		want []float64
	}{
		"G": {g.G, []float64{35, 44, 44, 56}},
		"P": {g.P, []float64{6, 8, 8, 10}}, // X^T X~
		"Q": {g.Q, []float64{2, 1, 1, 2}},
	}
	for name, w := range want {
		if !mat.Equal(w.got, mat.NewDense(2, 2, w.want)) {
			t.Errorf("%s = %v, want %v", name, mat.Formatted(w.got), w.want)
		}
	}
}

// BenchmarkAdd4096 measures one 2048-token block of 4096-wide features with
// cross terms (two Syrk and one Gemm of 2048 x 4096, ~137 GFLOP).
func BenchmarkAdd4096(b *testing.B) {
	if _, err := linalg.Init(linalg.ModeAuto); err != nil {
		b.Fatal(err)
	}
	b.Logf("backend: %s", linalg.Current())
	const n, rows = 4096, 2048
	rng := rand.New(rand.NewPCG(1, 2))
	x, _ := features(b, rng, rows, n)
	xt, _ := features(b, rng, rows, n)
	acc := NewAccumulator(n, true)
	b.ResetTimer()
	for range b.N {
		if err := acc.Add(x, xt, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(4*rows*n*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
