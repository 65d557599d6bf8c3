package linalg

import (
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// checkFactors asserts the shape of (b2, a2), that b2·a2 is the best
// rank-k approximation want within tol, that b2's column norms are the
// singular values sv, that a2's rows are orthonormal and that each row's
// largest-magnitude entry is positive.
func checkFactors(t *testing.T, b2, a2, want *mat.Dense, sv []float64, tol float64) {
	t.Helper()
	m, n := want.Dims()
	k := len(sv)
	if r, c := b2.Dims(); r != m || c != k {
		t.Fatalf("B2 is %d×%d, want %d×%d", r, c, m, k)
	}
	if r, c := a2.Dims(); r != k || c != n {
		t.Fatalf("A2 is %d×%d, want %d×%d", r, c, k, n)
	}
	if e := relErr(t, naiveMul(b2, a2), want); e > tol {
		t.Errorf("B2·A2 relative error %.3g against the Jacobi SVD rank-%d approximation", e, k)
	}
	scale := max(sv[0], 1e-300)
	for j := 0; j < k; j++ {
		var nrm float64
		for i := 0; i < m; i++ {
			nrm += b2.At(i, j) * b2.At(i, j)
		}
		if d := math.Abs(math.Sqrt(nrm) - sv[j]); d > tol*scale {
			t.Errorf("column %d of B2 has norm %.15g, want singular value %.15g", j, math.Sqrt(nrm), sv[j])
		}
	}
	checkOrthonormalRows(t, "A2", a2.RawMatrix().Data, k, n, a2.RawMatrix().Stride)
	for j := 0; j < k; j++ {
		row := a2.RawRowView(j)
		best := 0
		for i, v := range row {
			if math.Abs(v) > math.Abs(row[best]) {
				best = i
			}
		}
		if row[best] < 0 {
			t.Errorf("row %d of A2: largest entry %g is negative", j, row[best])
		}
	}
}

func TestTruncateFactors(t *testing.T) {
	rng := newRNG(30)
	lowRankB := naiveMul(randDense(rng, 30, 3), randDense(rng, 3, 8)) // rank 3
	for _, tc := range []struct {
		name    string
		m, r, n int
		k       int
		b       *mat.Dense // nil: random m×r
		wantK   int
	}{
		{"1x1", 1, 1, 1, 1, nil, 1},
		{"small", 5, 3, 4, 2, nil, 2},
		{"tall B", 30, 8, 20, 4, nil, 4},
		{"k equals R", 20, 12, 30, 12, nil, 12},
		{"R exceeds m and n", 8, 12, 6, 5, nil, 5},
		{"k exceeds n", 40, 6, 3, 10, nil, 3},
		{"rank deficient", 30, 8, 25, 5, lowRankB, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			if b == nil {
				b = randDense(rng, tc.m, tc.r)
			}
			a := randDense(rng, tc.r, tc.n)
			b0, a0 := mat.DenseCopyOf(b), mat.DenseCopyOf(a)
			b2, a2 := TruncateFactors(b, a, tc.k)
			want, sv := naiveRankK(naiveMul(b, a), tc.wantK)
			checkFactors(t, b2, a2, want, sv, 1e-10)
			if !mat.Equal(b, b0) || !mat.Equal(a, a0) {
				t.Error("inputs modified")
			}
		})
	}
}

func TestTruncateDenseExact(t *testing.T) {
	rng := newRNG(31)
	for _, tc := range []struct{ m, n, k, wantK int }{
		{1, 1, 1, 1}, {7, 5, 3, 3}, {30, 40, 10, 10}, {25, 25, 25, 25}, {6, 9, 20, 6},
	} {
		t.Run(fmt.Sprintf("%dx%d_k%d", tc.m, tc.n, tc.k), func(t *testing.T) {
			w := randDense(rng, tc.m, tc.n)
			b, a := TruncateDense(w, tc.k, 1)
			want, sv := naiveRankK(w, tc.wantK)
			checkFactors(t, b, a, want, sv, 1e-10)
		})
	}
}

