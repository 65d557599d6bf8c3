package shard

import (
	"context"
	"fmt"
	"time"

	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/model"
)

// Batch is one batch of one task's calibration sequences. Every shard of a merge uses the same
// batches in the same order.
type Batch struct {
	// Task indexes the merge's tasks.
	Task int
	// Seqs are the token sequences; the first shard embeds them, the others check the incoming
	// streams against their lengths.
	Seqs [][]int
}

// MakeBatches cuts each task's sequences into batches of at most size sequences, task by task.
func MakeBatches(seqs [][][]int, size int) []Batch {
	if size <= 0 {
		size = 16
	}
	var out []Batch
	for t, ss := range seqs {
		for lo := 0; lo < len(ss); lo += size {
			out = append(out, Batch{Task: t, Seqs: ss[lo:min(lo+size, len(ss))]})
		}
	}
	return out
}

// Streams holds one residual stream per batch, in batch order.
type Streams []model.Wire

// StepInput is what one step of a schedule receives at the unit's first layer.
type StepInput struct {
	// Batches lists every calibration batch.
	Batches []Batch
	// T and M are the task and merged streams entering the unit (ignored by the first shard,
	// which embeds the batches' tokens); M is not used by the first jacobi solve.
	T, M Streams
	// Prev are the updates of the previous jacobi solve for the unit's sites (solve k > 1).
	Prev Updates
	// OnLevel, if set, is called after each dependency level has been solved.
	OnLevel func()
	// OnRefineStep, if set, is called after each Adam step of a layer's refinement (sweep with
	// Settings.RefineSteps > 0).
	OnRefineStep func()
	// OnRefined, if set, is called with each layer's record once the layer is refined.
	OnRefined func(LayerRecord)
}

// StepOutput is what a step produces.
type StepOutput struct {
	// T and M are the streams leaving the unit's last layer (T only where the next shard needs
	// it: the first jacobi solve and the sweep; M where the step has a merged stream).
	T, M Streams
	// Updates are the solved updates of every site of the unit.
	Updates Updates
	// Records describe each site's solve.
	Records map[string]SiteRecord
	// Layers record each layer's refinement, in layer order (sweep with refinement only).
	Layers []LayerRecord
	// CaptureSeconds and SolveSeconds time the step's capture (forward passes, Grams, cross
	// terms) and its closed-form solves; RefineSeconds its layer-wise distillation.
	CaptureSeconds, SolveSeconds, RefineSeconds float64
}

// stream is one batch on its way through the unit.
type stream struct {
	task int
	T, M *model.State
}

// enter builds the unit's streams of a step: embedded on the first shard, resumed from the
// incoming wire forms elsewhere. withM also builds the merged stream.
func (u *Unit) enter(in StepInput, withM bool) ([]*stream, error) {
	out := make([]*stream, len(in.Batches))
	for i, b := range in.Batches {
		if b.Task < 0 || b.Task >= len(u.tasks) {
			return nil, fmt.Errorf("%w: batch %d names task %d of %d", ErrInput, i, b.Task, len(u.tasks))
		}
		s := &stream{task: b.Task}
		var err error
		if s.T, err = u.entry(in.T, i, b); err != nil {
			return nil, fmt.Errorf("task stream: %w", err)
		}
		if withM {
			if s.M, err = u.entry(in.M, i, b); err != nil {
				return nil, fmt.Errorf("merged stream: %w", err)
			}
		}
		out[i] = s
	}
	return out, nil
}

// entry returns batch i's state entering the unit.
func (u *Unit) entry(ws Streams, i int, b Batch) (*model.State, error) {
	if u.lo == 0 {
		return u.base.Start(b.Seqs)
	}
	if i >= len(ws) {
		return nil, fmt.Errorf("%w: %d streams for %d batches", ErrInput, len(ws), i+1)
	}
	w := ws[i]
	if len(w.Lens) != len(b.Seqs) {
		return nil, fmt.Errorf("%w: batch %d: stream has %d sequences, the batch %d", ErrInput, i, len(w.Lens), len(b.Seqs))
	}
	for j, q := range b.Seqs {
		if w.Lens[j] != len(q) || w.Starts[j] != 0 {
			return nil, fmt.Errorf("%w: batch %d, sequence %d: stream has %d rows from position %d, the sequence %d tokens from 0", ErrInput, i, j, w.Lens[j], w.Starts[j], len(q))
		}
	}
	// Resume uses the wire's data in place; copy it so a step never changes its inputs.
	w.Data = append([]float32(nil), w.Data...)
	return u.base.Resume(w, nil, nil)
}

func exportT(sts []*stream) Streams {
	out := make(Streams, len(sts))
	for i, s := range sts {
		out[i] = s.T.Export()
	}
	return out
}

func exportM(sts []*stream) Streams {
	out := make(Streams, len(sts))
	for i, s := range sts {
		out[i] = s.M.Export()
	}
	return out
}

