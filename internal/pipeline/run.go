package pipeline

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/shard"
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
	// EstimateMemory, when set, estimates the merge's peak memory before anything heavy loads;
	// a merge above MemoryLimit is refused (see inputs.Config). Wire layerplan's
	// single-process estimate here.
	EstimateMemory inputs.Estimator
	// MemoryLimit caps the estimate, in bytes; 0 means the machine's memory.
	MemoryLimit int64
}

// Report is merge_report.json (defined in internal/output).
type Report = output.Report

// runner is one Run: its options, warnings and report.
type runner struct {
	opt      Options
	rep      *progress.Reporter
	warnings []string
	report   *Report
}

func (r *runner) warn(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	r.warnings = append(r.warnings, msg)
	if r.opt.Warnings != nil {
		fmt.Fprintln(r.opt.Warnings, "warning:", msg)
	}
}

// Run performs the merge the spec describes and writes OUT_DIR. Every input is read and checked
// before any heavy work; on error the output directory is left as it was. When ctx is done, Run
// returns ctx's error at once and leaves no temporary files behind (the heavy phases, which take
// no context yet, finish in the background, so the caller should exit).
func Run(ctx context.Context, opt Options) (*Report, error) {
	t0 := time.Now()
	s := opt.Spec
	r := &runner{opt: opt, rep: opt.Progress}
	if r.rep == nil {
		r.rep = progress.Discard()
	}
	for _, w := range s.Warnings() {
		r.warn("%s", w)
	}
	if err := inputs.CheckOut(s, opt.Out, opt.Force); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	removed, err := output.CleanStale(opt.Out)
	for _, p := range removed {
		r.warn("removed %s, the staging directory of an earlier merge into %s that was killed", p, opt.Out)
	}
	if err != nil {
		r.warn("%v", err)
	}
	in, err := inputs.Prepare(ctx, inputs.Config{Spec: s, Warn: r.warn, Estimate: opt.EstimateMemory, MemoryLimit: opt.MemoryLimit})
	if err != nil {
		return nil, err
	}
	timings := map[string]float64{"validate": time.Since(t0).Seconds()}
	tasks := make([]*Task, len(in.Tasks))
	for i, t := range in.Tasks {
		tasks[i] = &Task{Name: t.Name, Adapter: t.Adapter, Weight: t.Weight}
	}
	r.report = &Report{Version: opt.Version, Method: s.Method, Settings: s.Canonical(),
		Inputs: output.Inputs{BaseModel: s.BaseModel, Files: in.Hashes}, Timings: timings, BLAS: linalg.Current().String()}

	// Heavy work from here on.
	var mods []*adapter.Module
	if err := interruptible(ctx, func() (err error) {
		mods, err = r.merge(in, tasks)
		return err
	}); err != nil {
		return nil, err
	}
	r.finish(tasks, mods)
	r.report.Output.RankClamped = in.RankClamped
	timings["total"] = time.Since(t0).Seconds()
	if err := output.Write(ctx, output.Options{Dir: opt.Out, Force: opt.Force, Spec: s, Base: in.Shapes,
		BaseModelName: in.BaseModelName, Command: opt.Command, Warn: r.warn}, r.report, mods); err != nil {
		return nil, err
	}
	return r.report, nil
}

