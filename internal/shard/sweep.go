package shard

import (
	"context"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
)

// Sweep solves the unit's sites in dependency order in one pass: each level's X~ is taken from
// the merged model whose earlier levels (in this unit, and in the shards before it, through the
// incoming merged stream) are already merged. Each solved level is installed at once, site by
// site, without rebuilding the merged model.
//
// With the residual objective, o_proj and down_proj also undo the drift of the merged residual
// stream (their cross terms come from both streams the unit carries); with refinement, each
// layer's closed form is then refined by layer-wise distillation before the merged stream
// advances through it. Both are layer-local: nothing but the two streams crosses shards.
func (u *Unit) Sweep(ctx context.Context, in StepInput) (StepOutput, error) {
	if err := u.reset(); err != nil {
		return StepOutput{}, err
	}
	sts, err := u.enter(in, true)
	if err != nil {
		return StepOutput{}, err
	}
	out := StepOutput{Updates: Updates{}, Records: map[string]SiteRecord{}}
	positions := taskPositions(in.Batches, len(u.tasks))
	for l := u.lo; l < u.hi; l++ {
		if err := ctx.Err(); err != nil {
			return StepOutput{}, err
		}
		if err := u.sweepLayer(ctx, l, sts, in, positions, &out); err != nil {
			return StepOutput{}, err
		}
	}
	out.T, out.M = exportT(sts), exportM(sts)
	return out, nil
}

// taskSide is what the sweep keeps of one stream's task model in the layer being solved: the
// inputs of the points that carry sites and, with the residual objective or refinement, the
// task's residual stream entering the layer (h^l), after its attention block (h^{l,mid}) and
// leaving it (h^{l+1}).
type taskSide struct {
	xs          [model.NumPoints][]float32
	h, mid, out []float32
}

// taskPositions returns the number of calibration positions of each task.
func taskPositions(bs []Batch, tasks int) []int {
	out := make([]int, tasks)
	for _, b := range bs {
		for _, q := range b.Seqs {
			out[b.Task] += len(q)
		}
	}
	return out
}

// sweepLayer solves the levels of layer l one after another, refines the layer when asked, and
// advances both streams through it.
func (u *Unit) sweepLayer(ctx context.Context, l int, sts []*stream, in StepInput, positions []int, out *StepOutput) error {
	t0 := time.Now()
	need := u.pointsAt(l)
	// Task-side features of the whole layer (they do not depend on the merge).
	ts := make([]taskSide, len(sts))
	for si, s := range sts {
		obs := func(_ int, p model.Point, x []float32, _ int) {
			if need[p] {
				ts[si].xs[p] = append([]float32(nil), x...)
			}
		}
		if !u.set.residuals() {
			u.taskMods[s.task].RunLayer(l, s.T, obs)
			continue
		}
		ts[si].h = s.T.H
		ts[si].mid, ts[si].out = u.taskMods[s.task].ObserveResiduals(l, s.T, obs)
		s.T.H = ts[si].out
	}
	out.CaptureSeconds += time.Since(t0).Seconds()
	for p := model.Point(0); p < model.NumPoints; p++ {
		if !need[p] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := u.sweepLevel(level{l, p}, sts, ts, out); err != nil {
			return err
		}
		if in.OnLevel != nil {
			in.OnLevel()
		}
	}
	if u.set.refines() {
		if err := u.refineLayer(ctx, l, sts, ts, positions, in, out); err != nil {
			return err
		}
	}
	t3 := time.Now()
	for _, s := range sts {
		u.merged.RunLayer(l, s.M, nil)
	}
	out.CaptureSeconds += time.Since(t3).Seconds()
	return nil
}

// sweepLevel captures one level's Grams (and, with the residual objective, the drift cross terms
// of o_proj and down_proj) under the current merged model, solves its sites and installs them.
func (u *Unit) sweepLevel(lv level, sts []*stream, ts []taskSide, out *StepOutput) error {
	t1 := time.Now()
	accs := u.newAccs(lv.layer, lv.point, true)
	crosses := u.newCross(lv)
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for si, s := range sts {
		var xDown []float32
		obs := func(_ int, q model.Point, x []float32, rows int) {
			if q != lv.point {
				return
			}
			keep(accs[s.task].Add(ts[si].xs[lv.point], x, rows))
			switch {
			case crosses == nil:
			case q == model.PointO:
				// D = h^l - h~^l: the drift entering the layer, which o_proj writes after.
				keep(crosses[s.task].AddDiff(ts[si].h, s.M.H, x, rows))
			case q == model.PointDown:
				xDown = append([]float32(nil), x...)
			}
		}
		if crosses != nil && lv.point == model.PointDown {
			// D = h^{l,mid} - h~^{l,mid}, with h~^{l,mid} from the merged o_proj just solved.
			midTilde, _ := u.merged.ObserveResiduals(lv.layer, s.M, obs)
			keep(crosses[s.task].AddDiff(ts[si].mid, midTilde, xDown, s.M.Rows))
			continue
		}
		u.merged.ObserveLayer(lv.layer, s.M, obs, lv.point)
	}
	if firstErr != nil {
		return firstErr
	}
	g := gramsOf(accs)
	var cross []*mat.Dense
	for _, c := range crosses {
		cross = append(cross, c.Sum())
	}
	t2 := time.Now()
	out.CaptureSeconds += t2.Sub(t1).Seconds()
	solved := Updates{}
	for _, s := range u.byLevel[lv] {
		up, rec, err := u.solveSite(s, g, nil, cross)
		if err != nil {
			return err
		}
		solved[s.Name] = up
		out.Updates[s.Name] = up
		out.Records[s.Name] = rec
	}
	if err := u.install(solved); err != nil {
		return err
	}
	out.SolveSeconds += time.Since(t2).Seconds()
	return nil
}

// newCross returns one cross-term accumulator per task for a level whose sites write into the
// residual stream (o_proj, down_proj) under the residual objective, and nil otherwise.
func (u *Unit) newCross(lv level) []*gram.CrossAccumulator {
	if u.set.Objective != merge.Residual || (lv.point != model.PointO && lv.point != model.PointDown) {
		return nil
	}
	s := u.byLevel[lv][0]
	out, in := s.Factors[0].B.RawMatrix().Rows, s.Factors[0].A.RawMatrix().Cols
	accs := make([]*gram.CrossAccumulator, len(u.tasks))
	for i := range accs {
		accs[i] = gram.NewCrossAccumulator(out, in)
	}
	return accs
}
