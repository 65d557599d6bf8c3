package linalg

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

var (
	// ErrNotPositiveDefinite means a Cholesky factorization (potrf) failed.
	ErrNotPositiveDefinite = errors.New("linalg: matrix is not positive definite")
	// ErrSingular means a matrix is singular to working precision: an exact
	// zero pivot, or an estimated reciprocal condition number below
	// defaultRcond(n).
	ErrSingular = errors.New("linalg: matrix is singular")
	// ErrShape means the operands' dimensions do not fit together or are empty.
	ErrShape = errors.New("linalg: dimension mismatch")
	// ErrNotFinite means an operand holds NaN or ±Inf.
	ErrNotFinite = errors.New("linalg: matrix holds NaN or Inf")
	// ErrBadRcond means an rcond argument is negative or NaN.
	ErrBadRcond = errors.New("linalg: rcond must be a finite number >= 0")
	// ErrNoConvergence means an eigenvalue or singular value iteration failed.
	ErrNoConvergence = errors.New("linalg: eigen/singular value iteration did not converge")
)

// Solver method names reported by SolveSym.
const (
	MethodCholesky = "cholesky"
	MethodLU       = "lu"
	MethodPinv     = "pinv"
)

// defaultRcond is the tolerance used for an n×n system: n times the machine
// epsilon of float64 (as numpy.linalg.lstsq and matrix_rank use). Systems
// whose estimated reciprocal condition number falls below it are treated
// as singular, and pinvSolveSym called by SolveSym drops eigenvalues below
// defaultRcond(n) times the largest magnitude.
func defaultRcond(n int) float64 {
	return float64(max(n, 1)) * 0x1p-52
}

// choleskySolve solves H X = B for symmetric positive definite H (n×n) and
// B (n×nrhs) with LAPACK potrf and potrs, without LAPACK's condition
// estimate. It returns ErrNotPositiveDefinite when potrf fails, and
// ErrSingular when H is positive definite only to working precision: a
// cheap estimate of its reciprocal condition number (two steps of inverse
// iteration on estimateBlock vectors, the first solved together with B)
// falls below defaultRcond(n). H and B are not modified.
func choleskySolve(h *mat.SymDense, b *mat.Dense) (*mat.Dense, error) {
	n, err := checkSystem(h, b)
	if err != nil {
		return nil, err
	}
	normF := mat.Norm(h, 2) // Frobenius norm, an upper bound of the 2-norm
	u, ok := lapack64.Potrf(symCopy(h))
	if !ok {
		return nil, fmt.Errorf("%w: potrf failed for the %d×%d matrix", ErrNotPositiveDefinite, n, n)
	}
	solve := func(x blas64.General) { lapack64.Potrs(u, x) }
	x, invNorm := solveWithEstimate(n, b, solve, solve)
	if rc := 1 / (normF * invNorm); !(rc >= defaultRcond(n)) {
		return nil, fmt.Errorf("%w: %d×%d matrix is positive definite only to working precision (estimated rcond %.3g < %.3g)",
			ErrSingular, n, n, rc, defaultRcond(n))
	}
	return x, nil
}

// luSolve solves A X = B for square A (n×n) and B (n×nrhs) with LAPACK
// getrf and getrs. It returns ErrSingular for an exactly zero pivot or an
// estimated reciprocal condition number below defaultRcond(n). A and B are
// not modified.
func luSolve(a *mat.Dense, b *mat.Dense) (*mat.Dense, error) {
	if a == nil || b == nil || a.IsEmpty() || b.IsEmpty() {
		return nil, fmt.Errorf("%w: empty or nil A or B", ErrShape)
	}
	r, c := a.Dims()
	if r != c {
		return nil, fmt.Errorf("%w: A is %d×%d, want square", ErrShape, r, c)
	}
	br, _ := b.Dims()
	if br != r {
		return nil, fmt.Errorf("%w: A is %d×%d but B has %d rows", ErrShape, r, c, br)
	}
	if !finiteDense(a) || !finiteDense(b) {
		return nil, fmt.Errorf("%w: in A (%d×%d) or B", ErrNotFinite, r, c)
	}
	n := r
	lu := mat.DenseCopyOf(a)
	raw := lu.RawMatrix()
	ipiv := make([]int, n)
	if !lapack64.Getrf(raw, ipiv) {
		return nil, fmt.Errorf("%w: %d×%d matrix has an exactly zero pivot", ErrSingular, n, n)
	}
	x, invNorm := solveWithEstimate(n, b,
		func(x blas64.General) { lapack64.Getrs(blas.NoTrans, raw, x, ipiv) },
		func(x blas64.General) { lapack64.Getrs(blas.Trans, raw, x, ipiv) })
	if rc := 1 / (mat.Norm(a, 2) * invNorm); !(rc >= defaultRcond(n)) { // Frobenius norm
		return nil, fmt.Errorf("%w: %d×%d matrix (estimated rcond %.3g < %.3g)", ErrSingular, n, n, rc, defaultRcond(n))
	}
	return x, nil
}