// pointsAt returns which points of layer l carry sites.
func (u *Unit) pointsAt(l int) [model.NumPoints]bool {
	var need [model.NumPoints]bool
	for _, lv := range u.levels {
		if lv.layer == l {
			need[lv.point] = true
		}
	}
	return need
}

func (u *Unit) newAccs(l int, p model.Point, cross bool) []*gram.Accumulator {
	width := u.byLevel[level{l, p}][0].Factors[0].A.RawMatrix().Cols
	accs := make([]*gram.Accumulator, len(u.tasks))
	for i := range accs {
		accs[i] = gram.NewAccumulator(width, cross)
	}
	return accs
}

func gramsOf(accs []*gram.Accumulator) []gram.Grams {
	g := make([]gram.Grams, len(accs))
	for i, a := range accs {
		g[i] = a.Grams()
	}
	return g
}

// captureLayer advances every stream through layer l (the task model, and the merged model when
// cross is set) and returns the accumulated Grams of the points that carry sites.
func (u *Unit) captureLayer(l int, sts []*stream, cross bool) (map[model.Point][]gram.Grams, error) {
	need := u.pointsAt(l)
	accs := map[model.Point][]*gram.Accumulator{}
	for p := model.Point(0); p < model.NumPoints; p++ {
		if need[p] {
			accs[p] = u.newAccs(l, p, cross)
		}
	}
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, s := range sts {
		var xs [model.NumPoints][]float32
		u.taskMods[s.task].RunLayer(l, s.T, func(_ int, p model.Point, x []float32, rows int) {
			if !need[p] {
				return
			}
			if cross {
				xs[p] = append([]float32(nil), x...)
			} else {
				keep(accs[p][s.task].Add(x, nil, rows))
			}
		})
		if cross {
			u.merged.RunLayer(l, s.M, func(_ int, p model.Point, x []float32, rows int) {
				if need[p] {
					keep(accs[p][s.task].Add(xs[p], x, rows))
				}
			})
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	out := map[model.Point][]gram.Grams{}
	for p, as := range accs {
		out[p] = gramsOf(as)
	}
	return out, nil
}

// Jacobi runs jacobi solve k (k >= 1) over the unit's layers. Solve 1 uses X~ = X (no merged
// stream); solve k > 1 runs the merged stream under the model of solve k-1, whose updates for the
// unit's sites are in.Prev, and solves every site from the features of that fixed model.
func (u *Unit) Jacobi(ctx context.Context, k int, in StepInput) (StepOutput, error) {
	if k < 1 {
		return StepOutput{}, fmt.Errorf("%w: jacobi solve %d", ErrInput, k)
	}
	cross := k > 1
	if err := u.reset(); err != nil {
		return StepOutput{}, err
	}
	if cross {
		for _, s := range u.sites {
			if _, ok := in.Prev[s.Name]; !ok {
				return StepOutput{}, fmt.Errorf("%w: jacobi solve %d: no update of solve %d for site %s", ErrInput, k, k-1, s.Name)
			}
		}
		if err := u.install(in.Prev); err != nil {
			return StepOutput{}, err
		}
	}
	sts, err := u.enter(in, cross)
	if err != nil {
		return StepOutput{}, err
	}
	out := StepOutput{Updates: Updates{}, Records: map[string]SiteRecord{}}
	for l := u.lo; l < u.hi; l++ {
		if err := ctx.Err(); err != nil {
			return StepOutput{}, err
		}
		t0 := time.Now()
		grams, err := u.captureLayer(l, sts, cross)
		if err != nil {
			return StepOutput{}, err
		}
		t1 := time.Now()
		out.CaptureSeconds += t1.Sub(t0).Seconds()
		if err := u.solveLayer(l, grams, in, &out); err != nil {
			return StepOutput{}, err
		}
		out.SolveSeconds += time.Since(t1).Seconds()
	}
	if cross {
		out.M = exportM(sts)
	} else {
		out.T = exportT(sts)
	}
	return out, nil
}

// solveLayer solves every site of layer l from its Grams; the updates are kept aside in out (the
// merged model of the solve stays fixed).
func (u *Unit) solveLayer(l int, grams map[model.Point][]gram.Grams, in StepInput, out *StepOutput) error {
	for _, lv := range u.levels {
		if lv.layer != l {
			continue
		}
		for _, s := range u.byLevel[lv] {
			var prev *Update
			if p, ok := in.Prev[s.Name]; ok {
				prev = &p
			}
			up, rec, err := u.solveSite(s, grams[lv.point], prev, nil)
			if err != nil {
				return err
			}
			out.Updates[s.Name] = up
			out.Records[s.Name] = rec
		}
		if in.OnLevel != nil {
			in.OnLevel()
		}
	}
	return nil
}