// lowRankWithSpectrum returns U diag(s) Vᵀ (m×n) and its best rank-k
// approximation, for random orthonormal U and V.
func lowRankWithSpectrum(rng interface{ NormFloat64() float64 }, m, n int, s []float64, k int) (w, best *mat.Dense) {
	r := len(s)
	u := naiveOrthonormal(randDenseFrom(rng, m, r))
	v := naiveOrthonormal(randDenseFrom(rng, n, r))
	build := func(upto int) *mat.Dense {
		us := mat.NewDense(m, upto, nil)
		for i := 0; i < m; i++ {
			for j := 0; j < upto; j++ {
				us.Set(i, j, u.At(i, j)*s[j])
			}
		}
		return naiveMul(us, v.Slice(0, n, 0, upto).T())
	}
	return build(r), build(k)
}

func randDenseFrom(rng interface{ NormFloat64() float64 }, m, n int) *mat.Dense {
	d := mat.NewDense(m, n, nil)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			d.Set(i, j, rng.NormFloat64())
		}
	}
	return d
}

func TestTruncateDenseRandomized(t *testing.T) {
	rng := newRNG(32)
	m, n, k := ExactSVDMaxDim+76, ExactSVDMaxDim+16, 8
	s := make([]float64, 30)
	for i := range s {
		s[i] = 10 * math.Pow(0.5, float64(i))
	}
	w, best := lowRankWithSpectrum(rng, m, n, s, k)
	b, a := TruncateDense(w, k, 7)
	checkFactors(t, b, a, best, s[:k], 1e-10)
	b2, a2 := TruncateDense(w, k, 7)
	if !mat.Equal(b, b2) || !mat.Equal(a, a2) {
		t.Error("same seed gave different factors")
	}
	b3, a3 := TruncateDense(w, k, 8)
	if e := relErr(t, naiveMul(b3, a3), best); e > 1e-10 {
		t.Errorf("seed 8: relative error %.3g", e)
	}
}

// TestTruncateBackendsAgree: the truncations give the same factors on
// gonum and on OpenBLAS.
func TestTruncateBackendsAgree(t *testing.T) {
	rng := newRNG(33)
	bf, af := randDense(rng, 120, 24), randDense(rng, 24, 90)
	wd := randDense(rng, 70, 50)
	s := make([]float64, 40)
	for i := range s {
		s[i] = math.Pow(0.7, float64(i))
	}
	wr, _ := lowRankWithSpectrum(rng, ExactSVDMaxDim+10, ExactSVDMaxDim+5, s, 1)
	metric := gram(rng, 80, 50, 0.5)
	run := func() []*mat.Dense {
		b1, a1 := TruncateFactors(bf, af, 10)
		b2, a2 := TruncateDense(wd, 12, 3)
		b3, a3 := TruncateDense(wr, 16, 3)
		b4, a4, _, err := TruncateWeighted(wd, metric, 12, 3)
		if err != nil {
			t.Fatal(err)
		}
		return []*mat.Dense{b1, a1, b2, a2, b3, a3, b4, a4}
	}
	g, o := bothBackends(t, run)
	names := []string{"TruncateFactors B2", "TruncateFactors A2", "TruncateDense exact B", "TruncateDense exact A",
		"TruncateDense randomized B", "TruncateDense randomized A", "TruncateWeighted B", "TruncateWeighted A"}
	for i := range g {
		if e := relErr(t, o[i], g[i]); e > 1e-12 {
			t.Errorf("%s: openblas vs gonum relative difference %.3g", names[i], e)
		}
	}
}

func TestTruncatePanicsOnMisuse(t *testing.T) {
	rng := newRNG(34)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"factor shapes", func() { TruncateFactors(randDense(rng, 4, 3), randDense(rng, 2, 5), 1) }},
		{"factors k=0", func() { TruncateFactors(randDense(rng, 4, 3), randDense(rng, 3, 5), 0) }},
		{"dense k=0", func() { TruncateDense(randDense(rng, 4, 3), 0, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tc.f()
		})
	}
}
