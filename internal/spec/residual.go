package spec

import (
	"math"
	"slices"
)

// The vocabulary of the recommended method (issue 8): objective residual, truncation, refine and
// samples: all. Kept apart from the older keys' parsing and checks.

// refine reads `parameters.refine:` over the defaults in r.
func (p *parser) refine(e entry, r *Refine) {
	m, ok := p.mapping(e.val, "parameters.refine", refineKeys)
	if !ok {
		return
	}
	if f, ok := m["steps"]; ok {
		if n, ok := p.integer(f, "parameters.refine.steps"); ok {
			r.Steps = n
		}
	}
	if f, ok := m["lr"]; ok {
		if x, ok := p.number(f, "parameters.refine.lr"); ok {
			r.LR = x
		}
	}
}

// objectiveDefaults fills the objective-dependent parameters the file does not give from the
// defaults of its objective (DefaultsFor).
func (s *Spec) objectiveDefaults() {
	q := &s.Parameters
	d := DefaultsFor(s.Method, q.Objective)
	if !s.given["parameters.samples"] {
		q.Samples = d.Samples
	}
	if !s.given["parameters.truncation"] {
		q.Truncation = d.Truncation
	}
	if !s.given["parameters.refine.steps"] {
		q.Refine.Steps = d.Refine.Steps
	}
}

// checkResidual returns the problems with the recommended method's settings: the residual
// objective needs the sweep, a known truncation, and a refinement of >= 0 steps at a finite
// learning rate > 0.
func (s *Spec) checkResidual() []*Error {
	var errs []*Error
	bad := func(key, format string, args ...any) { errs = append(errs, s.errorAt(key, format, args...)) }
	q := s.Parameters
	if s.Method == MethodIterIS && q.Objective == ObjectiveResidual && q.Schedule == ScheduleJacobi {
		bad("parameters.objective", "objective residual needs schedule sweep (it corrects the drift of the merged residual stream level by level, in the sweep's order); schedule is jacobi")
	}
	if !slices.Contains([]string{TruncationData, TruncationSVD}, q.Truncation) {
		bad("parameters.truncation", "%q is not allowed%s; expected one of %s, %s", q.Truncation,
			suggest(q.Truncation, []string{TruncationData, TruncationSVD}), TruncationData, TruncationSVD)
	}
	if q.Refine.Steps < 0 {
		bad("parameters.refine.steps", "must be >= 0 (0: closed form only), got %d", q.Refine.Steps)
	}
	switch lr := q.Refine.LR; {
	case math.IsNaN(lr) || math.IsInf(lr, 0):
		bad("parameters.refine.lr", "must be a finite number, got %v", lr)
	case !(lr > 0):
		bad("parameters.refine.lr", "must be > 0, got %v", lr)
	}
	return errs
}

// residualCanonical writes the recommended method's keys into Canonical's parameters: truncation
// (dropped later where it does not apply), samples "all", and refine only when it refines.
func (q Parameters) residualCanonical(all map[string]any) {
	all["truncation"] = q.Truncation
	if q.Samples == SamplesAll {
		all["samples"] = "all"
	}
	if q.Refine.Steps > 0 {
		all["refine"] = map[string]any{"steps": q.Refine.Steps, "lr": q.Refine.LR}
	}
}
