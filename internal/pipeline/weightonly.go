package pipeline

import (
	"fmt"
	"sort"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/spec"
)

// weightOnly runs a merge that needs no data, site by site.
func weightOnly(s *spec.Spec, tasks []*Task, warn func(string, ...any)) ([]*adapter.Module, error) {
	p := s.Parameters
	names := map[string]bool{}
	for _, t := range tasks {
		for n := range t.Adapter.Modules {
			names[n] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	if s.Method == "linear" {
		warn("method linear averages the A's and the B's separately, as PEFT does: it is not task arithmetic (use cat for the exact weighted sum of updates)")
	}
	var out []*adapter.Module
	for _, name := range sorted {
		var f []merge.Factor
		maxR, sumR := 0, 0
		for _, t := range tasks {
			m, ok := t.Adapter.Modules[name]
			if !ok {
				continue // weight-only merges simply leave the missing task out at this site
			}
			f = append(f, merge.Factor{A: mat.NewDense(m.R, m.In, f64(m.A)), B: mat.NewDense(m.Out, m.R, f64(m.B)), Scale: m.Scale, Weight: t.Weight})
			maxR = max(maxR, m.R)
			sumR += m.R
		}
		m, n := f[0].B.RawMatrix().Rows, f[0].A.RawMatrix().Cols
		var ranks []int
		for _, fi := range f {
			ranks = append(ranks, fi.A.RawMatrix().Rows)
		}
		requested := s.Output.Rank
		if p.SVDRank > 0 {
			requested = p.SVDRank
		}
		// The output-rank rule: never above min(out, in); full keeps the dense update whole.
		rank := merge.OutputRank(requested, ranks, m, n, false).Rank
		var b, a *mat.Dense
		var err error
		switch s.Method {
		case "cat":
			b, a, err = merge.Cat(f)
			// cat truncates to output.rank but never pads: a larger rank keeps the sum.
			req := s.Output.Rank
			if req > sumR {
				req = merge.RankAuto
			}
			if cr := merge.OutputRank(req, ranks, m, n, true).Rank; err == nil && cr < sumR {
				b, a, err = merge.SVD(f, cr, p.Seed)
			}
		case "linear":
			b, a, err = merge.Linear(f)
		case "svd":
			r := rank
			if requested <= 0 {
				r = merge.OutputRank(maxR, ranks, m, n, true).Rank
			}
			b, a, err = merge.SVD(f, r, p.Seed)
		case "ties":
			b, a, err = merge.TIES(f, p.Density, p.MajoritySign)
		case "magnitude_prune":
			b, a, err = merge.MagnitudePrune(f, p.Density)
		case "dare_linear":
			b, a, err = merge.DARELinear(f, p.Density, p.Seed)
		case "dare_ties":
			b, a, err = merge.DARETies(f, p.Density, p.MajoritySign, p.Seed)
		case "ties_svd":
			b, a, err = merge.TIESDense(f, p.Density, p.MajoritySign, rank, p.Seed)
		case "magnitude_prune_svd":
			b, a, err = merge.MagnitudePruneDense(f, p.Density, rank, p.Seed)
		default:
			return nil, fmt.Errorf("%w: method %q is not a weight-only merge", ErrInput, s.Method)
		}
		if err != nil {
			return nil, fmt.Errorf("%s at %s: %w", s.Method, name, err)
		}
		out = append(out, moduleOf(name, b, a))
	}
	return out, nil
}
