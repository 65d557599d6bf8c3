package shard

import (
	"context"
	"fmt"
	"time"

	"github.com/iteris-dev/iteris/internal/distill"
)

// refineLayer runs the layer-wise distillation of layer l after its closed form (reference-rc
// README, "Layer-wise distillation"): each site's update is split into balanced factors at its
// output rank, Settings.RefineSteps full-batch Adam steps train the layer's factors so that the
// merged layer maps the merged residual stream entering it (every stream's M, not yet advanced)
// onto the task models' output of the layer, and the refined factors replace the closed form in
// the merged model and in out. Every batch of a task is one distillation term weighted by the
// task's number of positions, so the loss is each task's mean over its positions, summed over
// tasks; batches keep their order, so every cut of the model refines alike.
func (u *Unit) refineLayer(ctx context.Context, l int, sts []*stream, ts []taskSide, positions []int, in StepInput, out *StepOutput) error {
	t0 := time.Now()
	start := map[string]distill.Factors{}
	for _, s := range u.sites {
		if s.Layer != l {
			continue
		}
		up := out.Updates[s.Name]
		_, k := up.B.Dims()
		start[s.Name] = distill.Split(up.B, up.A, k)
	}
	if len(start) == 0 {
		return nil
	}
	tasks := make([]distill.Task, len(sts))
	for si, s := range sts {
		tasks[si] = distill.Task{Input: s.M, Target: ts[si].out, Positions: positions[s.task]}
	}
	opt := distill.Options{Steps: u.set.RefineSteps, LR: u.set.RefineLR}
	if in.OnRefineStep != nil {
		opt.OnStep = func(int, float64) { in.OnRefineStep() }
	}
	res, err := distill.Refine(ctx, u.base, l, tasks, start, opt)
	if err != nil {
		return fmt.Errorf("refining layer %d: %w", l, err)
	}
	refined := Updates{}
	for name, f := range res.Factors {
		up := Update{B: f.B, A: f.A, Coefs: out.Updates[name].Coefs}
		refined[name] = up
		out.Updates[name] = up
	}
	if err := u.install(refined); err != nil {
		return err
	}
	rec := LayerRecord{Layer: l, Steps: opt.Steps, LossBefore: res.Loss[0], LossAfter: res.Loss[len(res.Loss)-1], Seconds: time.Since(t0).Seconds()}
	out.Layers = append(out.Layers, rec)
	out.RefineSeconds += rec.Seconds
	if in.OnRefined != nil {
		in.OnRefined(rec)
	}
	return nil
}
