// Package merge computes merged LoRA updates for one target module ("site"):
// the data-aware IterIS and RegMean closed forms from accumulated Gram
// matrices, and the weight-only merges of PEFT's add_weighted_adapter.
//
// Conventions follow nn.Linear: the site's base weight W0 is m x n (out x in);
// adapter i has A_i (r_i x n), B_i (m x r_i) and scale s_i, so its update is
// dW_i = s_i B_i A_i. Every result is returned as a LoRA pair (B, A) of scale 1:
// the merged update is B A.
//
// The IterIS solve (design brief, section 2), with Grams G_i = X_i^T X_i,
// P_i = X_i^T X~_i, Q_i = X~_i^T X~_i:
//
//	c_i   = ||W0+dW_i||_F^2 / tr((W0+dW_i) G_i (W0+dW_i)^T)   (adaptive; else 1)
//	w_i   = c_i m_i                                          (m_i: user weight)
//	rho1_i = a1 ||P_i||_F,  rho2_i = a2 ||Q_i||_F
//	H     = sum_i w_i (Q_i + rho2_i I)
//	delta: dW* = sum_i w_i dW_i (P_i + rho1_i I) H^-1
//	       = [B_1 ... B_N] [A*_1; ...; A*_N],  A*_i = w_i s_i A_i (P_i + rho1_i I) H^-1
//	full:  W*  = sum_i w_i (W0 + dW_i)(P_i + rho1_i I) H^-1,  dW* = W* - W0
//
// The delta update is exactly a LoRA of rank R = sum_i r_i and is computed
// without forming any m x n matrix: one factorisation of H and R right-hand
// sides. The full update is dense and is truncated to the output rank.
package merge

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/linalg"
)

// Sentinel errors, wrapped with context naming the adapter and the field.
var (
	// ErrNoAdapters reports an empty adapter list.
	ErrNoAdapters = errors.New("merge: no adapters")
	// ErrShape reports factors, Grams or base weights of inconsistent sizes.
	ErrShape = errors.New("merge: shape mismatch")
	// ErrOption reports an invalid option value.
	ErrOption = errors.New("merge: invalid option")
	// ErrRankMismatch reports adapters of different ranks where equal ranks
	// are required (PEFT's linear, ties, dare_*, magnitude_prune).
	ErrRankMismatch = errors.New("merge: adapters have different ranks")
	// ErrDegenerate reports a quantity that is undefined for the given data,
	// such as an adaptive weight whose features are all zero.
	ErrDegenerate = errors.New("merge: degenerate input")
)

// Factor is one adapter's LoRA at a site together with its user weight.
type Factor struct {
	// A is r x n (lora_A), B is m x r (lora_B).
	A, B *mat.Dense
	// Scale is the adapter's scaling s_i (lora_alpha / r, or / sqrt(r) with
	// rsLoRA, after rank_pattern / alpha_pattern).
	Scale float64
	// Weight is the user weight m_i.
	Weight float64
}

// Objective selects what the merged site is asked to reproduce.
type Objective string

const (
	// Delta matches each adapter's own update: dW X~_i ~ dW_i X_i (the
	// paper's objective; the result is exactly rank sum r_i).
	Delta Objective = "delta"
	// Full matches each task model's whole output:
	// (W0 + dW) X~_i ~ (W0 + dW_i) X_i. The result is dense and truncated.
	Full Objective = "full"
	// Residual is Full with the residual-drift correction at the sites that
	// write into the residual stream (o_proj, down_proj): their targets also
	// undo the drift h_i - h~_i of the merged model's residual stream
	// (reference-rc README, "Closed form"). SolveCorrected solves it, with
	// the cross terms R_i = D_i^T X~_i; SolveIterIS does not take it.
	Residual Objective = "residual"
)