// pinvSolveSym returns the minimum-norm least-squares solution of H X = B
// for symmetric H, pinv(H) B, from the symmetric eigendecomposition of H
// (LAPACK syev; dsyevr on OpenBLAS). Eigenvalues of magnitude at most
// rcond times the largest magnitude are dropped (rcond = 0 drops only
// exact zeros).
func pinvSolveSym(h *mat.SymDense, b *mat.Dense, rcond float64) (*mat.Dense, error) {
	n, err := checkSystem(h, b)
	if err != nil {
		return nil, err
	}
	if !(rcond >= 0) || math.IsInf(rcond, 0) {
		return nil, fmt.Errorf("%w: got %v", ErrBadRcond, rcond)
	}
	s := symCopy(h)
	w := make([]float64, n)
	work := []float64{0}
	lapack64.Syev(lapack.EVCompute, s, w, work, -1)
	work = make([]float64, int(work[0]))
	if !lapack64.Syev(lapack.EVCompute, s, w, work, len(work)) {
		return nil, fmt.Errorf("%w: eigendecomposition of the %d×%d matrix", ErrNoConvergence, n, n)
	}
	var wmax float64
	for _, v := range w {
		wmax = max(wmax, math.Abs(v))
	}
	var keep []int
	for i, v := range w {
		if math.Abs(v) > rcond*wmax {
			keep = append(keep, i)
		}
	}
	_, nrhs := b.Dims()
	x := mat.NewDense(n, nrhs, nil)
	if len(keep) == 0 {
		return x, nil
	}
	// X = V_k diag(1/λ_k) V_kᵀ B.
	vecs := mat.NewDense(n, n, s.Data)
	vk := mat.NewDense(n, len(keep), nil)
	for j, i := range keep {
		vk.SetCol(j, mat.Col(nil, i, vecs))
	}
	var t mat.Dense
	t.Mul(vk.T(), b)
	for j, i := range keep {
		row := t.RawRowView(j)
		for c := range row {
			row[c] /= w[i]
		}
	}
	x.Mul(vk, &t)
	return x, nil
}

// SolveSym solves H X = B for symmetric H: by Cholesky when H is positive
// definite, else by LU when H is nonsingular, else by the pseudo-inverse
// (pinvSolveSym with defaultRcond(n)). method is MethodCholesky, MethodLU
// or MethodPinv. Shape and non-finite errors are returned as they are.
func SolveSym(h *mat.SymDense, b *mat.Dense) (x *mat.Dense, method string, err error) {
	x, err = choleskySolve(h, b)
	if err == nil {
		return x, MethodCholesky, nil
	}
	if errors.Is(err, ErrNotPositiveDefinite) {
		x, err = luSolve(mat.DenseCopyOf(h), b)
		if err == nil {
			return x, MethodLU, nil
		}
		if !errors.Is(err, ErrSingular) {
			return nil, "", err
		}
	} else if !errors.Is(err, ErrSingular) {
		return nil, "", err
	}
	x, err = pinvSolveSym(h, b, defaultRcond(h.SymmetricDim()))
	if err != nil {
		return nil, "", err
	}
	return x, MethodPinv, nil
}

