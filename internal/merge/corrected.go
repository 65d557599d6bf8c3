package merge

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/linalg"
)

// Truncation selects how SolveCorrected cuts a site's dense update to the
// output rank.
type Truncation string

const (
	// TruncData is the data-aware truncation: the rank-k minimiser of the
	// site's own weighted objective tr((d - d*) G (d - d*)^T), d_r =
	// U_k U_k^T d* from the SVD of d* L with G = L L^T (the default).
	TruncData Truncation = "data"
	// TruncSVD is the plain Frobenius SVD truncation of d*.
	TruncSVD Truncation = "svd"
)

// CorrectedOptions configures SolveCorrected.
type CorrectedOptions struct {
	// Alpha1 and Alpha2 are the relative ridges a1, a2 on P and Q (the
	// reference uses a1 = a2 = 1e-4).
	Alpha1, Alpha2 float64
	// Adaptive enables the per-task weights c_i; Coefs, when not nil,
	// supplies them (see SolveOptions.Coefs).
	Adaptive bool
	Coefs    []float64
	// Rank is the output rank: 0 = R = sum of input ranks; -1 = no
	// truncation (min(m, n), an exact factorisation of d*); k > 0 = rank k.
	// A k above what the update needs is padded with zeros.
	Rank int
	// Truncation is TruncData (default when empty) or TruncSVD.
	Truncation Truncation
	// Seed drives the randomized SVD of sites with min(m, n) above
	// linalg.ExactSVDMaxDim.
	Seed uint64
}

// CorrectedResult is the residual-corrected update of one site.
type CorrectedResult struct {
	// Update is the untruncated d* = W* - W0 (m x n).
	Update *mat.Dense
	// B (m x k) and A (k x n) form the truncated update d_r = B A of scale
	// 1. With TruncData, B = U_k has orthonormal columns and A = U_k^T d*.
	B, A *mat.Dense
	// Sigma holds the leading singular values of d* L (TruncData) or of d*
	// (TruncSVD), one per kept component.
	Sigma []float64
	// Metric is G' = G / sum_i w_i with G = sum_i w_i (Q_i + rho2_i I): the
	// truncation's metric (up to scale, the Hessian of the objective).
	Metric *mat.SymDense
	// Coefs are the adaptive weights c_i (1 when not adaptive), Weights
	// w_i = c_i m_i.
	Coefs, Weights []float64
	// Residual is, for a site without cross terms, the full objective's
	// data term sum_i w_i ||X~_i (W0 + B A)^T - X_i W_i^T||_F^2 at the
	// truncated update (as SiteResult.Residual), from the Grams. With cross
	// terms it is NaN: the drift's own norm sum_i w_i ||D_i||^2 and its
	// product with the task features are not accumulated, so the corrected
	// objective is not known.
	Residual float64
	// Method names how G was solved: cholesky, lu or pinv.
	Method string
}