// SolveOptions configures SolveIterIS.
type SolveOptions struct {
	// Objective is Delta (default when empty) or Full.
	Objective Objective
	// Alpha1 and Alpha2 are the relative ridges a1, a2 on P and Q.
	Alpha1, Alpha2 float64
	// Adaptive enables the per-task weights c_i.
	Adaptive bool
	// Coefs, when not nil and Adaptive is set, are used as the c_i instead
	// of computing them. They depend only on W0, dW_i and G_i, which do not
	// change between IterIS steps, and computing them costs one m x n x n
	// product (W0^T W0), so a caller can compute them once with
	// adaptiveCoefs (or take SiteResult.Coefs of the first step) and pass
	// them to later steps.
	Coefs []float64
	// Rank is the output rank: 0 = R = sum of input ranks; -1 = no
	// truncation (Delta: R, which is exact; Full: min(m, n), an exact SVD);
	// k > 0 = rank k. A k above what the update needs is padded with zeros
	// so that the result always has the requested rank.
	Rank int
	// Seed drives the randomized truncation of large dense updates.
	Seed uint64
}

// SiteResult is the merged update of one site.
type SiteResult struct {
	// B (m x k) and A (k x n) form the output LoRA of scale 1: dW* = B A.
	B, A *mat.Dense
	// Coefs are the adaptive weights c_i (1 when not adaptive).
	Coefs []float64
	// Weights are w_i = c_i m_i.
	Weights []float64
	// Residual is sum_i w_i ||X~_i dW^T - X_i dW_i^T||_F^2 for Delta, or
	// sum_i w_i ||X~_i (W0+dW)^T - X_i (W0+dW_i)^T||_F^2 for Full, with dW
	// the returned (possibly truncated) B A, computed from the Grams.
	Residual float64
	// Method names how H was solved: cholesky, lu or pinv.
	Method string
}

// site holds validated dimensions.
type site struct {
	m, n  int
	ranks []int
	R     int
}

func checkFactors(f []Factor) (site, error) {
	if len(f) == 0 {
		return site{}, ErrNoAdapters
	}
	var s site
	for i, fi := range f {
		if fi.A == nil || fi.B == nil {
			return site{}, fmt.Errorf("%w: adapter %d: lora_A or lora_B is missing", ErrShape, i)
		}
		ra, n := fi.A.Dims()
		m, rb := fi.B.Dims()
		if ra != rb {
			return site{}, fmt.Errorf("%w: adapter %d: lora_A is %dx%d but lora_B is %dx%d (ranks %d vs %d)", ErrShape, i, ra, n, m, rb, ra, rb)
		}
		if i == 0 {
			s.m, s.n = m, n
		} else if m != s.m || n != s.n {
			return site{}, fmt.Errorf("%w: adapter %d: update is %dx%d, adapter 0's is %dx%d", ErrShape, i, m, n, s.m, s.n)
		}
		if math.IsNaN(fi.Scale) || math.IsInf(fi.Scale, 0) || math.IsNaN(fi.Weight) || math.IsInf(fi.Weight, 0) {
			return site{}, fmt.Errorf("%w: adapter %d: scale %v, weight %v must be finite", ErrOption, i, fi.Scale, fi.Weight)
		}
		s.ranks = append(s.ranks, ra)
		s.R += ra
	}
	return s, nil
}

func checkSite(w0 *mat.Dense, f []Factor, g []gram.Grams, needW0 bool) (site, error) {
	s, err := checkFactors(f)
	if err != nil {
		return s, err
	}
	if len(g) != len(f) {
		return s, fmt.Errorf("%w: %d adapters but %d Gram sets", ErrShape, len(f), len(g))
	}
	for i, gi := range g {
		for _, mm := range []struct {
			name string
			d    *mat.Dense
		}{{"G", gi.G}, {"P", gi.P}, {"Q", gi.Q}} {
			if mm.d == nil {
				return s, fmt.Errorf("%w: task %d: Gram %s is missing", ErrShape, i, mm.name)
			}
			if r, c := mm.d.Dims(); r != s.n || c != s.n {
				return s, fmt.Errorf("%w: task %d: Gram %s is %dx%d, want %dx%d (adapter input width)", ErrShape, i, mm.name, r, c, s.n, s.n)
			}
		}
	}
	if w0 == nil {
		if needW0 {
			return s, fmt.Errorf("%w: base weight W0 is required for the adaptive weights or the full objective", ErrShape)
		}
		return s, nil
	}
	if r, c := w0.Dims(); r != s.m || c != s.n {
		return s, fmt.Errorf("%w: base weight W0 is %dx%d, adapters' updates are %dx%d", ErrShape, r, c, s.m, s.n)
	}
	return s, nil
}

