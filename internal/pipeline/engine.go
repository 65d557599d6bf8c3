package pipeline

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/shard"
)

// ErrInput reports an input (config, adapter, calibration data, output directory) that cannot be
// merged; it is inputs.ErrInput, reported before any heavy work.
var ErrInput = inputs.ErrInput

// Schedules of the IterIS solve.
const (
	// Jacobi solves every site from the features of the previous solve's model (the paper's).
	Jacobi = shard.Jacobi
	// Sweep solves sites in dependency order in one pass.
	Sweep = shard.Sweep
)

// Task is one adapter to merge, with its calibration sequences.
type Task struct {
	// Name names the task (the adapter's name in the config).
	Name string
	// Adapter is the loaded PEFT adapter.
	Adapter *adapter.Adapter
	// Weight is the user weight m_i.
	Weight float64
	// Seqs are the calibration token sequences (data-aware methods only).
	Seqs [][]int
}

// SolveSettings are the data-aware solve's parameters.
type SolveSettings = shard.Settings

// SiteRecord is one site's outcome in one solve (defined with the report in internal/output).
type SiteRecord = output.SiteRecord

// SolveRecord is one solve, one jacobi step or the whole sweep (defined in internal/output).
type SolveRecord = output.SolveRecord

// LayerRecord is one layer's refinement in a sweep (defined in internal/output).
type LayerRecord = output.LayerRecord

// Site is one merged module with its current update (nil before the first solve).
type Site struct {
	// Name is the module name.
	Name string
	// Layer and Point locate the module's input.
	Layer int
	Point model.Point
	// B and A are the current merged update (scale 1).
	B, A *mat.Dense
}

// Merger runs a data-aware merge in one process as a chain of layer shards: the same per-shard
// units a cluster's workers run, with the streams handed from one to the next in memory.
type Merger struct {
	base     *model.Model
	tasks    []*Task
	set      SolveSettings
	progress *progress.Reporter
	units    []*shard.Unit
	batches  []shard.Batch
	current  shard.Updates
	levels   int

	// AfterSolve, if set, is called after each jacobi solve k has installed its updates.
	AfterSolve func(k int)
	// Transfer, if set, carries every stream from one shard to the next (a test sends them
	// through their wire bytes).
	Transfer func(shard.Streams) (shard.Streams, error)
}

// NewMerger prepares a single-shard merge over the whole base model. Adapters must already be
// validated against base.
func NewMerger(base *model.Model, tasks []*Task, set SolveSettings, rep *progress.Reporter) (*Merger, error) {
	return NewShardedMerger(base, tasks, set, rep, []int{0, base.Config.Layers})
}

// NewShardedMerger prepares a merge cut into shards at the given layer boundaries
// (cuts[0] = 0 < cuts[1] < ... < cuts[S] = layers).
func NewShardedMerger(base *model.Model, tasks []*Task, set SolveSettings, rep *progress.Reporter, cuts []int) (*Merger, error) {
	if len(cuts) < 2 || cuts[0] != 0 || cuts[len(cuts)-1] != base.Config.Layers {
		return nil, fmt.Errorf("%w: shard cuts %v do not cover layers [0, %d)", ErrInput, cuts, base.Config.Layers)
	}
	if set.BatchSize <= 0 {
		set.BatchSize = 16
	}
	if rep == nil {
		rep = progress.Discard()
	}
	mg := &Merger{base: base, tasks: tasks, set: set, progress: rep, current: shard.Updates{}}
	st := make([]shard.Task, len(tasks))
	seqs := make([][][]int, len(tasks))
	for i, t := range tasks {
		st[i] = shard.Task{Name: t.Name, Adapter: t.Adapter, Weight: t.Weight}
		seqs[i] = t.Seqs
	}
	mg.batches = shard.MakeBatches(seqs, set.BatchSize)
	for i := 1; i < len(cuts); i++ {
		if cuts[i] <= cuts[i-1] {
			return nil, fmt.Errorf("%w: shard cuts %v are not increasing", ErrInput, cuts)
		}
		u, err := shard.New(base, cuts[i-1], cuts[i], st, set)
		if err != nil {
			return nil, err
		}
		mg.units = append(mg.units, u)
		mg.levels += u.Levels()
	}
	return mg, nil
}

// Levels returns the number of dependency levels: jacobi needs that many solves to reach the
// sweep's answer.
func (mg *Merger) Levels() int { return mg.levels }

// refinedLayers counts the layers that carry sites (the layers a refining sweep refines).
func (mg *Merger) refinedLayers() int {
	seen := map[int]bool{}
	for _, u := range mg.units {
		for _, s := range u.Sites() {
			seen[s.Layer] = true
		}
	}
	return len(seen)
}

// Sites returns the sites in dependency order with their current updates.
func (mg *Merger) Sites() []*Site {
	var out []*Site
	for _, u := range mg.units {
		for _, s := range u.Sites() {
			up := mg.current[s.Name]
			out = append(out, &Site{Name: s.Name, Layer: s.Layer, Point: s.Point, B: up.B, A: up.A})
		}
	}
	return out
}

