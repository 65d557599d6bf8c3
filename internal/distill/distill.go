// Package distill refines the merged LoRA factors of one decoder layer by layer-wise
// distillation (reference-rc README, "Layer-wise distillation"): a few full-batch Adam steps on
// the layer's factors (B, A) so that the merged layer, applied to the merged model's residual
// stream entering it, reproduces each task model's output of the layer.
//
// For layer l, with H~_t the merged residual entering l on task t's calibration sequences, h_t
// the task model's output of layer l on the same positions (both fixed), and f_l the layer with
// weights W0 + B A at its sites, the loss is
//
//	L = sum_t (1/M_t) sum_p ||f_l(H~_t)_p - h_{t,p}||^2 / max(||h_{t,p}||^2, 1e-12),
//
// a mean over each task's M_t positions, summed over tasks. The base weights, biases and norms
// stay frozen. The layer's forward and backward passes run in float32 in the model engine
// (model.ForwardLayer, LayerTape.Backward); the loss, the gradients' sum over tasks, the Adam
// moments and the parameters are float64.
package distill

import (
	"context"
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/model"
)

// Sentinel errors, wrapped with the task, site or option they concern.
var (
	// ErrOption reports an invalid option value.
	ErrOption = errors.New("distill: invalid option")
	// ErrShape reports tasks, targets or factors whose sizes do not fit the model.
	ErrShape = errors.New("distill: shape mismatch")
)

// Options configures Refine. Zero values of Beta1, Beta2 and Eps take PyTorch's Adam defaults.
type Options struct {
	// Steps is the number of full-batch Adam steps (0: only evaluate the loss).
	Steps int
	// LR is Adam's learning rate (the reference uses 1e-3); it must be > 0 when Steps > 0.
	LR float64
	// Beta1 and Beta2 are the moment decay rates (default 0.9 and 0.999).
	Beta1, Beta2 float64
	// Eps is added to the bias-corrected sqrt(v) (default 1e-8).
	Eps float64
	// OnStep, if set, is called after each Adam step k = 1..Steps with L before that step
	// (Loss[k-1]); it lets a caller show progress.
	OnStep func(k int, loss float64)
}

// withDefaults fills the zero Adam constants.
func (o Options) withDefaults() Options {
	if o.Beta1 == 0 {
		o.Beta1 = 0.9
	}
	if o.Beta2 == 0 {
		o.Beta2 = 0.999
	}
	if o.Eps == 0 {
		o.Eps = 1e-8
	}
	return o
}

// Validate reports an option outside its range.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case o.Steps < 0:
		return fmt.Errorf("%w: steps = %d (want >= 0)", ErrOption, o.Steps)
	case o.Steps > 0 && !(o.LR > 0 && !math.IsInf(o.LR, 0)):
		return fmt.Errorf("%w: lr = %v (want a finite value > 0)", ErrOption, o.LR)
	case !(o.Beta1 > 0 && o.Beta1 < 1) || !(o.Beta2 > 0 && o.Beta2 < 1):
		return fmt.Errorf("%w: betas = (%v, %v) (want each in (0, 1))", ErrOption, o.Beta1, o.Beta2)
	case !(o.Eps > 0 && !math.IsInf(o.Eps, 0)):
		return fmt.Errorf("%w: eps = %v (want a finite value > 0)", ErrOption, o.Eps)
	}
	return nil
}

// Task is one task's data for the layer being refined.
type Task struct {
	// Input is the merged model's residual stream entering the layer on the task's calibration
	// sequences (H~_t^l; layer 0: the embeddings): whole sequences, no key/value cache.
	Input *model.State
	// Target is the task model's output of the layer on the same rows (h_t^{l+1}), Input.Rows x
	// hidden.
	Target []float32
	// Positions is M_t, the number of positions the task's mean runs over; 0 means Input.Rows.
	// A task whose sequences come in several batches is passed as one Task per batch, each with
	// the task's total M_t (at least its own rows), so that the batches' terms add up to the
	// task's mean.
	Positions int
}

