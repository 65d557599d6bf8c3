package shard

import (
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/output"
)

// SiteRecord is one site's outcome in one solve (the report's type, internal/output).
type SiteRecord = output.SiteRecord

// LayerRecord is one layer's refinement in a sweep (the report's type, internal/output).
type LayerRecord = output.LayerRecord

// w0 returns the base weight of a site in float64.
func (u *Unit) w0(s *Site) *mat.Dense {
	lin, _ := u.base.Linear(s.Name)
	return mat.NewDense(lin.Out, lin.In, lin.W.Float64())
}

// solveSite solves one site from its Grams. prev is the site's update from the previous solve
// (nil on the first): its adaptive weights are reused and the relative change is measured against
// it. cross holds the site's residual-drift cross terms R_i = D_i^T X~_i, one per task (residual
// objective at o_proj and down_proj; nil elsewhere). Nothing of the unit changes.
func (u *Unit) solveSite(s *Site, g []gram.Grams, prev *Update, cross []*mat.Dense) (Update, SiteRecord, error) {
	set := u.set
	var coefs []float64
	if prev != nil && set.Adaptive {
		coefs = prev.Coefs
	}
	var w0 *mat.Dense
	if (set.Adaptive && coefs == nil) || set.dense() {
		w0 = u.w0(s)
	}
	// The output-rank rule over the ranks of the adapters that have this module (the zero
	// placeholders of the others add nothing).
	var ranks []int
	for i, f := range s.Factors {
		if !s.Missing[i] {
			r, _ := f.A.Dims()
			ranks = append(ranks, r)
		}
	}
	out, in := s.Factors[0].B.RawMatrix().Rows, s.Factors[0].A.RawMatrix().Cols
	rank := merge.OutputRank(set.Rank, ranks, out, in, !set.dense()).Solve
	var res merge.SiteResult
	var err error
	switch {
	case set.Method == MethodRegMean:
		res, err = merge.SolveRegMean(w0, s.Factors, g, set.Reduce, rank)
	case set.corrected():
		var cr merge.CorrectedResult
		cr, err = merge.SolveCorrected(w0, s.Factors, g, cross, merge.CorrectedOptions{
			Alpha1: set.Alpha1, Alpha2: set.Alpha2, Adaptive: set.Adaptive, Coefs: coefs,
			Rank: rank, Truncation: set.Truncation, Seed: set.Seed,
		})
		res = merge.SiteResult{B: cr.B, A: cr.A, Coefs: cr.Coefs, Weights: cr.Weights, Residual: cr.Residual, Method: cr.Method}
	default:
		res, err = merge.SolveIterIS(w0, s.Factors, g, merge.SolveOptions{
			Objective: set.Objective, Alpha1: set.Alpha1, Alpha2: set.Alpha2,
			Adaptive: set.Adaptive, Rank: rank, Seed: set.Seed, Coefs: coefs,
		})
	}
	if err != nil {
		return Update{}, SiteRecord{}, fmt.Errorf("site %s: %w", s.Name, err)
	}
	b, a := res.B, res.A
	if !set.dense() {
		b, a = dropMissing(s, b, a)
	}
	up := Update{B: b, A: a}
	if set.Adaptive {
		up.Coefs = res.Coefs
	}
	rec := SiteRecord{Residual: res.Residual, Coefs: res.Coefs, Weights: res.Weights, Method: res.Method}
	if prev != nil {
		rc := merge.RelChange(prev.B, prev.A, b, a)
		rec.RelChange = &rc
	}
	rec.Rank, _ = a.Dims()
	for _, gi := range g {
		rec.Tokens = append(rec.Tokens, gi.Tokens)
	}
	return up, rec, nil
}

// dropMissing removes the zero-rank columns that stand for tasks lacking the module, when the
// output is the concatenation [B_1 ... B_N] (the delta objective at full rank).
func dropMissing(s *Site, b, a *mat.Dense) (*mat.Dense, *mat.Dense) {
	hasMissing := false
	R := 0
	for i, f := range s.Factors {
		r, _ := f.A.Dims()
		R += r
		hasMissing = hasMissing || s.Missing[i]
	}
	if !hasMissing {
		return b, a
	}
	if k, _ := a.Dims(); k != R {
		return b, a // truncated: columns are mixed, nothing to drop
	}
	m, _ := b.Dims()
	_, n := a.Dims()
	var keepCols []int
	off := 0
	for i, f := range s.Factors {
		r, _ := f.A.Dims()
		if !s.Missing[i] {
			for j := 0; j < r; j++ {
				keepCols = append(keepCols, off+j)
			}
		}
		off += r
	}
	nb := mat.NewDense(m, len(keepCols), nil)
	na := mat.NewDense(len(keepCols), n, nil)
	for j, c := range keepCols {
		nb.SetCol(j, mat.Col(nil, c, b))
		na.SetRow(j, a.RawRowView(c))
	}
	return nb, na
}
