package linalg

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// pinvReference is Q diag(1/λ for |λ| > cut) Qᵀ B computed with loops.
func pinvReference(q *mat.Dense, eig []float64, cut float64, b *mat.Dense) *mat.Dense {
	n := len(eig)
	inv := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for l, v := range eig {
				if math.Abs(v) > cut {
					s += q.At(i, l) * q.At(j, l) / v
				}
			}
			inv.Set(i, j, s)
		}
	}
	return naiveMul(inv, b)
}

func TestCholeskySolve(t *testing.T) {
	rng := newRNG(20)
	for _, tc := range []struct{ n, nrhs int }{{1, 1}, {2, 3}, {17, 5}, {64, 64}, {100, 1}} {
		t.Run(fmt.Sprintf("n%d_rhs%d", tc.n, tc.nrhs), func(t *testing.T) {
			h := gram(rng, tc.n+5, tc.n, 0.1)
			b := randDense(rng, tc.n, tc.nrhs)
			h0, b0 := mat.NewSymDense(tc.n, nil), mat.DenseCopyOf(b)
			h0.CopySym(h)
			x, err := choleskySolve(h, b)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(t, x, naiveSolve(h, b)); e > 1e-10 {
				t.Errorf("relative error %.3g against Gaussian elimination", e)
			}
			if !mat.Equal(h, h0) || !mat.Equal(b, b0) {
				t.Error("inputs modified")
			}
		})
	}
}

