package linalg

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// ExactSVDMaxDim is the largest min(m, n) for which TruncateDense computes
// an exact SVD; larger matrices use a randomized SVD.
const ExactSVDMaxDim = 1024

// Randomized SVD parameters used by TruncateDense.
const (
	RandomizedOversampling = 10
	RandomizedPowerIters   = 2
)

// TruncateFactors returns the best rank-k approximation of the product
// B A (B is m×R, A is R×n) as factors B2 (m×k') and A2 (k'×n), without
// forming the m×n product: QR of B and of Aᵀ, SVD of the small R×R core
// Rb Raᵀ = U S Vᵀ, then B2 = Qb U_k S_k and A2 = (Qa V_k)ᵀ. The singular
// values sit on the B side: the columns of B2 have norms S_k and the rows
// of A2 are orthonormal. k' = min(k, m, n, R). Each component's sign is
// fixed so that the largest-magnitude entry of its row of A2 is positive,
// so results do not depend on the backend.
//
// It panics, as gonum's mat does, when B's columns do not match A's rows,
// when a matrix is empty, or when k < 1; an SVD that does not converge
// (only for NaN or Inf input) panics with ErrNoConvergence.
func TruncateFactors(b, a *mat.Dense, k int) (b2, a2 *mat.Dense) {
	m, r := b.Dims()
	ra, n := a.Dims()
	if r != ra {
		panic(fmt.Sprintf("%v: TruncateFactors: B is %d×%d but A is %d×%d", ErrShape, m, r, ra, n))
	}
	if k < 1 {
		panic(fmt.Sprintf("linalg: TruncateFactors: rank k=%d, want >= 1", k))
	}
	qb, rb := thinQR(b)          // B = Qb Rb: m×p, p×R
	qa, rat := thinQR(denseT(a)) // Aᵀ = Qa Ra: n×q, q×R
	var core mat.Dense           // Rb Raᵀ: p×q
	core.Mul(rb, rat.T())
	u, s, vt := thinSVD(&core) // core = U diag(s) Vᵀ
	kk := min(k, len(s))
	// B2 = Qb U_k diag(s_k); A2 = V_kᵀ Qaᵀ.
	b2 = mat.NewDense(m, kk, nil)
	b2.Mul(qb, u.Slice(0, u.RawMatrix().Rows, 0, kk))
	scaleCols(b2, s[:kk])
	a2 = mat.NewDense(kk, n, nil)
	a2.Mul(vt.Slice(0, kk, 0, vt.RawMatrix().Cols), qa.T())
	fixSigns(b2, a2)
	return b2, a2
}

// TruncateDense returns the best rank-k approximation of w (m×n) as
// factors B = U_k S_k (m×k') and A = V_kᵀ (k'×n), k' = min(k, m, n):
// an exact SVD when min(m, n) <= ExactSVDMaxDim (or when k is within the
// oversampling of min(m, n)), else a randomized SVD with
// RandomizedOversampling extra columns and RandomizedPowerIters power
// iterations, re-orthonormalised by QR after every product, from a
// Gaussian test matrix drawn from seed (the same seed gives the same
// result). Signs are fixed as in TruncateFactors.
//
// It panics when w is empty or k < 1; an SVD that does not converge (only
// for NaN or Inf input) panics with ErrNoConvergence.
func TruncateDense(w *mat.Dense, k int, seed uint64) (b, a *mat.Dense) {
	if k < 1 {
		panic(fmt.Sprintf("linalg: TruncateDense: rank k=%d, want >= 1", k))
	}
	u, s, vt := topSVD(w, k, seed)
	b = u
	scaleCols(b, s)
	a = vt
	fixSigns(b, a)
	return b, a
}

