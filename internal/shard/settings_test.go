package shard_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/internal/spec"
)

func TestSettingsValidate(t *testing.T) {
	sweep := func(edit func(*shard.Settings)) shard.Settings {
		s := shard.Settings{Method: shard.MethodIterIS, Objective: merge.Residual, Schedule: shard.Sweep, Truncation: merge.TruncData,
			RefineSteps: 30, RefineLR: 1e-3}
		if edit != nil {
			edit(&s)
		}
		return s
	}
	tests := []struct {
		name string
		set  shard.Settings
		want string // "" = valid
	}{
		{"recommended", sweep(nil), ""},
		{"closed form", sweep(func(s *shard.Settings) { s.RefineSteps, s.RefineLR = 0, 0 }), ""},
		{"full with refinement", sweep(func(s *shard.Settings) { s.Objective, s.Truncation = merge.Full, "" }), ""},
		{"regmean", shard.Settings{Method: shard.MethodRegMean}, ""},
		{"method", shard.Settings{Method: "ties"}, `method "ties"`},
		{"objective", sweep(func(s *shard.Settings) { s.Objective = "output" }), `objective "output"`},
		{"schedule", sweep(func(s *shard.Settings) { s.Schedule = "gauss" }), `schedule "gauss"`},
		{"truncation", sweep(func(s *shard.Settings) { s.Truncation = "frobenius" }), `truncation "frobenius"`},
		{"residual with jacobi", sweep(func(s *shard.Settings) { s.Schedule, s.RefineSteps = shard.Jacobi, 0 }), "objective residual needs method iteris with schedule sweep"},
		{"refine with jacobi", sweep(func(s *shard.Settings) { s.Objective, s.Schedule = merge.Full, shard.Jacobi }), "refinement needs method iteris with schedule sweep"},
		{"refine with regmean", shard.Settings{Method: shard.MethodRegMean, RefineSteps: 2, RefineLR: 1}, "refinement needs method iteris"},
		{"negative steps", sweep(func(s *shard.Settings) { s.RefineSteps = -1 }), "-1 refinement steps"},
		{"no learning rate", sweep(func(s *shard.Settings) { s.RefineLR = 0 }), "learning rate 0"},
	}
	for _, tc := range tests {
		err := tc.set.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, shard.ErrInput) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want ErrInput saying %q", tc.name, err, tc.want)
		}
	}
	// New refuses what Validate refuses, before any work.
	jacobi := sweep(func(s *shard.Settings) { s.Schedule, s.RefineSteps = shard.Jacobi, 0 })
	if _, err := shard.New(loadRange(t, 0, 2), 0, 2, loadTasks(t), jacobi); !errors.Is(err, shard.ErrInput) {
		t.Errorf("New with the residual objective and jacobi: %v", err)
	}
}

// TestSettingsOf maps the config vocabulary: the residual objective's defaults, and the settings
// that do not apply dropped (truncation with delta, refinement with jacobi, both with RegMean).
func TestSettingsOf(t *testing.T) {
	head := "base_model: m\nmethod: iteris\nadapters: [{path: a, calibration: c}]\nparameters: "
	tests := []struct {
		src  string
		want shard.Settings
	}{
		{head + "{objective: residual}", shard.Settings{Objective: merge.Residual, Schedule: shard.Sweep, Truncation: merge.TruncData, RefineSteps: 30, RefineLR: 1e-3}},
		{head + "{objective: residual, refine: {steps: 0}, truncation: svd}", shard.Settings{Objective: merge.Residual, Schedule: shard.Sweep, Truncation: merge.TruncSVD, RefineLR: 1e-3}},
		{head + "{}", shard.Settings{Objective: merge.Full, Schedule: shard.Sweep, Truncation: merge.TruncSVD, RefineLR: 1e-3}},
		{head + "{objective: delta, truncation: data, schedule: jacobi, refine: {steps: 5}}", shard.Settings{Objective: merge.Delta, Schedule: shard.Jacobi, Iterations: 5, RefineLR: 1e-3}},
		{"base_model: m\nmethod: regmean\nadapters: [{path: a, calibration: c}]\n", shard.Settings{Method: shard.MethodRegMean, Objective: merge.Delta, Schedule: shard.Jacobi, Iterations: 1, RefineLR: 1e-3}},
	}
	for _, tc := range tests {
		s, err := spec.Parse([]byte(tc.src), "cfg.yaml")
		if err != nil {
			t.Fatal(err)
		}
		got := shard.SettingsOf(s)
		w := tc.want
		if w.Method == "" {
			w.Method, w.Iterations, w.Adaptive = shard.MethodIterIS, max(w.Iterations, 5), true
		}
		if w.Method == shard.MethodIterIS {
			w.Alpha1, w.Alpha2 = 1e-4, 1e-4
		}
		w.Reduce, w.BatchSize = 1, 16
		if got != w {
			t.Errorf("%s:\n got  %+v\n want %+v", tc.src, got, w)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %v", tc.src, err)
		}
	}
}

// TestSweepReportsRefinement: a refining sweep calls OnRefineStep after every Adam step of every
// layer and OnRefined once per layer with the record it returns; the closed form calls neither.
func TestSweepReportsRefinement(t *testing.T) {
	tasks := loadTasks(t)
	batches := shard.MakeBatches([][][]int{{{256, 60, 61, 61, 62, 61}}, {{256, 35, 35, 97, 98}}, {{256, 126, 126}}, {{256, 94, 94, 99}}}, 16)
	for _, steps := range []int{0, 2} {
		set := shard.Settings{Method: shard.MethodIterIS, Objective: merge.Residual, Schedule: shard.Sweep, Alpha1: 1e-4, Alpha2: 1e-4,
			Adaptive: true, RefineSteps: steps, RefineLR: 1e-3}
		u, err := shard.New(loadRange(t, 0, 2), 0, 2, tasks, set)
		if err != nil {
			t.Fatal(err)
		}
		var ticks int
		var seen []shard.LayerRecord
		out, err := u.Sweep(context.Background(), shard.StepInput{Batches: batches,
			OnRefineStep: func() { ticks++ }, OnRefined: func(r shard.LayerRecord) { seen = append(seen, r) }})
		if err != nil {
			t.Fatal(err)
		}
		if ticks != 2*steps || len(seen) != len(out.Layers) || (steps > 0) != (len(out.Layers) == 2) {
			t.Fatalf("%d steps: %d step calls, %d layer calls, %d layer records", steps, ticks, len(seen), len(out.Layers))
		}
		for i, r := range out.Layers {
			if r != seen[i] || r.Layer != i || r.Steps != steps || !(r.LossBefore > 0) || !(r.LossAfter > 0) {
				t.Errorf("layer record %+v (callback %+v)", r, seen[i])
			}
		}
		if (out.RefineSeconds > 0) != (steps > 0) || len(out.Updates) != 14 {
			t.Errorf("%d steps: refine %.3g s, %d updates", steps, out.RefineSeconds, len(out.Updates))
		}
	}
}
