package shard

import (
	"fmt"
	"sort"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
)

// WeightOnlySettings are the parameters of a merge that needs no data (PEFT's
// add_weighted_adapter combinations and their dense _svd variants).
type WeightOnlySettings struct {
	// Method is cat, linear, svd, ties, ties_svd, magnitude_prune, magnitude_prune_svd,
	// dare_linear or dare_ties.
	Method string
	// Rank is output.rank (merge.RankAuto, merge.RankFull or k > 0); SVDRank is
	// parameters.svd_rank (0: none).
	Rank, SVDRank int
	// Density, MajoritySign and Seed are the pruning and DARE parameters.
	Density      float64
	MajoritySign string
	Seed         uint64
}

// ModuleNames returns the sorted union of the tasks' modules in layers [lo, hi).
func ModuleNames(tasks []Task, lo, hi int) []string {
	set := map[string]bool{}
	for _, t := range tasks {
		for n := range t.Adapter.Modules {
			if l, _, ok := model.PointOf(n); ok && l >= lo && l < hi {
				set[n] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// WeightOnly merges the named modules from the adapters' weights alone, site by site: the single
// process passes every module, a worker those of its shard. A task whose adapter lacks a module
// is left out there.
func WeightOnly(set WeightOnlySettings, tasks []Task, names []string) (Updates, error) {
	out := Updates{}
	for _, name := range names {
		b, a, err := weightOnlySite(set, tasks, name)
		if err != nil {
			return nil, err
		}
		out[name] = Update{B: b, A: a}
	}
	return out, nil
}

func weightOnlySite(set WeightOnlySettings, tasks []Task, name string) (*mat.Dense, *mat.Dense, error) {
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
	requested := set.Rank
	if set.SVDRank > 0 {
		requested = set.SVDRank
	}
	// The output-rank rule: never above min(out, in); full keeps the dense update whole.
	rank := merge.OutputRank(requested, ranks, m, n, false).Rank
	var b, a *mat.Dense
	var err error
	switch set.Method {
	case "cat":
		b, a, err = merge.Cat(f)
		// cat truncates to output.rank but never pads: a larger rank keeps the sum.
		req := set.Rank
		if req > sumR {
			req = merge.RankAuto
		}
		if cr := merge.OutputRank(req, ranks, m, n, true).Rank; err == nil && cr < sumR {
			b, a, err = merge.SVD(f, cr, set.Seed)
		}
	case "linear":
		b, a, err = merge.Linear(f)
	case "svd":
		r := rank
		if requested <= 0 {
			r = merge.OutputRank(maxR, ranks, m, n, true).Rank
		}
		b, a, err = merge.SVD(f, r, set.Seed)
	case "ties":
		b, a, err = merge.TIES(f, set.Density, set.MajoritySign)
	case "magnitude_prune":
		b, a, err = merge.MagnitudePrune(f, set.Density)
	case "dare_linear":
		b, a, err = merge.DARELinear(f, set.Density, set.Seed)
	case "dare_ties":
		b, a, err = merge.DARETies(f, set.Density, set.MajoritySign, set.Seed)
	case "ties_svd":
		b, a, err = merge.TIESDense(f, set.Density, set.MajoritySign, rank, set.Seed)
	case "magnitude_prune_svd":
		b, a, err = merge.MagnitudePruneDense(f, set.Density, rank, set.Seed)
	default:
		return nil, nil, fmt.Errorf("%w: method %q is not a weight-only merge", ErrInput, set.Method)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s at %s: %w", set.Method, name, err)
	}
	return b, a, nil
}
