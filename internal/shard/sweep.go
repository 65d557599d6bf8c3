package shard

import (
	"context"
	"time"

	"github.com/iteris-dev/iteris/internal/model"
)

// Sweep solves the unit's sites in dependency order in one pass: each level's X~ is taken from
// the merged model whose earlier levels (in this unit, and in the shards before it, through the
// incoming merged stream) are already merged. Each solved level is installed at once, site by
// site, without rebuilding the merged model.
func (u *Unit) Sweep(ctx context.Context, in StepInput) (StepOutput, error) {
	if err := u.reset(); err != nil {
		return StepOutput{}, err
	}
	sts, err := u.enter(in, true)
	if err != nil {
		return StepOutput{}, err
	}
	out := StepOutput{Updates: Updates{}, Records: map[string]SiteRecord{}}
	for l := u.lo; l < u.hi; l++ {
		if err := ctx.Err(); err != nil {
			return StepOutput{}, err
		}
		if err := u.sweepLayer(ctx, l, sts, in, &out); err != nil {
			return StepOutput{}, err
		}
	}
	out.T, out.M = exportT(sts), exportM(sts)
	return out, nil
}

// sweepLayer solves the levels of layer l one after another and advances both streams through it.
func (u *Unit) sweepLayer(ctx context.Context, l int, sts []*stream, in StepInput, out *StepOutput) error {
	t0 := time.Now()
	need := u.pointsAt(l)
	// Task-side features of the whole layer (they do not depend on the merge).
	xs := make([][model.NumPoints][]float32, len(sts))
	for si, s := range sts {
		u.taskMods[s.task].RunLayer(l, s.T, func(_ int, p model.Point, x []float32, _ int) {
			if need[p] {
				xs[si][p] = append([]float32(nil), x...)
			}
		})
	}
	out.CaptureSeconds += time.Since(t0).Seconds()
	for p := model.Point(0); p < model.NumPoints; p++ {
		if !need[p] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := u.sweepLevel(level{l, p}, sts, xs, out); err != nil {
			return err
		}
		if in.OnLevel != nil {
			in.OnLevel()
		}
	}
	t3 := time.Now()
	for _, s := range sts {
		u.merged.RunLayer(l, s.M, nil)
	}
	out.CaptureSeconds += time.Since(t3).Seconds()
	return nil
}

// sweepLevel captures one level's Grams under the current merged model, solves its sites and
// installs them.
func (u *Unit) sweepLevel(lv level, sts []*stream, xs [][model.NumPoints][]float32, out *StepOutput) error {
	t1 := time.Now()
	accs := u.newAccs(lv.layer, lv.point, true)
	var firstErr error
	for si, s := range sts {
		u.merged.ObserveLayer(lv.layer, s.M, func(_ int, q model.Point, x []float32, rows int) {
			if q == lv.point {
				if err := accs[s.task].Add(xs[si][lv.point], x, rows); err != nil && firstErr == nil {
					firstErr = err
				}
			}
		}, lv.point)
	}
	if firstErr != nil {
		return firstErr
	}
	g := gramsOf(accs)
	t2 := time.Now()
	out.CaptureSeconds += t2.Sub(t1).Seconds()
	solved := Updates{}
	for _, s := range u.byLevel[lv] {
		up, rec, err := u.solveSite(s, g, nil)
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