// SolveIterIS solves one site for one IterIS step (see the package comment).
// w0 may be nil when the options need neither the adaptive weights nor the
// full objective.
func SolveIterIS(w0 *mat.Dense, f []Factor, g []gram.Grams, opt SolveOptions) (SiteResult, error) {
	obj := opt.Objective
	if obj == "" {
		obj = Delta
	}
	if obj != Delta && obj != Full {
		return SiteResult{}, fmt.Errorf("%w: objective %q (want %q or %q)", ErrOption, opt.Objective, Delta, Full)
	}
	if opt.Rank < -1 {
		return SiteResult{}, fmt.Errorf("%w: rank %d (want -1, 0 or a positive rank)", ErrOption, opt.Rank)
	}
	for _, a := range []struct {
		name string
		v    float64
	}{{"alpha1", opt.Alpha1}, {"alpha2", opt.Alpha2}} {
		if a.v < 0 || math.IsNaN(a.v) || math.IsInf(a.v, 0) {
			return SiteResult{}, fmt.Errorf("%w: %s = %v (want a finite value >= 0)", ErrOption, a.name, a.v)
		}
	}
	given := opt.Adaptive && opt.Coefs != nil
	needW0 := obj == Full || (opt.Adaptive && !given)
	s, err := checkSite(w0, f, g, needW0)
	if err != nil {
		return SiteResult{}, err
	}
	if given && len(opt.Coefs) != len(f) {
		return SiteResult{}, fmt.Errorf("%w: %d adaptive coefficients for %d adapters", ErrOption, len(opt.Coefs), len(f))
	}
	pre := prepare(w0, f, g, needW0)
	coefs, weights, err := pre.weights(opt.Adaptive, opt.Coefs)
	if err != nil {
		return SiteResult{}, err
	}
	rho1, rho2 := ridges(g, opt.Alpha1, opt.Alpha2)
	res := SiteResult{Coefs: coefs, Weights: weights}
	res.B, res.A, res.Method, err = solve(s, pre, obj, weights, rho1, rho2, opt.Rank, opt.Seed)
	if err != nil {
		return SiteResult{}, err
	}
	res.Residual = residual(s, pre, obj, weights, res.B, res.A)
	return res, nil
}

