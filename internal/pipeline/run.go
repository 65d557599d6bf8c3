package pipeline

import (
	"fmt"
	"io"
	"time"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/spec"
)

// Options configures Run.
type Options struct {
	// Spec is the parsed merge config.
	Spec *spec.Spec
	// Out is the output directory.
	Out string
	// Force allows replacing a non-empty Out.
	Force bool
	// Progress reports phases; nil shows nothing.
	Progress *progress.Reporter
	// Warnings receives warnings, one per line; nil discards them.
	Warnings io.Writer
	// Command is the command line, recorded in the model card.
	Command string
	// Version is the iteris version, recorded in the report.
	Version string
}

// Report is merge_report.json (defined in internal/output).
type Report = output.Report

// Run performs the merge the spec describes and writes OUT_DIR. Every input is read and checked
// before any heavy work; on error the output directory is left as it was.
func Run(opt Options) (*Report, error) {
	t0 := time.Now()
	s := opt.Spec
	rep := opt.Progress
	if rep == nil {
		rep = progress.Discard()
	}
	var warnings []string
	warn := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		warnings = append(warnings, msg)
		if opt.Warnings != nil {
			fmt.Fprintln(opt.Warnings, "warning:", msg)
		}
	}
	for _, w := range s.Warnings() {
		warn("%s", w)
	}
	if err := inputs.CheckOut(opt.Out, opt.Force); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	in, err := inputs.Prepare(s, warn)
	if err != nil {
		return nil, err
	}
	timings := map[string]float64{"validate": time.Since(t0).Seconds()}

	tasks := make([]*Task, len(in.Tasks))
	for i, t := range in.Tasks {
		tasks[i] = &Task{Name: t.Name, Adapter: t.Adapter, Weight: t.Weight}
	}
	report := &Report{Version: opt.Version, Method: s.Method, Settings: s.Canonical(),
		Inputs: output.Inputs{BaseModel: s.BaseModel, Files: in.Hashes}, Timings: timings}

	// Heavy work from here on. Weight-only merges never need the base weights.
	var mods []*adapter.Module
	if s.DataAware() {
		t1 := time.Now()
		base, err := model.Load(s.BaseModel)
		if err != nil {
			return nil, err
		}
		timings["load"] = time.Since(t1).Seconds()
		t2 := time.Now()
		ph := rep.Phase("calibration", len(tasks))
		for i, t := range tasks {
			tm, err := base.WithLoRA(LoRAs(t.Adapter), false)
			if err != nil {
				return nil, err
			}
			p := s.Parameters
			t.Seqs, err = Calibrate(tm, in.Tokenizer, in.Tasks[i].Items, CalibOptions{Samples: p.Samples, CompletionTokens: p.CompletionTokens,
				MaxNewTokens: p.MaxNewTokens, BatchSize: p.BatchSize})
			if err != nil {
				return nil, fmt.Errorf("calibration of %s: %w", t.Name, err)
			}
			ph.Set(i + 1)
		}
		ph.Done()
		timings["calibration"] = time.Since(t2).Seconds()
		set := settingsOf(s)
		mg, err := NewMerger(base, tasks, set, rep)
		if err != nil {
			return nil, err
		}
		report.Levels = mg.Levels()
		if s.Method == "iteris" && set.Schedule == Jacobi && set.Iterations < mg.Levels() {
			conv := false
			report.Converged = &conv
			msg := fmt.Sprintf("jacobi with %d solves has not converged: this model has %d dependency levels, and jacobi reaches the sweep's fixed point only after that many solves", set.Iterations, mg.Levels())
			if set.Objective == merge.Full {
				warn("%s; with objective full it collapses there (use schedule: sweep)", msg)
			} else {
				warnings = append(warnings, msg)
			}
		} else if s.Method == "iteris" {
			conv := true
			report.Converged = &conv
		}
		t3 := time.Now()
		recs, err := mg.Run()
		if err != nil {
			return nil, err
		}
		report.Solves = recs
		var capture, solve float64
		for _, r := range recs {
			capture += r.CaptureSeconds
			solve += r.SolveSeconds
		}
		timings["capture"], timings["solve"] = capture, solve
		timings["merge"] = time.Since(t3).Seconds()
		mods = mg.Result()
	} else {
		t3 := time.Now()
		mods, err = weightOnly(s, tasks, warn)
		if err != nil {
			return nil, err
		}
		timings["merge"] = time.Since(t3).Seconds()
	}
	for i, t := range tasks {
		tr := output.TaskReport{Name: t.Name, Path: s.Adapters[i].Path, Weight: t.Weight, Calibration: s.Adapters[i].Calibration,
			Sequences: len(t.Seqs), Modules: len(t.Adapter.Modules)}
		for _, q := range t.Seqs {
			tr.Tokens += len(q)
		}
		report.Tasks = append(report.Tasks, tr)
	}
	report.Output = output.OutputReport{Dir: opt.Out, Modules: len(mods), DType: s.Output.DType}
	for _, m := range mods {
		report.Output.MaxRank = max(report.Output.MaxRank, m.R)
	}
	report.Warnings = append([]string{}, warnings...)
	timings["total"] = time.Since(t0).Seconds()
	t4 := time.Now()
	if err := output.Write(output.Options{Dir: opt.Out, Spec: s, Base: in.Shapes, Command: opt.Command}, report, mods); err != nil {
		return nil, err
	}
	timings["write"] = time.Since(t4).Seconds()
	return report, nil
}

func settingsOf(s *spec.Spec) SolveSettings {
	p := s.Parameters
	set := SolveSettings{Method: s.Method, Objective: merge.Objective(p.Objective), Schedule: p.Schedule, Iterations: p.Iterations,
		Tolerance: p.Tolerance, Alpha1: p.Alpha1, Alpha2: p.Alpha2, Adaptive: p.AdaptiveWeights, Rank: s.Output.Rank,
		Reduce: p.Reduce, Seed: p.Seed, BatchSize: p.BatchSize}
	if s.Method == "regmean" {
		set.Objective, set.Schedule, set.Iterations = merge.Delta, Jacobi, 1
		set.Adaptive, set.Alpha1, set.Alpha2 = false, 0, 0
	}
	return set
}
