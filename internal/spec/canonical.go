package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// paramMethods lists, for each parameter, the methods that use it.
var paramMethods = map[string][]string{
	"samples":           {MethodIterIS, MethodRegMean},
	"completion_tokens": {MethodIterIS, MethodRegMean},
	"max_new_tokens":    {MethodIterIS, MethodRegMean},
	"batch_size":        {MethodIterIS, MethodRegMean},
	"objective":         {MethodIterIS, MethodRegMean},
	"schedule":          {MethodIterIS},
	"iterations":        {MethodIterIS},
	"tolerance":         {MethodIterIS},
	"alpha1":            {MethodIterIS},
	"alpha2":            {MethodIterIS},
	"adaptive_weights":  {MethodIterIS},
	"truncation":        {MethodIterIS},
	"refine":            {MethodIterIS},
	"reduce":            {MethodRegMean},
	"density": {MethodTIES, MethodTIESSVD, MethodMagnitudePrune, MethodMagnitudePruneSVD,
		MethodDARELinear, MethodDARETIES},
	"majority_sign": {MethodTIES, MethodTIESSVD, MethodDARETIES},
	"svd_rank":      {MethodSVD, MethodTIESSVD, MethodMagnitudePruneSVD},
	"seed":          {MethodIterIS, MethodSVD, MethodTIESSVD, MethodMagnitudePruneSVD, MethodDARELinear, MethodDARETIES},
}

// unused returns why parameter name does not apply to s, or "" when it
// does.
func (s *Spec) unused(name string) string {
	ms := paramMethods[name]
	if !slices.Contains(ms, s.Method) {
		return fmt.Sprintf("not used by method %s (only by %s)", s.Method, strings.Join(ms, ", "))
	}
	q := s.Parameters
	switch {
	case (name == "iterations" || name == "tolerance") && q.Schedule != ScheduleJacobi:
		return fmt.Sprintf("only used with schedule jacobi (schedule is %s)", q.Schedule)
	case name == "max_new_tokens" && q.CompletionTokens != CompletionAuto:
		return fmt.Sprintf("only used with completion_tokens: auto (completion_tokens is %d)", q.CompletionTokens)
	case name == "seed" && s.Method == MethodIterIS && q.Objective == ObjectiveDelta:
		return "only used by iteris with objective full or residual (randomized SVD of the updates)"
	case name == "truncation" && q.Objective == ObjectiveDelta:
		return "only used with objective full or residual (the delta objective's update is exactly of rank sum r_i)"
	case name == "refine" && q.Schedule != ScheduleSweep:
		return fmt.Sprintf("only used with schedule sweep (schedule is %s)", q.Schedule)
	}
	return ""
}

// Warnings lists settings of the file that are accepted but have no effect,
// or that are legal but likely mistakes: parameters the method (or the
// schedule, or completion_tokens) does not use, calibration files of a
// weight-only method, cluster.url without mode nats, adapters with zero or
// (for data-aware methods) negative weight, and adapters listed twice. Each
// reads "FILE:LINE: KEY: message", sorted by position. A Spec built in code has
// no record of what was written, so only the adapter warnings apply to it.
func (s *Spec) Warnings() []string {
	type warning struct {
		key string
		msg string
	}
	var ws []warning
	for _, name := range paramKeys {
		key := "parameters." + name
		if !s.given[key] {
			continue
		}
		if why := s.unused(name); why != "" {
			ws = append(ws, warning{key, why})
		}
	}
	paths := map[string]int{}
	for i, a := range s.Adapters {
		key := fmt.Sprintf("adapters[%d]", i)
		if a.Calibration != "" && !s.DataAware() {
			ws = append(ws, warning{key + ".calibration", fmt.Sprintf("not used by method %s (only by iteris, regmean)", s.Method)})
		}
		switch {
		case a.Weight == 0:
			ws = append(ws, warning{key + ".weight", "is 0: the adapter contributes nothing"})
		case a.Weight < 0 && s.DataAware():
			ws = append(ws, warning{key + ".weight", fmt.Sprintf("is negative (%v): the solve's matrix may not be positive definite", a.Weight)})
		}
		if j, dup := paths[a.Path]; dup && a.Path != "" {
			ws = append(ws, warning{key + ".path", fmt.Sprintf("%s is also adapters[%d]", a.Path, j)})
		} else {
			paths[a.Path] = i
		}
	}
	if s.given["cluster.url"] && s.Cluster.Mode != ClusterNATS {
		ws = append(ws, warning{"cluster.url", fmt.Sprintf("only used with mode nats (mode is %s)", s.Cluster.Mode)})
	}
	slices.SortStableFunc(ws, func(a, b warning) int {
		la, ca := s.lineOf(a.key)
		lb, cb := s.lineOf(b.key)
		return cmp.Or(cmp.Compare(la, lb), cmp.Compare(ca, cb))
	})
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = s.errorAt(w.key, "%s", w.msg).Error()
	}
	return out
}

// Canonical returns the effective settings, defaults filled and settings
// that do not apply dropped (the parameters of other methods, iterations
// and tolerance with the sweep, max_new_tokens with a fixed
// completion_tokens, svd_rank 0 (follow output.rank), truncation with
// objective delta, refine with jacobi or with 0 steps (closed form only),
// calibration files of weight-only methods, the URL of an embedded
// cluster). Values are strings, ints, uint64s, float64s, bools,
// []any and map[string]any, so json.Marshal gives a stable document for the
// model card and the merge report. Rank and completion_tokens read "auto"
// or "full" for their special values, samples "all".
func (s *Spec) Canonical() map[string]any {
	adapters := make([]any, len(s.Adapters))
	for i, a := range s.Adapters {
		m := map[string]any{"name": a.Name, "path": a.Path, "weight": a.Weight}
		if s.DataAware() {
			m["calibration"] = a.Calibration
		}
		adapters[i] = m
	}
	q := s.Parameters
	all := map[string]any{
		"samples":          q.Samples,
		"objective":        q.Objective,
		"schedule":         q.Schedule,
		"iterations":       q.Iterations,
		"tolerance":        q.Tolerance,
		"alpha1":           q.Alpha1,
		"alpha2":           q.Alpha2,
		"adaptive_weights": q.AdaptiveWeights,
		"max_new_tokens":   q.MaxNewTokens,
		"batch_size":       q.BatchSize,
		"reduce":           q.Reduce,
		"density":          q.Density,
		"majority_sign":    q.MajoritySign,
		"svd_rank":         q.SVDRank,
		"seed":             q.Seed,
	}
	q.residualCanonical(all)
	if q.CompletionTokens == CompletionAuto {
		all["completion_tokens"] = "auto"
	} else {
		all["completion_tokens"] = q.CompletionTokens
	}
	params := map[string]any{}
	for k, v := range all {
		if s.unused(k) == "" && !(k == "svd_rank" && q.SVDRank == 0) {
			params[k] = v
		}
	}
	var rank any = s.Output.Rank
	switch s.Output.Rank {
	case RankAuto:
		rank = "auto"
	case RankFull:
		rank = "full"
	}
	cluster := map[string]any{"mode": s.Cluster.Mode, "workers": s.Cluster.Workers}
	if s.Cluster.Mode == ClusterNATS {
		cluster["url"] = s.Cluster.URL
	}
	return map[string]any{
		"base_model": s.BaseModel,
		"method":     s.Method,
		"adapters":   adapters,
		"parameters": params,
		"output":     map[string]any{"rank": rank, "dtype": s.Output.DType},
		"cluster":    cluster,
	}
}