// interruptible runs f and returns its error, or ctx's error as soon as ctx is done. The heavy
// phases take no context yet (the per-shard unit that replaces them will), so after a
// cancellation f runs on in the background until the process exits; it creates no files.
func interruptible(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// merge runs the configured method. Weight-only merges never need the base weights.
func (r *runner) merge(in *inputs.Inputs, tasks []*Task) ([]*adapter.Module, error) {
	s := r.opt.Spec
	timings := r.report.Timings
	if !s.DataAware() {
		t := time.Now()
		mods, err := weightOnly(s, tasks, r.warn)
		timings["merge"] = time.Since(t).Seconds()
		return mods, err
	}
	t1 := time.Now()
	base, err := model.Load(s.BaseModel)
	if err != nil {
		return nil, err
	}
	timings["load"] = time.Since(t1).Seconds()
	t2 := time.Now()
	if err := r.calibrate(base, in, tasks); err != nil {
		return nil, err
	}
	timings["calibration"] = time.Since(t2).Seconds()
	set := settingsOf(s)
	mg, err := NewMerger(base, tasks, set, r.rep)
	if err != nil {
		return nil, err
	}
	r.convergence(set, mg.Levels())
	t3 := time.Now()
	recs, err := mg.Run()
	if err != nil {
		return nil, err
	}
	r.report.Solves = recs
	var capture, solve, refine float64
	for _, rec := range recs {
		capture += rec.CaptureSeconds
		solve += rec.SolveSeconds
		refine += rec.RefineSeconds
	}
	timings["capture"], timings["solve"] = capture, solve
	if set.RefineSteps > 0 {
		timings["refine"] = refine
	}
	timings["merge"] = time.Since(t3).Seconds()
	return mg.Result(), nil
}

// calibrate builds every task's calibration sequences with its own task model.
func (r *runner) calibrate(base *model.Model, in *inputs.Inputs, tasks []*Task) error {
	p := r.opt.Spec.Parameters
	ph := r.rep.Phase("calibration", len(tasks))
	for i, t := range tasks {
		tm, err := base.WithLoRA(LoRAs(t.Adapter), false)
		if err != nil {
			return err
		}
		var capped int
		items := in.Tasks[i].Items // already cut to parameters.samples
		t.Seqs, capped, err = Calibrate(tm, in.Tokenizer, items, CalibOptions{Samples: len(items), CompletionTokens: p.CompletionTokens,
			MaxNewTokens: p.MaxNewTokens, BatchSize: p.BatchSize, MaxLength: base.Config.MaxLength()})
		if err != nil {
			return fmt.Errorf("calibration of %s: %w", t.Name, err)
		}
		if capped > 0 {
			r.warn("%d calibration sequences of %s reached the base model's max_position_embeddings (%d) before EOS: their completions stop there", capped, t.Name, base.Config.MaxLength())
		}
		ph.Set(i + 1)
	}
	ph.Done()
	return nil
}

// convergence records whether the schedule reaches the sweep's fixed point, and warns when
// jacobi with objective full stops short of it.
func (r *runner) convergence(set SolveSettings, levels int) {
	s := r.opt.Spec
	r.report.Levels = levels
	if s.Method != spec.MethodIterIS {
		return
	}
	conv := !(set.Schedule == Jacobi && set.Iterations < levels)
	r.report.Converged = &conv
	if conv {
		return
	}
	msg := fmt.Sprintf("jacobi with %d solves has not converged: this model has %d dependency levels, and jacobi reaches the sweep's fixed point only after that many solves", set.Iterations, levels)
	if set.Objective == merge.Full {
		r.warn("%s; with objective full it collapses there (use schedule: sweep)", msg)
	} else {
		r.warnings = append(r.warnings, msg)
	}
}

// finish fills the report's tasks, output and warnings.
func (r *runner) finish(tasks []*Task, mods []*adapter.Module) {
	s := r.opt.Spec
	for i, t := range tasks {
		tr := output.TaskReport{Name: t.Name, Path: s.Adapters[i].Path, Weight: t.Weight, Calibration: s.Adapters[i].Calibration,
			Sequences: len(t.Seqs), Modules: len(t.Adapter.Modules)}
		for _, q := range t.Seqs {
			tr.Tokens += len(q)
		}
		r.report.Tasks = append(r.report.Tasks, tr)
	}
	r.report.Output = output.OutputReport{Dir: r.opt.Out, Modules: len(mods), DType: s.Output.DType}
	for _, m := range mods {
		r.report.Output.MaxRank = max(r.report.Output.MaxRank, m.R)
	}
	r.report.Warnings = append([]string{}, r.warnings...)
}

func settingsOf(s *spec.Spec) SolveSettings { return shard.SettingsOf(s) }