func TestCholeskySolveErrors(t *testing.T) {
	rng := newRNG(21)
	nan := gram(rng, 6, 4, 0)
	nan.SetSym(1, 2, math.NaN())
	for _, tc := range []struct {
		name string
		h    *mat.SymDense
		b    *mat.Dense
		want error
	}{
		{"rows mismatch", gram(rng, 5, 4, 0), randDense(rng, 3, 2), ErrShape},
		{"empty H", &mat.SymDense{}, randDense(rng, 3, 2), ErrShape},
		{"NaN in H", nan, randDense(rng, 4, 1), ErrNotFinite},
		{"Inf in B", gram(rng, 5, 2, 0), mat.NewDense(2, 1, []float64{1, math.Inf(1)}), ErrNotFinite},
		{"indefinite", mat.NewSymDense(2, []float64{1, 2, 2, 1}), randDense(rng, 2, 1), ErrNotPositiveDefinite},
		// 1 + 1e-17 rounds to 1: the second pivot is exactly 0.
		{"singular", mat.NewSymDense(2, []float64{1, 1, 1, 1 + 1e-17}), randDense(rng, 2, 1), ErrNotPositiveDefinite},
		// Positive definite, condition number 1e18.
		{"ill-conditioned", mat.NewSymDense(2, []float64{1, 0, 0, 1e-18}), randDense(rng, 2, 1), ErrSingular},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := choleskySolve(tc.h, tc.b)
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestLUSolve(t *testing.T) {
	rng := newRNG(22)
	for _, tc := range []struct{ n, nrhs int }{{1, 1}, {3, 2}, {20, 7}, {70, 3}} {
		t.Run(fmt.Sprintf("n%d_rhs%d", tc.n, tc.nrhs), func(t *testing.T) {
			a := randDense(rng, tc.n, tc.n)
			b := randDense(rng, tc.n, tc.nrhs)
			a0 := mat.DenseCopyOf(a)
			x, err := luSolve(a, b)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(t, x, naiveSolve(a, b)); e > 1e-10 {
				t.Errorf("relative error %.3g against Gaussian elimination", e)
			}
			if !mat.Equal(a, a0) {
				t.Error("A modified")
			}
		})
	}
	zeroCol := randDense(rng, 30, 30)
	for i := 0; i < 30; i++ {
		zeroCol.Set(i, 4, 0)
	}
	rank1 := naiveMul(randDense(rng, 40, 1), randDense(rng, 1, 40))
	for _, tc := range []struct {
		name string
		a, b *mat.Dense
		want error
	}{
		{"not square", randDense(rng, 3, 4), randDense(rng, 3, 1), ErrShape},
		{"rows mismatch", randDense(rng, 3, 3), randDense(rng, 4, 1), ErrShape},
		{"empty A", &mat.Dense{}, randDense(rng, 4, 1), ErrShape},
		{"zero column", zeroCol, randDense(rng, 30, 2), ErrSingular},
		{"rank 1", rank1, randDense(rng, 40, 2), ErrSingular},
		{"NaN", mat.NewDense(1, 1, []float64{math.NaN()}), randDense(rng, 1, 1), ErrNotFinite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := luSolve(tc.a, tc.b); !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPinvSolveSym(t *testing.T) {
	rng := newRNG(23)
	for _, tc := range []struct {
		name  string
		eig   []float64
		nrhs  int
		rcond float64
		cut   float64 // eigenvalues at most this are dropped by the reference
	}{
		{"1x1", []float64{2}, 1, 1e-10, 0},
		{"1x1 zero", []float64{0}, 2, 1e-10, 0},
		{"full rank", []float64{3, -2, 1, 0.5, 4}, 3, 1e-10, 0},
		{"rank deficient", []float64{3, -2, 0, 1, 0, 0.5}, 4, 1e-10, 1e-9},
		{"rcond drops small", []float64{1, 2, 1e-3, -1e-3, 5}, 2, 1e-2 / 5, 0.02},
		{"40 half zero", append(randSlice(rng, 20), make([]float64, 20)...), 5, 1e-10, 1e-9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, q := symFromEig(rng, tc.eig)
			b := randDense(rng, len(tc.eig), tc.nrhs)
			x, err := pinvSolveSym(h, b, tc.rcond)
			if err != nil {
				t.Fatal(err)
			}
			want := pinvReference(q, tc.eig, tc.cut, b)
			if e := relErr(t, x, want); e > 1e-10 {
				t.Errorf("relative error %.3g against Q diag(1/λ) Qᵀ B", e)
			}
		})
	}
	for _, rc := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := pinvSolveSym(gram(rng, 3, 2, 0), randDense(rng, 2, 1), rc); !errors.Is(err, ErrBadRcond) {
			t.Errorf("rcond %v: error %v, want ErrBadRcond", rc, err)
		}
	}
}

func TestSolveSym(t *testing.T) {
	rng := newRNG(24)
	indefinite, _ := symFromEig(rng, []float64{3, -1, 2, -0.5, 1, 4, -2, 1.5})
	singularPSD, qs := symFromEig(rng, []float64{3, 0, 2, 0, 1, 4, 0, 1.5})
	singularIndef, qi := symFromEig(rng, []float64{3, 0, -2, 0, 1, -4, 0, 1.5})
	rankDeficientGram := gram(rng, 5, 12, 0) // rank 5 of 12
	for _, tc := range []struct {
		name   string
		h      *mat.SymDense
		method string
		want   func(b *mat.Dense) *mat.Dense
	}{
		{"positive definite", gram(rng, 30, 20, 0), MethodCholesky, nil},
		{"1x1", mat.NewSymDense(1, []float64{4}), MethodCholesky, nil},
		{"indefinite", indefinite, MethodLU, nil},
		{"singular PSD", singularPSD, MethodPinv, func(b *mat.Dense) *mat.Dense {
			return pinvReference(qs, []float64{3, 0, 2, 0, 1, 4, 0, 1.5}, 0, b)
		}},
		{"singular indefinite", singularIndef, MethodPinv, func(b *mat.Dense) *mat.Dense {
			return pinvReference(qi, []float64{3, 0, -2, 0, 1, -4, 0, 1.5}, 0, b)
		}},
		{"rank-deficient Gram", rankDeficientGram, MethodPinv, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.h.SymmetricDim()
			b := randDense(rng, n, 3)
			x, method, err := SolveSym(tc.h, b)
			if err != nil {
				t.Fatal(err)
			}
			if method != tc.method {
				t.Errorf("method %q, want %q", method, tc.method)
			}
			switch {
			case tc.want != nil:
				if e := relErr(t, x, tc.want(b)); e > 1e-10 {
					t.Errorf("relative error %.3g against the pseudo-inverse", e)
				}
			case method == MethodPinv:
				// Minimum-norm least squares: the residual is orthogonal to
				// the range of H, i.e. H (H X - B) = 0, and X is in the range.
				var r, hr mat.Dense
				r.Mul(tc.h, x)
				r.Sub(&r, b)
				hr.Mul(tc.h, &r)
				if e := mat.Norm(&hr, 2) / (mat.Norm(tc.h, 2) * mat.Norm(b, 2)); e > 1e-10 {
					t.Errorf("normal-equation residual %.3g", e)
				}
			default:
				if e := relErr(t, x, naiveSolve(tc.h, b)); e > 1e-10 {
					t.Errorf("relative error %.3g against Gaussian elimination", e)
				}
			}
		})
	}
	if _, _, err := SolveSym(gram(rng, 3, 3, 0), randDense(rng, 2, 1)); !errors.Is(err, ErrShape) {
		t.Errorf("shape mismatch: error %v, want ErrShape", err)
	}
}

// TestSolversBackendsAgree: every solver gives the same answer on gonum
// and on OpenBLAS, within 1e-12 relative.
func TestSolversBackendsAgree(t *testing.T) {
	rng := newRNG(25)
	n := 80
	spd := gram(rng, n+10, n, 0.5)
	eig := randSlice(rng, n)
	for i := 0; i < n; i += 4 {
		eig[i] = 0
	}
	sing, _ := symFromEig(rng, eig)
	for i := range eig {
		eig[i] = 1 + math.Abs(eig[i])
		if i%3 == 0 {
			eig[i] = -eig[i]
		}
	}
	indef, _ := symFromEig(rng, eig)
	gen := randDense(rng, n, n)
	b := randDense(rng, n, 40)
	type result struct {
		x      []*mat.Dense
		method []string
	}
	run := func() result {
		var r result
		add := func(x *mat.Dense, err error) {
			if err != nil {
				t.Fatal(err)
			}
			r.x = append(r.x, x)
		}
		add(choleskySolve(spd, b))
		add(luSolve(gen, b))
		add(pinvSolveSym(sing, b, 1e-10))
		for _, h := range []*mat.SymDense{spd, indef, sing} {
			x, m, err := SolveSym(h, b)
			add(x, err)
			r.method = append(r.method, m)
		}
		return r
	}
	g, o := bothBackends(t, run)
	names := []string{"choleskySolve", "luSolve", "pinvSolveSym", "SolveSym(spd)", "SolveSym(indefinite)", "SolveSym(singular)"}
	for i := range g.x {
		if e := relErr(t, o.x[i], g.x[i]); e > 1e-12 {
			t.Errorf("%s: openblas vs gonum relative difference %.3g", names[i], e)
		}
	}
	wantMethods := []string{MethodCholesky, MethodLU, MethodPinv}
	for i := range wantMethods {
		if g.method[i] != wantMethods[i] || o.method[i] != wantMethods[i] {
			t.Errorf("%s: method gonum %q openblas %q, want %q", names[3+i], g.method[i], o.method[i], wantMethods[i])
		}
	}
}