// topSVD returns the leading k' = min(k, m, n) singular triplets of w
// (m×n): U_k (m×k'), s_k (decreasing) and V_kᵀ (k'×n), exactly or by the
// randomized SVD as TruncateDense describes. k must be >= 1.
func topSVD(w *mat.Dense, k int, seed uint64) (u *mat.Dense, s []float64, vt *mat.Dense) {
	m, n := w.Dims()
	q := min(m, n)
	kk := min(k, q)
	l := kk + RandomizedOversampling
	if q <= ExactSVDMaxDim || l >= q {
		uf, sf, vtf := thinSVD(w)
		return mat.DenseCopyOf(uf.Slice(0, m, 0, kk)), sf[:kk], mat.DenseCopyOf(vtf.Slice(0, kk, 0, n))
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed1715))
	omega := mat.NewDense(n, l, nil)
	raw := omega.RawMatrix()
	for i := range raw.Data {
		raw.Data[i] = rng.NormFloat64()
	}
	var y, z mat.Dense
	y.Mul(w, omega)
	qy, _ := thinQR(&y)
	for it := 0; it < RandomizedPowerIters; it++ {
		z.Reset()
		z.Mul(w.T(), qy)
		qz, _ := thinQR(&z)
		y.Reset()
		y.Mul(w, qz)
		qy, _ = thinQR(&y)
	}
	var small mat.Dense // Qᵀ W: l×n
	small.Mul(qy.T(), w)
	us, sl, vtl := thinSVD(&small)
	u = mat.NewDense(m, kk, nil)
	u.Mul(qy, us.Slice(0, l, 0, kk))
	return u, sl[:kk], mat.DenseCopyOf(vtl.Slice(0, kk, 0, n))
}

// thinQR returns Q (m×p, orthonormal columns) and R (p×c, upper
// trapezoidal) with X = Q R, p = min(m, c), via geqrf and orgqr.
func thinQR(x mat.Matrix) (q, r *mat.Dense) {
	m, c := x.Dims()
	p := min(m, c)
	f := mat.DenseCopyOf(x)
	raw := f.RawMatrix()
	tau := make([]float64, p)
	work := []float64{0}
	lapack64.Geqrf(raw, tau, work, -1)
	work = make([]float64, max(int(work[0]), c, 1))
	lapack64.Geqrf(raw, tau, work, len(work))
	r = mat.NewDense(p, c, nil)
	for i := 0; i < p; i++ {
		copy(r.RawRowView(i)[i:], raw.Data[i*raw.Stride+i:i*raw.Stride+c])
	}
	qraw := raw
	qraw.Cols = p
	work = []float64{0}
	lapack64.Orgqr(qraw, tau, work, -1)
	work = make([]float64, max(int(work[0]), p, 1))
	lapack64.Orgqr(qraw, tau, work, len(work))
	q = mat.NewDense(m, p, nil)
	for i := 0; i < m; i++ {
		copy(q.RawRowView(i), raw.Data[i*raw.Stride:i*raw.Stride+p])
	}
	return q, r
}

// thinSVD returns U (m×q), s (q, decreasing) and Vᵀ (q×n), q = min(m, n).
func thinSVD(x mat.Matrix) (u *mat.Dense, s []float64, vt *mat.Dense) {
	var svd mat.SVD
	if !svd.Factorize(x, mat.SVDThin) {
		m, n := x.Dims()
		panic(fmt.Sprintf("%v: SVD of a %d×%d matrix (NaN or Inf input?)", ErrNoConvergence, m, n))
	}
	u, v := new(mat.Dense), new(mat.Dense)
	svd.UTo(u)
	svd.VTo(v)
	return u, svd.Values(nil), denseT(v)
}

// denseT returns a row-major copy of xᵀ.
func denseT(x mat.Matrix) *mat.Dense {
	return mat.DenseCopyOf(x.T())
}

// scaleCols multiplies column j of x by s[j].
func scaleCols(x *mat.Dense, s []float64) {
	raw := x.RawMatrix()
	for i := 0; i < raw.Rows; i++ {
		row := raw.Data[i*raw.Stride : i*raw.Stride+raw.Cols]
		for j := range row {
			row[j] *= s[j]
		}
	}
}

// fixSigns flips component j (column j of b, row j of a) so that the entry
// of largest magnitude in row j of a (the first such) is positive.
func fixSigns(b, a *mat.Dense) {
	ar := a.RawMatrix()
	br := b.RawMatrix()
	for j := 0; j < ar.Rows; j++ {
		row := ar.Data[j*ar.Stride : j*ar.Stride+ar.Cols]
		best := 0
		for i, v := range row {
			if math.Abs(v) > math.Abs(row[best]) {
				best = i
			}
		}
		if row[best] >= 0 {
			continue
		}
		for i := range row {
			row[i] = -row[i]
		}
		for i := 0; i < br.Rows; i++ {
			br.Data[i*br.Stride+j] = -br.Data[i*br.Stride+j]
		}
	}
}