// SolveCorrected solves one site of the residual-corrected sweep: the full
// objective (targets W_i = W0 + dW_i) with optional residual-drift cross
// terms, then the truncation to the output rank. With W_i, the Grams
// P_i = X_i^T X~_i and Q_i = X~_i^T X~_i, and cross[i] = R_i = D_i^T X~_i
// (m x n; D_i = h_i - h~_i is the drift of the residual stream that the
// site writes into, rows x m; nil for sites without the correction), the
// update solves
//
//	N  = sum_i w_i (W_i P_i + R_i + rho1_i W_i),
//	G  = sum_i w_i (Q_i + rho2_i I),
//	W* = N G^-1,  d* = W* - W0,
//
// the stationary point of sum_i w_i [||X~_i W^T - Y_i||^2 + rho2_i ||W||^2
// - 2 rho1_i <W, W_i>] with targets Y_i = X_i W_i^T + D_i (so that
// Y_i^T X~_i = W_i P_i + R_i). Without cross terms it is SolveIterIS with
// the full objective. d* is formed as (W0 D + B_cat Y + sum_i w_i R_i) G^-1
// with D = sum_i w_i (P_i - Q_i + (rho1_i - rho2_i) I), never as W* - W0.
//
// cross may be nil (no correction) or hold one entry per adapter.
func SolveCorrected(w0 *mat.Dense, f []Factor, g []gram.Grams, cross []*mat.Dense, opt CorrectedOptions) (CorrectedResult, error) {
	trunc, err := opt.check()
	if err != nil {
		return CorrectedResult{}, err
	}
	s, err := checkSite(w0, f, g, true)
	if err != nil {
		return CorrectedResult{}, err
	}
	if opt.Adaptive && opt.Coefs != nil && len(opt.Coefs) != len(f) {
		return CorrectedResult{}, fmt.Errorf("%w: %d adaptive coefficients for %d adapters", ErrOption, len(opt.Coefs), len(f))
	}
	if err := checkCross(s, cross, len(f)); err != nil {
		return CorrectedResult{}, err
	}
	pre := prepare(w0, f, g, true)
	coefs, weights, err := pre.weights(opt.Adaptive, opt.Coefs)
	if err != nil {
		return CorrectedResult{}, err
	}
	rho1, rho2 := ridges(g, opt.Alpha1, opt.Alpha2)
	h := buildH(s, pre, weights, rho2)
	dw, method, err := fullUpdate(s, pre, h, buildY(s, pre, weights, rho1), weights, rho1, rho2, cross)
	if err != nil {
		return CorrectedResult{}, err
	}
	wsum := 0.0
	for _, w := range weights {
		wsum += w
	}
	if !(wsum > 0) || math.IsInf(wsum, 0) {
		return CorrectedResult{}, fmt.Errorf("%w: the weights sum to %v (want finite and > 0)", ErrOption, wsum)
	}
	var metric mat.SymDense
	metric.ScaleSym(1/wsum, h)
	res := CorrectedResult{Update: dw, Metric: &metric, Coefs: coefs, Weights: weights, Method: method}
	k := fullRank(s, opt.Rank)
	switch trunc {
	case TruncData:
		res.B, res.A, res.Sigma, err = linalg.TruncateWeighted(dw, &metric, k, opt.Seed)
		if err != nil {
			return CorrectedResult{}, fmt.Errorf("merge: data-aware truncation to rank %d: %w", k, err)
		}
	default:
		res.B, res.A = linalg.TruncateDense(dw, k, opt.Seed)
		res.Sigma = colNorms(res.B)
	}
	res.B, res.A = padRank(res.B, res.A, k)
	res.Residual = math.NaN()
	if !hasCross(cross) {
		res.Residual = residual(s, pre, Full, weights, res.B, res.A)
	}
	return res, nil
}

// hasCross reports whether any cross term is given.
func hasCross(cross []*mat.Dense) bool {
	for _, c := range cross {
		if c != nil {
			return true
		}
	}
	return false
}

// check validates the options and returns the truncation to use.
func (opt CorrectedOptions) check() (Truncation, error) {
	tr := opt.Truncation
	if tr == "" {
		tr = TruncData
	}
	if tr != TruncData && tr != TruncSVD {
		return "", fmt.Errorf("%w: truncation %q (want %q or %q)", ErrOption, opt.Truncation, TruncData, TruncSVD)
	}
	if opt.Rank < -1 {
		return "", fmt.Errorf("%w: rank %d (want -1, 0 or a positive rank)", ErrOption, opt.Rank)
	}
	for _, a := range []struct {
		name string
		v    float64
	}{{"alpha1", opt.Alpha1}, {"alpha2", opt.Alpha2}} {
		if a.v < 0 || math.IsNaN(a.v) || math.IsInf(a.v, 0) {
			return "", fmt.Errorf("%w: %s = %v (want a finite value >= 0)", ErrOption, a.name, a.v)
		}
	}
	return tr, nil
}

// checkCross validates the cross terms: nil, or one m x n (or nil) entry
// per adapter.
func checkCross(s site, cross []*mat.Dense, n int) error {
	if cross == nil {
		return nil
	}
	if len(cross) != n {
		return fmt.Errorf("%w: %d cross terms for %d adapters", ErrShape, len(cross), n)
	}
	for i, c := range cross {
		if c == nil {
			continue
		}
		if r, cc := c.Dims(); r != s.m || cc != s.n {
			return fmt.Errorf("%w: task %d: cross term R = D^T X~ is %dx%d, want %dx%d (site out x in)", ErrShape, i, r, cc, s.m, s.n)
		}
	}
	return nil
}

// colNorms returns the Euclidean norms of the columns of x.
func colNorms(x *mat.Dense) []float64 {
	r, c := x.Dims()
	out := make([]float64, c)
	for j := 0; j < c; j++ {
		out[j] = mat.Norm(x.Slice(0, r, j, j+1), 2)
	}
	return out
}
