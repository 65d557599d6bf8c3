package distill

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/model"
)

// problem is the distillation loss of one layer: the base model, the tasks, and the trained sites
// with their place in the flat parameter vector (per site: B then A, row-major).
type problem struct {
	base  *model.Model
	l     int
	tasks []Task
	sites []site
	size  int // length of the parameter vector
}

// site is one trained linear module of the layer.
type site struct {
	name       string
	index      int // position in Layer.Linears()
	lora       int // index of the trained LoRA among the module's LoRAs in the variant
	out, in, r int
	offB, offA int
	b32, a32   []float32 // reusable float32 copies of the factors
}

func newProblem(base *model.Model, l int, tasks []Task, f map[string]Factors) (*problem, error) {
	if l < 0 || l >= len(base.Layers) {
		return nil, fmt.Errorf("%w: layer %d of a %d-layer model", ErrShape, l, len(base.Layers))
	}
	if len(tasks) == 0 {
		return nil, fmt.Errorf("%w: no tasks", ErrShape)
	}
	hidden := base.Config.Hidden
	for i, t := range tasks {
		if t.Input == nil {
			return nil, fmt.Errorf("%w: task %d: no input state", ErrShape, i)
		}
		if t.Input.Rows == 0 {
			return nil, fmt.Errorf("%w: task %d: the input state has no rows", ErrShape, i)
		}
		if len(t.Target) != t.Input.Rows*hidden {
			return nil, fmt.Errorf("%w: task %d: target has %d values, want rows %d x hidden %d", ErrShape, i, len(t.Target), t.Input.Rows, hidden)
		}
		if t.Positions != 0 && t.Positions < t.Input.Rows {
			return nil, fmt.Errorf("%w: task %d: %d positions for a batch of %d rows (want 0 or at least the rows)", ErrShape, i, t.Positions, t.Input.Rows)
		}
	}
	p := &problem{base: base, l: l, tasks: tasks}
	known := map[string]bool{}
	for i, lin := range base.Layers[l].Linears() {
		known[lin.Name] = true
		fs, ok := f[lin.Name]
		if !ok {
			continue
		}
		if fs.B == nil || fs.A == nil {
			return nil, fmt.Errorf("%w: %s: B or A is missing", ErrShape, lin.Name)
		}
		bo, br := fs.B.Dims()
		ar, ai := fs.A.Dims()
		if bo != lin.Out || ai != lin.In || br != ar || br == 0 {
			return nil, fmt.Errorf("%w: %s: B is %dx%d and A is %dx%d, want %dx r and r x %d (r >= 1)", ErrShape, lin.Name, bo, br, ar, ai, lin.Out, lin.In)
		}
		s := site{name: lin.Name, index: i, lora: len(lin.LoRAs), out: lin.Out, in: lin.In, r: br, offB: p.size}
		s.offA = s.offB + lin.Out*br
		p.size = s.offA + br*lin.In
		s.b32, s.a32 = make([]float32, lin.Out*br), make([]float32, br*lin.In)
		p.sites = append(p.sites, s)
	}
	for name := range f {
		if !known[name] {
			return nil, fmt.Errorf("%w: %s is not a linear module of layer %d", ErrShape, name, l)
		}
	}
	return p, nil
}

// flatten copies the factors into a new parameter vector.
func (p *problem) flatten(f map[string]Factors) []float64 {
	theta := make([]float64, p.size)
	for _, s := range p.sites {
		copyDense(theta[s.offB:s.offA], f[s.name].B)
		copyDense(theta[s.offA:s.offA+s.r*s.in], f[s.name].A)
	}
	return theta
}

// unflatten returns the factors held in theta.
func (p *problem) unflatten(theta []float64) map[string]Factors {
	out := make(map[string]Factors, len(p.sites))
	for _, s := range p.sites {
		out[s.name] = Factors{
			B: mat.NewDense(s.out, s.r, append([]float64(nil), theta[s.offB:s.offA]...)),
			A: mat.NewDense(s.r, s.in, append([]float64(nil), theta[s.offA:s.offA+s.r*s.in]...)),
		}
	}
	return out
}

func copyDense(dst []float64, m *mat.Dense) {
	r, c := m.Dims()
	for i := 0; i < r; i++ {
		copy(dst[i*c:(i+1)*c], m.RawRowView(i))
	}
}

// lossGrad returns L at theta and, when grad is not nil, writes dL/dtheta into it.
func (p *problem) lossGrad(ctx context.Context, theta, grad []float64) (float64, error) {
	ups := make(map[string][]model.LoRA, len(p.sites))
	for i := range p.sites {
		s := &p.sites[i]
		for j, v := range theta[s.offB:s.offA] {
			s.b32[j] = float32(v)
		}
		for j, v := range theta[s.offA : s.offA+s.r*s.in] {
			s.a32[j] = float32(v)
		}
		ups[s.name] = []model.LoRA{{R: s.r, A: s.a32, B: s.b32, Scale: 1}}
	}
	m, err := p.base.WithLoRA(ups, false)
	if err != nil {
		return 0, err
	}
	if grad != nil {
		clear(grad)
	}
	var loss float64
	for i, t := range p.tasks {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		tp, err := m.ForwardLayer(p.l, t.Input)
		if err != nil {
			return 0, fmt.Errorf("task %d: %w", i, err)
		}
		n := t.Positions
		if n == 0 {
			n = t.Input.Rows
		}
		lt, dOut := taskLossOver(tp.Out, t.Target, m.Config.Hidden, n, grad != nil)
		if math.IsNaN(lt) || math.IsInf(lt, 0) {
			return 0, fmt.Errorf("task %d: the loss is %v", i, lt)
		}
		loss += lt
		if grad == nil {
			continue
		}
		g, err := tp.Backward(dOut)
		if err != nil {
			return 0, fmt.Errorf("task %d: %w", i, err)
		}
		for _, s := range p.sites {
			lg := g[s.index][s.lora]
			addTo(grad[s.offB:s.offA], lg.B)
			addTo(grad[s.offA:s.offA+s.r*s.in], lg.A)
		}
	}
	return loss, nil
}

func addTo(dst []float64, src []float32) {
	for i, v := range src {
		dst[i] += float64(v)
	}
}

// taskLossOver returns (1/m) sum_p ||out_p - h_p||^2 / max(||h_p||^2, 1e-12) over the rows p of
// out and h (m is the task's number of positions, the rows when the task is one batch) and, when
// wantGrad, its gradient with respect to out: 2 (out_p - h_p) / (m max(||h_p||^2, 1e-12)).
func taskLossOver(out, h []float32, width, m int, wantGrad bool) (float64, []float32) {
	rows := len(h) / width
	var dOut []float32
	if wantGrad {
		dOut = make([]float32, len(out))
	}
	var sum float64
	for r := 0; r < rows; r++ {
		o, t := out[r*width:(r+1)*width], h[r*width:(r+1)*width]
		var e, n float64
		for j, tv := range t {
			d := float64(o[j]) - float64(tv)
			e += d * d
			n += float64(tv) * float64(tv)
		}
		n = math.Max(n, 1e-12)
		sum += e / n
		if wantGrad {
			k := 2 / (float64(m) * n)
			for j, tv := range t {
				dOut[r*width+j] = float32(k * (float64(o[j]) - float64(tv)))
			}
		}
	}
	return sum / float64(m), dOut
}
