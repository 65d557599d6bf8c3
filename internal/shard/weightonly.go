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

// siteFactors returns the factors of the tasks whose adapters have the module (weight-only merges
// simply leave a task out where its adapter lacks the module), their ranks, largest and sum.
func siteFactors(tasks []Task, name string) (f []merge.Factor, ranks []int, maxR, sumR int) {
	for _, t := range tasks {
		m, ok := t.Adapter.Modules[name]
		if !ok {
			continue
		}
		f = append(f, merge.Factor{A: mat.NewDense(m.R, m.In, f64(m.A)), B: mat.NewDense(m.Out, m.R, f64(m.B)), Scale: m.Scale, Weight: t.Weight})
		ranks = append(ranks, m.R)
		maxR = max(maxR, m.R)
		sumR += m.R
	}
	return f, ranks, maxR, sumR
}

func weightOnlySite(set WeightOnlySettings, tasks []Task, name string) (*mat.Dense, *mat.Dense, error) {
	f, ranks, maxR, sumR := siteFactors(tasks, name)
	if len(f) == 0 {
		return nil, nil, fmt.Errorf("%w: no adapter has module %s", ErrInput, name)
	}
	m, n := f[0].B.RawMatrix().Rows, f[0].A.RawMatrix().Cols
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
