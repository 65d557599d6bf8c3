package linalg

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// TruncateWeighted returns the rank-k minimiser of the weighted error
// tr((X − D) M (X − D)ᵀ) over X of rank <= k, for D (m×n) and a symmetric
// positive definite metric M (n×n):
//
//	M = L Lᵀ (Cholesky, potrf),  D L = U Σ Vᵀ,  X = U_k U_kᵀ D,
//
// as factors B = U_k (m×k', orthonormal columns) and A = U_kᵀ D (k'×n),
// k' = min(k, m, n), together with the k' leading singular values of D L.
// Scaling M, or any other factor with M = L Lᵀ, leaves X unchanged; with
// M = I it is the plain SVD truncation TruncateDense computes. The SVD is
// exact or randomized (seed) as TruncateDense describes. Component signs are
// fixed as in TruncateFactors (this does not change X).
//
// It returns ErrShape for empty operands, a metric whose size is not n, or
// k < 1, ErrNotFinite for NaN or Inf entries, and ErrNotPositiveDefinite
// when the Cholesky factorization of M fails. D and M are not modified.
func TruncateWeighted(d *mat.Dense, metric *mat.SymDense, k int, seed uint64) (b, a *mat.Dense, sv []float64, err error) {
	if d == nil || metric == nil || d.IsEmpty() || metric.IsEmpty() {
		return nil, nil, nil, fmt.Errorf("%w: TruncateWeighted: empty or nil D or metric", ErrShape)
	}
	m, n := d.Dims()
	if metric.SymmetricDim() != n {
		return nil, nil, nil, fmt.Errorf("%w: TruncateWeighted: D is %d×%d but the metric is %d×%d", ErrShape, m, n, metric.SymmetricDim(), metric.SymmetricDim())
	}
	if k < 1 {
		return nil, nil, nil, fmt.Errorf("%w: TruncateWeighted: rank k=%d, want >= 1", ErrShape, k)
	}
	if !finiteDense(d) || !finiteSym(metric) {
		return nil, nil, nil, fmt.Errorf("%w: TruncateWeighted: in D (%d×%d) or the metric", ErrNotFinite, m, n)
	}
	u, ok := lapack64.Potrf(symCopy(metric)) // M = Uᵀ U, so L = Uᵀ
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: TruncateWeighted: potrf failed for the %d×%d metric", ErrNotPositiveDefinite, n, n)
	}
	dl := mat.DenseCopyOf(d)
	raw := dl.RawMatrix()
	blas64.Trmm(blas.Right, blas.Trans, 1, blas64.Triangular{N: n, Stride: u.Stride, Data: u.Data, Uplo: blas.Upper, Diag: blas.NonUnit}, raw)
	uk, s, _ := topSVD(dl, k, seed)
	a = mat.NewDense(len(s), n, nil)
	a.Mul(uk.T(), d)
	fixSigns(uk, a)
	return uk, a, s, nil
}

// finiteSym reports whether the upper triangle of h holds only finite values.
func finiteSym(h *mat.SymDense) bool {
	raw := h.RawSymmetric()
	for i := 0; i < raw.N; i++ {
		for _, v := range raw.Data[i*raw.Stride+i : i*raw.Stride+raw.N] {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
	}
	return true
}
