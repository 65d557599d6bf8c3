package shard

import (
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/spec"
)

// SettingsOf returns the data-aware solve's settings of a merge config (RegMean: one solve with
// X~ = X, no adaptive weights, no ridge). Settings that do not apply are dropped as the config's
// warnings say: the truncation with objective delta, the refinement with schedule jacobi.
func SettingsOf(s *spec.Spec) Settings {
	p := s.Parameters
	set := Settings{Method: s.Method, Objective: merge.Objective(p.Objective), Schedule: p.Schedule, Iterations: p.Iterations,
		Tolerance: p.Tolerance, Alpha1: p.Alpha1, Alpha2: p.Alpha2, Adaptive: p.AdaptiveWeights, Rank: s.Output.Rank,
		Reduce: p.Reduce, Seed: p.Seed, BatchSize: p.BatchSize, Truncation: merge.Truncation(p.Truncation),
		RefineSteps: p.Refine.Steps, RefineLR: p.Refine.LR}
	if set.Objective == merge.Delta {
		set.Truncation = ""
	}
	if s.Method != spec.MethodIterIS || set.Schedule != Sweep {
		set.RefineSteps = 0
	}
	if s.Method == spec.MethodRegMean {
		set.Objective, set.Schedule, set.Iterations = merge.Delta, Jacobi, 1
		set.Adaptive, set.Alpha1, set.Alpha2 = false, 0, 0
		set.Truncation = ""
	}
	return set
}

// WeightOnlyOf returns the weight-only merge parameters of a merge config.
func WeightOnlyOf(s *spec.Spec) WeightOnlySettings {
	p := s.Parameters
	return WeightOnlySettings{Method: s.Method, Rank: s.Output.Rank, SVDRank: p.SVDRank, Density: p.Density,
		MajoritySign: p.MajoritySign, Seed: p.Seed}
}
