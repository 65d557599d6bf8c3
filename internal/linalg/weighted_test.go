package linalg

import (
	"errors"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// sqrtFromEig returns Q diag(f(eig)) Qᵀ.
func sqrtFromEig(q *mat.Dense, eig []float64, f func(float64) float64) *mat.Dense {
	n := len(eig)
	out := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for l := 0; l < n; l++ {
				s += q.At(i, l) * f(eig[l]) * q.At(j, l)
			}
			out.Set(i, j, s)
		}
	}
	return out
}

// weightedErr is tr((X − D) M (X − D)ᵀ).
func weightedErr(x, d *mat.Dense, metric mat.Matrix) float64 {
	var e, em mat.Dense
	e.Sub(x, d)
	em.Mul(&e, metric)
	return frobInner(&em, &e)
}

func frobInner(x, y *mat.Dense) float64 {
	r, c := x.Dims()
	var s float64
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			s += x.At(i, j) * y.At(i, j)
		}
	}
	return s
}

// TestTruncateWeightedMatchesSymmetricRoot checks the Cholesky route against
// an independent one: with the symmetric square root M = S S (S = M^½),
// tr((X − D) M (X − D)ᵀ) = ||X S − D S||², so X = best_k(D S) S⁻¹ by the
// Jacobi SVD. It also checks the optimality against the plain SVD
// truncation, the error formula Σ_{i>k} σ_i², the factor shapes and
// orthonormality, and the invariance under scaling the metric.
func TestTruncateWeightedMatchesSymmetricRoot(t *testing.T) {
	cases := []struct {
		name string
		m, n int
		k    int
	}{
		{"tall", 14, 9, 3},
		{"wide", 6, 11, 4},
		{"rank reaches min", 5, 8, 5},
		{"rank above min", 5, 8, 7},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := newRNG(uint64(40 + i))
			eig := make([]float64, tc.n)
			for j := range eig {
				eig[j] = math.Pow(10, -3+4*float64(j)/float64(tc.n-1)) // 1e-3 .. 10
			}
			metric, q := symFromEig(rng, eig)
			d := randDense(rng, tc.m, tc.n)
			b, a, sv, err := TruncateWeighted(d, metric, tc.k, 1)
			if err != nil {
				t.Fatal(err)
			}
			kk := min(tc.k, tc.m, tc.n)
			if r, c := b.Dims(); r != tc.m || c != kk || len(sv) != kk {
				t.Fatalf("B is %d×%d with %d singular values, want %d×%d and %d", r, c, len(sv), tc.m, kk, kk)
			}
			if r, c := a.Dims(); r != kk || c != tc.n {
				t.Fatalf("A is %d×%d, want %d×%d", r, c, kk, tc.n)
			}
			checkOrthonormalCols(t, "B", b.RawMatrix().Data, tc.m, kk, b.RawMatrix().Stride)
			s := sqrtFromEig(q, eig, math.Sqrt)
			sinv := sqrtFromEig(q, eig, func(v float64) float64 { return 1 / math.Sqrt(v) })
			best, wantSV := naiveRankK(naiveMul(d, s), tc.k)
			want := naiveMul(best, sinv)
			got := naiveMul(b, a)
			if e := relErr(t, got, want); e > 1e-10 {
				t.Errorf("U_k U_kᵀ D differs from best_k(D M^½) M^-½ by %.3g", e)
			}
			if e := relErrSlice(sv, wantSV); e > 1e-12 {
				t.Errorf("singular values %v, want %v", sv, wantSV)
			}
			_, all := naiveRankK(naiveMul(d, s), tc.n)
			var tail float64
			for _, v := range all[kk:] {
				tail += v * v
			}
			werr := weightedErr(got, d, metric)
			if math.Abs(werr-tail) > 1e-10*max(tail, 1) {
				t.Errorf("weighted error %.15g, want Σ_{i>k} σ_i² = %.15g", werr, tail)
			}
			if kk < min(tc.m, tc.n) {
				pb, pa := TruncateDense(d, tc.k, 1)
				if plain := weightedErr(naiveMul(pb, pa), d, metric); !(werr < plain) {
					t.Errorf("weighted error %.6g is not below the plain SVD truncation's %.6g", werr, plain)
				}
			} else if e := relErr(t, got, d); e > 1e-12 {
				t.Errorf("rank %d >= min(m, n): result differs from D by %.3g", tc.k, e)
			}
			var scaled mat.SymDense
			scaled.ScaleSym(7.5, metric)
			b2, a2, _, err := TruncateWeighted(d, &scaled, tc.k, 1)
			if err != nil {
				t.Fatal(err)
			}
			if e := relErr(t, naiveMul(b2, a2), got); e > 1e-12 {
				t.Errorf("scaling the metric changed the result by %.3g", e)
			}
		})
	}
}

// TestTruncateWeightedIdentityIsSVD: with M = I the result is the plain
// SVD truncation.
func TestTruncateWeightedIdentityIsSVD(t *testing.T) {
	rng := newRNG(50)
	d := randDense(rng, 12, 7)
	id := mat.NewSymDense(7, nil)
	for i := 0; i < 7; i++ {
		id.SetSym(i, i, 1)
	}
	b, a, _, err := TruncateWeighted(d, id, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := naiveRankK(d, 3)
	if e := relErr(t, naiveMul(b, a), want); e > 1e-12 {
		t.Errorf("identity metric: differs from the SVD truncation by %.3g", e)
	}
}

func TestTruncateWeightedErrors(t *testing.T) {
	rng := newRNG(51)
	d := randDense(rng, 4, 3)
	spd := gram(rng, 10, 3, 0.1)
	notPD, _ := symFromEig(rng, []float64{1, -1, 2})
	nan := mat.DenseCopyOf(d)
	nan.Set(1, 1, math.NaN())
	cases := []struct {
		name   string
		d      *mat.Dense
		metric *mat.SymDense
		k      int
		want   error
	}{
		{"nil D", nil, spd, 1, ErrShape},
		{"metric size", d, gram(rng, 10, 4, 0.1), 1, ErrShape},
		{"rank 0", d, spd, 0, ErrShape},
		{"NaN", nan, spd, 1, ErrNotFinite},
		{"not positive definite", d, notPD, 1, ErrNotPositiveDefinite},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := TruncateWeighted(tc.d, tc.metric, tc.k, 1); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