// hand passes streams from one shard to the next.
func (mg *Merger) hand(s shard.Streams) (shard.Streams, error) {
	if mg.Transfer == nil || s == nil {
		return s, nil
	}
	return mg.Transfer(s)
}

// RunJacobi runs the paper's schedule: solve 1 with X~ = X, then each solve k+1 with the features
// of the model W0 + dW*(k) at every site. It stops after Iterations solves, or earlier when every
// site's relative change is below Tolerance.
func (mg *Merger) RunJacobi(ctx context.Context) ([]SolveRecord, error) {
	iters := mg.set.Iterations
	if mg.set.Method == shard.MethodRegMean {
		iters = 1
	}
	var records []SolveRecord
	tIn := make([]shard.Streams, len(mg.units)) // task streams entering each shard (from solve 1)
	for k := 1; k <= iters; k++ {
		rec := SolveRecord{Solve: k, Sites: map[string]SiteRecord{}}
		ph := mg.progress.Phase(fmt.Sprintf("solve %d/%d", k, iters), mg.levels)
		done := 0
		next := shard.Updates{}
		var m shard.Streams
		for si, u := range mg.units {
			in := shard.StepInput{Batches: mg.batches, T: tIn[si], M: m, OnLevel: func() { done++; ph.Set(done) }}
			if k > 1 {
				in.Prev = u.Select(mg.current)
			}
			out, err := u.Jacobi(ctx, k, in)
			if err != nil {
				return nil, err
			}
			if k == 1 && si+1 < len(mg.units) {
				if tIn[si+1], err = mg.hand(out.T); err != nil {
					return nil, err
				}
			} else if k > 1 {
				if m, err = mg.hand(out.M); err != nil {
					return nil, err
				}
			}
			addStep(&rec, out, next)
		}
		ph.Done()
		mg.current = next
		if mg.AfterSolve != nil {
			mg.AfterSolve(k)
		}
		records = append(records, rec)
		mg.progress.Event("solve", map[string]any{"solve": k, "max_rel_change": rec.MaxRelChange})
		if k > 1 && mg.set.Tolerance > 0 && rec.MaxRelChange != nil && *rec.MaxRelChange < mg.set.Tolerance {
			break
		}
	}
	return records, nil
}

// addStep folds one shard's step output into the solve's record and updates.
func addStep(rec *SolveRecord, out shard.StepOutput, next shard.Updates) {
	for n, up := range out.Updates {
		next[n] = up
	}
	for n, r := range out.Records {
		rec.Sites[n] = r
		if r.RelChange != nil {
			mx := *r.RelChange
			if rec.MaxRelChange != nil {
				mx = math.Max(mx, *rec.MaxRelChange)
			}
			rec.MaxRelChange = &mx
		}
	}
	rec.CaptureSeconds += out.CaptureSeconds
	rec.SolveSeconds += out.SolveSeconds
	rec.RefineSeconds += out.RefineSeconds
	rec.Layers = append(rec.Layers, out.Layers...)
}

// RunSweep solves the sites in dependency order in one pass, shard after shard. With refinement,
// the phase counts every level and every Adam step, and each refined layer is a "refine" event.
func (mg *Merger) RunSweep(ctx context.Context) ([]SolveRecord, error) {
	rec := SolveRecord{Solve: 1, Sites: map[string]SiteRecord{}}
	name, total := "sweep", mg.levels
	if steps := mg.set.RefineSteps; steps > 0 {
		name, total = "sweep + refine", mg.levels+steps*mg.refinedLayers()
	}
	ph := mg.progress.Phase(name, total)
	done := 0
	next := shard.Updates{}
	var t, m shard.Streams
	tick := func() { done++; ph.Set(done) }
	refined := func(r LayerRecord) {
		mg.progress.Event("refine", map[string]any{"layer": r.Layer, "steps": r.Steps, "loss_before": r.LossBefore,
			"loss_after": r.LossAfter, "seconds": r.Seconds})
	}
	for _, u := range mg.units {
		out, err := u.Sweep(ctx, shard.StepInput{Batches: mg.batches, T: t, M: m, OnLevel: tick, OnRefineStep: tick, OnRefined: refined})
		if err != nil {
			return nil, err
		}
		if t, err = mg.hand(out.T); err != nil {
			return nil, err
		}
		if m, err = mg.hand(out.M); err != nil {
			return nil, err
		}
		addStep(&rec, out, next)
	}
	ph.Done()
	mg.current = next
	return []SolveRecord{rec}, nil
}

// Run runs the configured method and schedule.
func (mg *Merger) Run() ([]SolveRecord, error) {
	return mg.RunContext(context.Background())
}

// RunContext is Run with a context that stops the merge between layers.
func (mg *Merger) RunContext(ctx context.Context) ([]SolveRecord, error) {
	if mg.set.Method == shard.MethodIterIS && mg.set.Schedule == Sweep {
		return mg.RunSweep(ctx)
	}
	return mg.RunJacobi(ctx)
}

// Result returns the merged update of every site (scale 1), in module-name order.
func (mg *Merger) Result() []*adapter.Module { return modulesOf(mg.current) }

// modulesOf returns the updates as adapter modules of scale 1, in module-name order.
func modulesOf(up shard.Updates) []*adapter.Module { return shard.Modules(up) }

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}
