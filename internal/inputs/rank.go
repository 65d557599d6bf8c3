package inputs

import (
	"fmt"
	"sort"

	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/spec"
)

// requestedRank returns the output rank the method asks for (spec.Output.Rank, or svd_rank for
// the svd methods), whether the update it truncates is exactly a LoRA of the summed ranks, and
// whether the method has an output rank at all.
func requestedRank(s *spec.Spec) (requested int, exact, ok bool) {
	switch s.Method {
	case spec.MethodIterIS:
		return s.Output.Rank, s.Parameters.Objective == spec.ObjectiveDelta, true
	case spec.MethodRegMean, spec.MethodCat:
		return s.Output.Rank, true, true
	case spec.MethodSVD, spec.MethodTIESSVD, spec.MethodMagnitudePruneSVD:
		r := s.Output.Rank
		if s.Parameters.SVDRank > 0 {
			r = s.Parameters.SVDRank
		}
		if s.Method == spec.MethodSVD && r <= 0 {
			return 0, false, false // the largest input rank
		}
		return r, false, true
	}
	return 0, false, false // linear, ties, dare_*, magnitude_prune keep the input rank
}

// checkRanks applies the output-rank rule (merge.OutputRank) to every module before any heavy
// work: a requested rank above a module's min(out, in) is lowered to it, and one warning says
// where. It records the output rank of every module and the number lowered.
func (in *Inputs) checkRanks(s *spec.Spec, warn func(string, ...any)) {
	requested, exact, ok := requestedRank(s)
	if !ok {
		return
	}
	ranks := map[string][]int{}
	for _, t := range in.Tasks {
		for name, m := range t.Adapter.Modules {
			ranks[name] = append(ranks[name], m.R)
		}
	}
	names := make([]string, 0, len(ranks))
	for n := range ranks {
		names = append(names, n)
	}
	sort.Strings(names)
	in.Ranks = make(map[string]int, len(names))
	var first string
	var firstChoice merge.RankChoice
	for _, n := range names {
		out, inw, _ := in.Shapes.LinearShape(n)
		c := merge.OutputRank(catRank(s.Method, requested, ranks[n]), ranks[n], out, inw, exact)
		in.Ranks[n] = c.Rank
		if c.Clamped {
			if in.RankClamped == 0 {
				first, firstChoice = n, c
			}
			in.RankClamped++
		}
	}
	if in.RankClamped == 0 {
		return
	}
	out, inw, _ := in.Shapes.LinearShape(first)
	what := fmt.Sprintf("output.rank %d", requested)
	if requested == spec.RankAuto {
		what = fmt.Sprintf("output.rank auto (the sum of the input ranks, %d at %s)", sum(ranks[first]), first)
	} else if s.Parameters.SVDRank > 0 {
		what = fmt.Sprintf("parameters.svd_rank %d", requested)
	}
	warn("%s is above min(out, in) at %d of %d modules (%s is %dx%d): those are written at rank min(out, in) (%d there), which loses nothing, since no update of that shape has a higher rank",
		what, in.RankClamped, len(names), first, out, inw, firstChoice.Rank)
}

// catRank is the rank method cat asks for: it truncates to output.rank but never pads, so a rank
// above the sum of the input ranks means the sum.
func catRank(method string, requested int, ranks []int) int {
	if method == spec.MethodCat && requested > sum(ranks) {
		return spec.RankAuto
	}
	return requested
}

func sum(x []int) int {
	t := 0
	for _, v := range x {
		t += v
	}
	return t
}