// checkSystem validates H (n×n) against B (n×nrhs) and returns n.
func checkSystem(h *mat.SymDense, b *mat.Dense) (int, error) {
	if h == nil || b == nil || h.IsEmpty() || b.IsEmpty() {
		return 0, fmt.Errorf("%w: empty or nil H or B", ErrShape)
	}
	n := h.SymmetricDim()
	br, bc := b.Dims()
	if br != n {
		return 0, fmt.Errorf("%w: H is %d×%d but B is %d×%d", ErrShape, n, n, br, bc)
	}
	raw := h.RawSymmetric()
	for i := 0; i < n; i++ {
		for _, v := range raw.Data[i*raw.Stride+i : i*raw.Stride+n] {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("%w: in H (%d×%d), row %d", ErrNotFinite, n, n, i)
			}
		}
	}
	if !finiteDense(b) {
		return 0, fmt.Errorf("%w: in B (%d×%d)", ErrNotFinite, br, bc)
	}
	return n, nil
}

func finiteDense(a *mat.Dense) bool {
	raw := a.RawMatrix()
	for i := 0; i < raw.Rows; i++ {
		for _, v := range raw.Data[i*raw.Stride : i*raw.Stride+raw.Cols] {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
	}
	return true
}

// symCopy copies the upper triangle of h into a fresh upper blas64.Symmetric.
func symCopy(h *mat.SymDense) blas64.Symmetric {
	raw := h.RawSymmetric()
	n := raw.N
	s := blas64.Symmetric{N: n, Stride: n, Data: make([]float64, n*n), Uplo: blas.Upper}
	for i := 0; i < n; i++ {
		copy(s.Data[i*n+i:i*n+n], raw.Data[i*raw.Stride+i:i*raw.Stride+n])
	}
	return s
}

// estimateBlock is the number of random vectors used to estimate the
// norm of an inverse.
const estimateBlock = 4

// solveWithEstimate returns X = M⁻¹B and an estimate of ||M⁻¹||₂.
// solve overwrites its argument with M⁻¹ times it, solveT with M⁻ᵀ times
// it. The estimate takes two steps of (block) inverse iteration from fixed
// pseudo-random unit vectors Z: the first, M⁻¹Z, is solved together with
// B; the second applies M⁻ᵀ (for symmetric M, solveT is solve). It is a
// lower bound, usually within a small factor; +Inf when a solve overflows.
func solveWithEstimate(n int, b *mat.Dense, solve, solveT func(blas64.General)) (*mat.Dense, float64) {
	_, nrhs := b.Dims()
	k := min(estimateBlock, n)
	w := nrhs + k
	all := blas64.General{Rows: n, Cols: w, Stride: w, Data: make([]float64, n*w)}
	rng := rand.New(rand.NewPCG(0x17e415, uint64(n)))
	z := blas64.General{Rows: n, Cols: k, Stride: w, Data: all.Data[nrhs:]}
	for i := 0; i < n; i++ {
		copy(all.Data[i*w:i*w+nrhs], b.RawRowView(i))
		for j := 0; j < k; j++ {
			z.Data[i*w+j] = rng.NormFloat64()
		}
	}
	normalizeCols(z)
	solve(all)
	x := mat.NewDense(n, nrhs, nil)
	for i := 0; i < n; i++ {
		copy(x.RawRowView(i), all.Data[i*w:i*w+nrhs])
	}
	// The first step's growth is a lower bound of ||M⁻¹||; the second,
	// from the normalised first iterate, is usually much closer.
	est1 := normalizeCols(z)
	solveT(z)
	est2 := normalizeCols(z)
	est := math.Max(est1, est2)
	if math.IsNaN(est) {
		est = math.Inf(1)
	}
	return x, est
}

// normalizeCols scales each column of x to unit 2-norm and returns the
// largest norm before scaling (+Inf if a column overflowed).
func normalizeCols(x blas64.General) float64 {
	nrm := make([]float64, x.Cols)
	for i := 0; i < x.Rows; i++ {
		for j, v := range x.Data[i*x.Stride : i*x.Stride+x.Cols] {
			nrm[j] += v * v
		}
	}
	var largest float64
	for j := range nrm {
		nrm[j] = math.Sqrt(nrm[j])
		if math.IsNaN(nrm[j]) || math.IsInf(nrm[j], 0) {
			return math.Inf(1)
		}
		largest = max(largest, nrm[j])
	}
	for i := 0; i < x.Rows; i++ {
		row := x.Data[i*x.Stride : i*x.Stride+x.Cols]
		for j := range row {
			if nrm[j] > 0 {
				row[j] /= nrm[j]
			}
		}
	}
	return largest
}