// adaptiveCoefs returns the adaptive weights
// c_i = ||W0+dW_i||_F^2 / tr((W0+dW_i) G_i (W0+dW_i)^T) of one site, from
// the task Grams G_i (P and Q are not used).
func adaptiveCoefs(w0 *mat.Dense, f []Factor, g []gram.Grams) ([]float64, error) {
	plain := make([]gram.Grams, len(g))
	for i, gi := range g {
		plain[i] = gram.Grams{N: gi.N, Tokens: gi.Tokens, G: gi.G, P: gi.G, Q: gi.G}
	}
	if _, err := checkSite(w0, f, plain, true); err != nil {
		return nil, err
	}
	pre := prepare(w0, f, plain, true)
	out := make([]float64, len(f))
	for i := range f {
		c, err := pre.adaptive(i)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// SolveRegMean is RegMean at one site: one solve on the task Grams G_i with
// X~ = X, no adaptive weights and no ridge,
//
//	dW* = (sum_i m_i dW_i G'_i)(sum_i m_i G'_i)^-1,
//
// where G'_i is G_i with its off-diagonal entries multiplied by reduce (the
// RegMean paper's alpha; 1 = none) and m_i are the user weights (use 1 for
// the paper's form). The result has the same factored form as the delta
// IterIS solve. A singular summed Gram (few distinct tokens) is solved by
// the pseudo-inverse, which reproduces the least-squares outputs X_i dW^T.
// rank has the meaning of SolveOptions.Rank. The Residual uses the
// unshrunk G_i. P and Q of the Grams are not used, and w0 (which may be
// nil) is only checked against the adapters' shape.
func SolveRegMean(w0 *mat.Dense, f []Factor, g []gram.Grams, reduce float64, rank int) (SiteResult, error) {
	if reduce < 0 || reduce > 1 || math.IsNaN(reduce) {
		return SiteResult{}, fmt.Errorf("%w: reduce = %v (want 0..1)", ErrOption, reduce)
	}
	if rank < -1 {
		return SiteResult{}, fmt.Errorf("%w: rank %d (want -1, 0 or a positive rank)", ErrOption, rank)
	}
	plain := make([]gram.Grams, len(g))
	for i, gi := range g {
		plain[i] = gram.Grams{N: gi.N, Tokens: gi.Tokens, G: gi.G, P: gi.G, Q: gi.G}
	}
	s, err := checkSite(w0, f, plain, false)
	if err != nil {
		return SiteResult{}, err
	}
	solveG := plain
	if reduce != 1 {
		solveG = make([]gram.Grams, len(g))
		for i, gi := range plain {
			gr := mat.DenseCopyOf(gi.G)
			for a := 0; a < s.n; a++ {
				for b := 0; b < s.n; b++ {
					if a != b {
						gr.Set(a, b, reduce*gr.At(a, b))
					}
				}
			}
			solveG[i] = gram.Grams{N: gi.N, Tokens: gi.Tokens, G: gr, P: gr, Q: gr}
		}
	}
	weights := make([]float64, len(f))
	coefs := make([]float64, len(f))
	for i := range f {
		coefs[i] = 1
		weights[i] = f[i].Weight
	}
	zero := make([]float64, len(f))
	res := SiteResult{Coefs: coefs, Weights: weights}
	res.B, res.A, res.Method, err = solve(s, prepare(nil, f, solveG, false), Delta, weights, zero, zero, rank, 0)
	if err != nil {
		return SiteResult{}, err
	}
	res.Residual = residual(s, prepare(nil, f, plain, false), Delta, weights, res.B, res.A)
	return res, nil
}

// prepared holds per-task products shared by the solve, the adaptive
// weights and the residual.
type prepared struct {
	w0 *mat.Dense
	f  []Factor
	g  []gram.Grams
	// ap[i] = A_i P_i, ag[i] = A_i G_i (r_i x n).
	ap, ag []*mat.Dense
	// btw[i] = B_i^T W0 (r_i x n), btb[i] = B_i^T B_i (r_i x r_i); btw only
	// with w0.
	btw, btb []*mat.Dense
	// k = W0^T W0 (n x n) when w0 is given and needed.
	k *mat.Dense
	// w0sq = ||W0||_F^2.
	w0sq float64
}

func prepare(w0 *mat.Dense, f []Factor, g []gram.Grams, needW0 bool) *prepared {
	p := &prepared{w0: w0, f: f, g: g}
	for i, fi := range f {
		ap := new(mat.Dense)
		ap.Mul(fi.A, g[i].P)
		ag := ap
		if g[i].G != g[i].P {
			ag = new(mat.Dense)
			ag.Mul(fi.A, g[i].G)
		}
		btb := new(mat.Dense)
		btb.Mul(fi.B.T(), fi.B)
		p.ap = append(p.ap, ap)
		p.ag = append(p.ag, ag)
		p.btb = append(p.btb, btb)
	}
	if w0 != nil && needW0 {
		_, n := w0.Dims()
		k := mat.NewSymDense(n, nil)
		k.SymOuterK(1, w0.T())
		p.k = mat.DenseCopyOf(k)
		p.w0sq = sqNorm(w0)
		for _, fi := range f {
			var btw mat.Dense
			btw.Mul(fi.B.T(), w0)
			p.btw = append(p.btw, &btw)
		}
	}
	return p
}

// weights returns the coefficients c_i (given, adaptive, or 1) and the
// weights w_i = c_i m_i.
func (p *prepared) weights(adaptive bool, given []float64) (coefs, weights []float64, err error) {
	coefs = make([]float64, len(p.f))
	weights = make([]float64, len(p.f))
	for i := range p.f {
		coefs[i] = 1
		switch {
		case adaptive && given != nil:
			coefs[i] = given[i]
			if !(coefs[i] > 0) || math.IsInf(coefs[i], 0) {
				return nil, nil, fmt.Errorf("%w: adaptive coefficient %d = %v (want finite and > 0)", ErrOption, i, coefs[i])
			}
		case adaptive:
			c, err := p.adaptive(i)
			if err != nil {
				return nil, nil, err
			}
			coefs[i] = c
		}
		weights[i] = coefs[i] * p.f[i].Weight
	}
	return coefs, weights, nil
}

// ridges returns rho1_i = a1 ||P_i||_F and rho2_i = a2 ||Q_i||_F.
func ridges(g []gram.Grams, a1, a2 float64) (rho1, rho2 []float64) {
	rho1 = make([]float64, len(g))
	rho2 = make([]float64, len(g))
	for i, gi := range g {
		rho1[i] = a1 * mat.Norm(gi.P, 2)
		rho2[i] = a2 * mat.Norm(gi.Q, 2)
	}
	return rho1, rho2
}

// adaptive returns c_i = ||W0+dW_i||^2 / tr((W0+dW_i) G_i (W0+dW_i)^T),
// expanded so that no m x n or n x n product per task is formed.
func (p *prepared) adaptive(i int) (float64, error) {
	fi := p.f[i]
	s := fi.Scale
	var aat, agat mat.Dense
	aat.Mul(fi.A, fi.A.T())
	agat.Mul(p.ag[i], fi.A.T())
	num := p.w0sq + 2*s*frob(p.btw[i], fi.A) + s*s*frob(p.btb[i], &aat)
	den := frob(p.k, p.g[i].G) + 2*s*frob(p.btw[i], p.ag[i]) + s*s*frob(p.btb[i], &agat)
	if !(den > 0) || math.IsInf(den, 0) {
		return 0, fmt.Errorf("%w: task %d: tr((W0+dW) G (W0+dW)^T) = %v, so the adaptive weight is undefined (no tokens or zero features?)", ErrDegenerate, i, den)
	}
	return num / den, nil
}

// solve builds H and the right-hand sides and returns the output factors.
func solve(s site, p *prepared, obj Objective, w, rho1, rho2 []float64, rank int, seed uint64) (b, a *mat.Dense, method string, err error) {
	n := s.n
	h := buildH(s, p, w, rho2)
	y := buildY(s, p, w, rho1)
	switch obj {
	case Delta:
		// A* = Y H^-1  <=>  H A*^T = Y^T.
		z, method, err := linalg.SolveSym(h, transpose(y))
		if err != nil {
			return nil, nil, "", fmt.Errorf("merge: solving H (n=%d) for %d right-hand sides: %w", n, s.R, err)
		}
		astar := transpose(z)
		k := rank
		if k <= 0 {
			k = s.R
		}
		switch {
		case k < s.R:
			b, a = linalg.TruncateFactors(hcatB(p.f, s), astar, k)
		default:
			b, a = hcatB(p.f, s), astar
		}
		b, a = padRank(b, a, k)
		return b, a, method, nil
	default:
		dw, method, err := fullUpdate(s, p, h, y, w, rho1, rho2, nil)
		if err != nil {
			return nil, nil, "", err
		}
		k := fullRank(s, rank)
		// TruncateDense is an exact SVD when k reaches min(m, n).
		b, a = linalg.TruncateDense(dw, k, seed)
		b, a = padRank(b, a, k)
		return b, a, method, nil
	}
}

// padRank appends zero columns to b and zero rows to a up to rank k.
func padRank(b, a *mat.Dense, k int) (*mat.Dense, *mat.Dense) {
	m, r := b.Dims()
	if r >= k {
		return b, a
	}
	_, n := a.Dims()
	b2 := mat.NewDense(m, k, nil)
	b2.Slice(0, m, 0, r).(*mat.Dense).Copy(b)
	a2 := mat.NewDense(k, n, nil)
	a2.Slice(0, r, 0, n).(*mat.Dense).Copy(a)
	return b2, a2
}

// residual evaluates the objective's data term for the output dW = Bo Ao
// from the Grams (see SiteResult.Residual):
//
//	delta: sum_i w_i [tr(dW Q_i dW^T) - 2 tr(dW P_i^T dW_i^T) + tr(dW_i G_i dW_i^T)]
//	full:  the same with dW, dW_i replaced by W0+dW, W0+dW_i,
//
// using trace identities so that only k x n and r x r products appear.
func residual(s site, p *prepared, obj Objective, w []float64, bo, ao *mat.Dense) float64 {
	n := s.n
	qw := mat.NewDense(n, n, nil)
	var pw *mat.Dense
	if obj == Full {
		pw = mat.NewDense(n, n, nil)
	}
	for i, gi := range p.g {
		axpy(qw, w[i], gi.Q)
		if pw != nil {
			axpy(pw, w[i], gi.P)
		}
	}
	var boTbo, aoQ, aoQaoT mat.Dense
	boTbo.Mul(bo.T(), bo)
	aoQ.Mul(ao, qw)
	aoQaoT.Mul(&aoQ, ao.T())
	res := frob(&boTbo, &aoQaoT)
	for i, fi := range p.f {
		si := fi.Scale
		var btbo, apao, agat mat.Dense
		btbo.Mul(fi.B.T(), bo)
		apao.Mul(p.ap[i], ao.T())
		agat.Mul(p.ag[i], fi.A.T())
		res += w[i] * (-2*si*frob(&btbo, &apao) + si*si*frob(p.btb[i], &agat))
	}
	if obj != Full {
		return res
	}
	// ||U||^2 with U = (X~ - X) W0^T, summed: <K, Qw - Pw - Pw^T + Gw>.
	for i, gi := range p.g {
		res += w[i] * (frob(p.k, gi.Q) - 2*frob(p.k, gi.P) + frob(p.k, gi.G))
	}
	// 2<U, V>: <Bo^T W0, Ao (Qw - Pw^T)> - sum_i w_i s_i <B_i^T W0, A_i (P_i - G_i)>.
	var bow, aoPt mat.Dense
	bow.Mul(bo.T(), p.w0)
	aoPt.Mul(ao, pw.T())
	uv := frob(&bow, &aoQ) - frob(&bow, &aoPt)
	for i, fi := range p.f {
		uv -= w[i] * fi.Scale * (frob(p.btw[i], p.ap[i]) - frob(p.btw[i], p.ag[i]))
	}
	return res + 2*uv
}

// RelChange returns ||B A - B' A'||_F / ||B' A'||_F for the previous update
// B' A' (prevB, prevA) and the new one B A, through QR factors of the
// stacked factors (k x k products), never forming an m x n matrix. With no
// previous update (nil or zero) it returns 0 if the new one is zero too and
// +Inf otherwise.
func RelChange(prevB, prevA, b, a *mat.Dense) float64 {
	num := diffNorm(prevB, prevA, b, a)
	den := diffNorm(nil, nil, prevB, prevA)
	if den == 0 {
		if num == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return num / den
}

// diffNorm returns ||b a - pb pa||_F (pb, pa may be nil).
func diffNorm(pb, pa, b, a *mat.Dense) float64 {
	var left, right []*mat.Dense // [b, -pb], [a; pa]
	if b != nil && a != nil {
		left = append(left, b)
		right = append(right, a)
	}
	if pb != nil && pa != nil {
		var neg mat.Dense
		neg.Scale(-1, pb)
		left = append(left, &neg)
		right = append(right, pa)
	}
	if len(left) == 0 {
		return 0
	}
	m, _ := left[0].Dims()
	_, n := right[0].Dims()
	k := 0
	for _, l := range left {
		_, c := l.Dims()
		k += c
	}
	if k == 0 {
		return 0
	}
	c := mat.NewDense(m, k, nil)
	d := mat.NewDense(n, k, nil) // right factors transposed
	off := 0
	for i, l := range left {
		_, ci := l.Dims()
		c.Slice(0, m, off, off+ci).(*mat.Dense).Copy(l)
		d.Slice(0, n, off, off+ci).(*mat.Dense).Copy(right[i].T())
		off += ci
	}
	if m < k || n < k {
		// Small site: the dense difference is no larger than the factors.
		var p mat.Dense
		p.Mul(c, d.T())
		return mat.Norm(&p, 2)
	}
	// C D^T = Q1 R1 R2^T Q2^T, so the norm is ||R1 R2^T||_F.
	r1, r2 := qrR(c), qrR(d)
	var core mat.Dense
	core.Mul(r1, r2.T())
	return mat.Norm(&core, 2)
}

// qrR returns the k x k triangular factor of the QR factorisation of an
// m x k matrix (m >= k).
func qrR(x *mat.Dense) *mat.Dense {
	var qr mat.QR
	qr.Factorize(x)
	var r mat.Dense
	qr.RTo(&r)
	_, k := x.Dims()
	return mat.DenseCopyOf(r.Slice(0, k, 0, k))
}

// hcatB returns [B_1 ... B_N] (m x R).
func hcatB(f []Factor, s site) *mat.Dense {
	b := mat.NewDense(s.m, s.R, nil)
	off := 0
	for i, fi := range f {
		b.Slice(0, s.m, off, off+s.ranks[i]).(*mat.Dense).Copy(fi.B)
		off += s.ranks[i]
	}
	return b
}

func transpose(x mat.Matrix) *mat.Dense {
	return mat.DenseCopyOf(x.T())
}

// frob returns the Frobenius inner product sum_ij x_ij y_ij.
func frob(x, y mat.Matrix) float64 {
	r, c := x.Dims()
	if xd, ok := x.(*mat.Dense); ok {
		if yd, ok := y.(*mat.Dense); ok {
			xr, yr := xd.RawMatrix(), yd.RawMatrix()
			sum := 0.0
			for i := 0; i < r; i++ {
				sum += blas64.Dot(
					blas64.Vector{N: c, Inc: 1, Data: xr.Data[i*xr.Stride : i*xr.Stride+c]},
					blas64.Vector{N: c, Inc: 1, Data: yr.Data[i*yr.Stride : i*yr.Stride+c]})
			}
			return sum
		}
	}
	sum := 0.0
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			sum += x.At(i, j) * y.At(i, j)
		}
	}
	return sum
}

func sqNorm(x *mat.Dense) float64 {
	v := mat.Norm(x, 2)
	return v * v
}

// axpy does dst += alpha x for dense matrices of the same shape.
func axpy(dst *mat.Dense, alpha float64, x *mat.Dense) {
	r, c := dst.Dims()
	dr, xr := dst.RawMatrix(), x.RawMatrix()
	for i := 0; i < r; i++ {
		blas64.Axpy(alpha,
			blas64.Vector{N: c, Inc: 1, Data: xr.Data[i*xr.Stride : i*xr.Stride+c]},
			blas64.Vector{N: c, Inc: 1, Data: dr.Data[i*dr.Stride : i*dr.Stride+c]})
	}
}