// Factors are the LoRA factors of one site, of scale 1: the site's update is B A, with B out x r
// and A r x in.
type Factors struct {
	B, A *mat.Dense
}

// Result is the outcome of Refine.
type Result struct {
	// Factors are the refined factors, keyed like the start factors.
	Factors map[string]Factors
	// Loss[k] is L after k steps, k = 0..Steps: Loss[0] at the start factors, Loss[Steps] at the
	// returned ones.
	Loss []float64
}

// Refine runs opt.Steps full-batch Adam steps on the factors of layer l's sites named in start
// (module names such as "model.layers.3.mlp.down_proj"; sites not named keep whatever base holds).
// base supplies W0 and the norms of layer l; LoRAs that base already carries at layer l stay
// fixed. It stops with ctx's error between steps and between tasks. The start factors are not
// modified.
func Refine(ctx context.Context, base *model.Model, l int, tasks []Task, start map[string]Factors, opt Options) (Result, error) {
	if err := opt.Validate(); err != nil {
		return Result{}, err
	}
	opt = opt.withDefaults()
	p, err := newProblem(base, l, tasks, start)
	if err != nil {
		return Result{}, err
	}
	theta := p.flatten(start)
	adam := newAdam(len(theta), opt)
	res := Result{Loss: make([]float64, 0, opt.Steps+1)}
	grad := make([]float64, len(theta))
	for k := 1; k <= opt.Steps; k++ {
		loss, err := p.lossGrad(ctx, theta, grad)
		if err != nil {
			return Result{}, fmt.Errorf("distill: layer %d, step %d: %w", l, k, err)
		}
		res.Loss = append(res.Loss, loss)
		adam.step(theta, grad)
		if opt.OnStep != nil {
			opt.OnStep(k, loss)
		}
	}
	loss, err := p.lossGrad(ctx, theta, nil)
	if err != nil {
		return Result{}, fmt.Errorf("distill: layer %d, after step %d: %w", l, opt.Steps, err)
	}
	res.Loss = append(res.Loss, loss)
	res.Factors = p.unflatten(theta)
	return res, nil
}

// Gradient returns L and its gradient with respect to the factors of the named sites of layer l
// (keyed like f), at f.
func Gradient(ctx context.Context, base *model.Model, l int, tasks []Task, f map[string]Factors) (float64, map[string]Factors, error) {
	p, err := newProblem(base, l, tasks, f)
	if err != nil {
		return 0, nil, err
	}
	theta := p.flatten(f)
	grad := make([]float64, len(theta))
	loss, err := p.lossGrad(ctx, theta, grad)
	if err != nil {
		return 0, nil, fmt.Errorf("distill: layer %d: %w", l, err)
	}
	return loss, p.unflatten(grad), nil
}

// adam is PyTorch's Adam (no weight decay, no amsgrad) on one flat parameter vector.
type adam struct {
	opt  Options
	m, v []float64
	k    int
}

func newAdam(n int, opt Options) *adam {
	return &adam{opt: opt, m: make([]float64, n), v: make([]float64, n)}
}

// step applies one update to theta given the gradient g, in the order of torch.optim.Adam's
// single-tensor implementation: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// theta -= (lr / (1 - b1^k)) m / (sqrt(v) / sqrt(1 - b2^k) + eps).
func (a *adam) step(theta, g []float64) {
	a.k++
	b1, b2 := a.opt.Beta1, a.opt.Beta2
	stepSize := a.opt.LR / (1 - math.Pow(b1, float64(a.k)))
	bc2 := math.Sqrt(1 - math.Pow(b2, float64(a.k)))
	for i, gi := range g {
		a.m[i] = a.m[i]*b1 + (1-b1)*gi
		a.v[i] = a.v[i]*b2 + (1-b2)*gi*gi
		theta[i] -= stepSize * a.m[i] / (math.Sqrt(a.v[i])/bc2 + a.opt.Eps)
	}
}
