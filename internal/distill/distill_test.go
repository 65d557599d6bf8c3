package distill

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/model"
)

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		opt  Options
		ok   bool
	}{
		{"reference", Options{Steps: 30, LR: 1e-3}, true},
		{"loss only", Options{}, true},
		{"negative steps", Options{Steps: -1, LR: 1e-3}, false},
		{"no lr", Options{Steps: 1}, false},
		{"infinite lr", Options{Steps: 1, LR: math.Inf(1)}, false},
		{"beta1", Options{Steps: 1, LR: 1e-3, Beta1: 1}, false},
		{"beta2", Options{Steps: 1, LR: 1e-3, Beta2: -0.5}, false},
		{"eps", Options{Steps: 1, LR: 1e-3, Eps: -1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opt.Validate()
			if tc.ok && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrOption) {
				t.Fatalf("got %v, want ErrOption", err)
			}
		})
	}
}

// TestTaskLoss checks the per-position normalised error and its gradient on a hand example:
// rows (3, 4) -> target (0, 4): error 9 / 16; rows (1, 0) -> target (0, 0): error 1 / 1e-12.
func TestTaskLoss(t *testing.T) {
	out := []float32{3, 4, 1, 0}
	h := []float32{0, 4, 0, 0}
	loss, d := taskLossOver(out, h, 2, 2, true)
	want := (9.0/16 + 1/1e-12) / 2
	if math.Abs(loss-want) > 1e-15*want {
		t.Fatalf("loss %v, want %v", loss, want)
	}
	wantD := []float32{float32(2 * 3 / (2 * 16.0)), 0, float32(2 * 1 / (2 * 1e-12)), 0}
	for i := range d {
		if d[i] != wantD[i] {
			t.Fatalf("dOut = %v, want %v", d, wantD)
		}
	}
	if _, d := taskLossOver(out, h, 2, 2, false); d != nil {
		t.Fatal("no gradient was asked for")
	}
}

// TestAdamFirstSteps: after one step from m = v = 0 every parameter moves by
// lr g / (|g| + eps) (so almost exactly lr against the sign of g); the second step follows the
// bias-corrected formula, here checked against values written out by hand.
func TestAdamFirstSteps(t *testing.T) {
	a := newAdam(3, Options{LR: 0.1}.withDefaults())
	theta := []float64{1, 1, 1}
	g := []float64{2, -1e-9, 0}
	a.step(theta, g)
	want := []float64{1 - 0.1*2/(2+1e-8), 1 + 0.1*1e-9/(1e-9+1e-8), 1}
	for i := range theta {
		if math.Abs(theta[i]-want[i]) > 1e-15 {
			t.Fatalf("after step 1: theta[%d] = %.17g, want %.17g", i, theta[i], want[i])
		}
	}
	g2 := []float64{-1, 0, 0}
	a.step(theta, g2)
	m := 0.9*(0.1*2) + 0.1*(-1)
	v := 0.999*(0.001*4) + 0.001*1
	w0 := want[0] - (0.1/(1-0.81))*m/(math.Sqrt(v)/math.Sqrt(1-0.999*0.999)+1e-8)
	if math.Abs(theta[0]-w0) > 1e-15 {
		t.Fatalf("after step 2: theta[0] = %.17g, want %.17g", theta[0], w0)
	}
}

// smallProblem is layer 1 of the tiny-skills base model with random factors at five of its seven
// sites (v_proj and up_proj keep the base weights) and two tasks of different sizes whose inputs
// are embeddings plus noise and whose targets are random perturbations of the base layer's output.
func smallProblem(t *testing.T) (*model.Model, []Task, map[string]Factors) {
	t.Helper()
	base, err := model.Load(filepath.Join("../../testdata/tiny-skills", "model"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var tasks []Task
	for _, lens := range [][]int{{7, 4}, {5, 9, 3}} {
		seqs := make([][]int, len(lens))
		for i, n := range lens {
			for j := 0; j < n; j++ {
				seqs[i] = append(seqs[i], rng.IntN(base.Config.Vocab))
			}
		}
		st, err := base.Start(seqs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range st.H {
			st.H[i] += float32(0.3 * rng.NormFloat64())
		}
		out := st.Clone()
		base.RunLayer(1, out, nil)
		for i := range out.H {
			out.H[i] += float32(0.2 * rng.NormFloat64())
		}
		tasks = append(tasks, Task{Input: st, Target: out.H})
	}
	f := map[string]Factors{}
	for i, lin := range base.Layers[1].Linears() {
		if i == 2 || i == 5 {
			continue
		}
		b := mat.NewDense(lin.Out, 4, nil)
		a := mat.NewDense(4, lin.In, nil)
		for _, x := range [][]float64{b.RawMatrix().Data, a.RawMatrix().Data} {
			for j := range x {
				x[j] = 0.1 * rng.NormFloat64()
			}
		}
		f[lin.Name] = Factors{B: b, A: a}
	}
	return base, tasks, f
}

// TestGradientDirectional checks Gradient against central differences of the loss along random
// directions (one per trained site and one through all of them). The forward pass is float32, so
// this check is coarse (2e-3); the exact checks are model's finite-difference test of the
// backward pass and the fixture's autograd gradient.
func TestGradientDirectional(t *testing.T) {
	base, tasks, f := smallProblem(t)
	ctx := context.Background()
	_, grad, err := Gradient(ctx, base, 1, tasks, f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newProblem(base, 1, tasks, f)
	if err != nil {
		t.Fatal(err)
	}
	theta := p.flatten(f)
	g := p.flatten(grad)
	rng := rand.New(rand.NewPCG(3, 4))
	type dir struct {
		name string
		span [2]int
	}
	dirs := []dir{{"all sites", [2]int{0, p.size}}}
	for _, s := range p.sites {
		dirs = append(dirs, dir{s.name, [2]int{s.offB, s.offA + s.r*s.in}})
	}
	for _, d := range dirs {
		name, span := d.name, d.span
		v := make([]float64, p.size)
		var dot float64
		for i := span[0]; i < span[1]; i++ {
			v[i] = rng.NormFloat64()
			dot += v[i] * g[i]
		}
		// About 1e-4 relative to the factors: small enough for the truncation error, large
		// enough for float32 rounding (measured errors 3e-5 to 3e-4).
		const h = 3e-4
		at := func(sign float64) float64 {
			x := append([]float64(nil), theta...)
			for i := range x {
				x[i] += sign * h * v[i]
			}
			l, err := p.lossGrad(ctx, x, nil)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		fd := (at(1) - at(-1)) / (2 * h)
		e := math.Abs(fd-dot) / math.Abs(dot)
		t.Logf("%s: <grad, v> = %.8g, central difference %.8g (rel %.2e)", name, dot, fd, e)
		if !(e <= 2e-3) {
			t.Errorf("%s: directional derivative %.8g, central difference %.8g (rel %.3g)", name, dot, fd, e)
		}
	}
}

// TestRefineLowersLossAndKeepsOtherSites: a few steps lower the loss, Steps = 0 only evaluates it,
// and sites without start factors are not trained.
func TestRefineLowersLossAndKeepsOtherSites(t *testing.T) {
	base, tasks, f := smallProblem(t)
	ctx := context.Background()
	zero, err := Refine(ctx, base, 1, tasks, f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(zero.Loss) != 1 {
		t.Fatalf("Steps 0: %d losses, want 1", len(zero.Loss))
	}
	for name, fs := range f {
		if !mat.Equal(zero.Factors[name].B, fs.B) || !mat.Equal(zero.Factors[name].A, fs.A) {
			t.Fatalf("Steps 0 changed %s", name)
		}
	}
	res, err := Refine(ctx, base, 1, tasks, f, Options{Steps: 5, LR: 1e-2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Factors) != len(f) {
		t.Fatalf("%d refined sites, want %d", len(res.Factors), len(f))
	}
	if res.Loss[0] != zero.Loss[0] || !(res.Loss[5] < res.Loss[0]) {
		t.Fatalf("losses %v: want the start loss %v and a lower final loss", res.Loss, zero.Loss[0])
	}
}

func TestRefineErrors(t *testing.T) {
	base, tasks, f := smallProblem(t)
	name := base.Layers[1].Q.Name
	wrong := map[string]Factors{name: {B: mat.NewDense(3, 2, nil), A: mat.NewDense(2, 128, nil)}}
	short := []Task{{Input: tasks[0].Input, Target: tasks[0].Target[:10]}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name  string
		ctx   context.Context
		l     int
		tasks []Task
		f     map[string]Factors
		want  error
	}{
		{"layer", context.Background(), 9, tasks, f, ErrShape},
		{"no tasks", context.Background(), 1, nil, f, ErrShape},
		{"target length", context.Background(), 1, short, f, ErrShape},
		{"positions below the rows", context.Background(), 1, []Task{{Input: tasks[0].Input, Target: tasks[0].Target, Positions: 3}}, f, ErrShape},
		{"factor shape", context.Background(), 1, tasks, wrong, ErrShape},
		{"site of another layer", context.Background(), 1, tasks, map[string]Factors{base.Layers[0].Q.Name: f[name]}, ErrShape},
		{"canceled", ctx, 1, tasks, f, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Refine(tc.ctx, base, tc.l, tc.tasks, tc.f, Options{Steps: 1, LR: 1e-3}); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// splitTask cuts a task's batch after its first k sequences into two batches that each carry the
// task's total number of positions.
func splitTask(t *testing.T, base *model.Model, tk Task, k int) []Task {
	t.Helper()
	w := tk.Input.Export()
	hidden := base.Config.Hidden
	cut := 0
	for _, n := range w.Lens[:k] {
		cut += n
	}
	var out []Task
	for _, part := range []struct {
		lens, starts []int
		lo, hi       int
	}{
		{w.Lens[:k], w.Starts[:k], 0, cut}, {w.Lens[k:], w.Starts[k:], cut, tk.Input.Rows},
	} {
		st, err := base.Resume(model.Wire{Width: hidden, Lens: part.lens, Starts: part.starts,
			Data: append([]float32(nil), w.Data[part.lo*hidden:part.hi*hidden]...)}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Task{Input: st, Target: tk.Target[part.lo*hidden : part.hi*hidden], Positions: tk.Input.Rows})
	}
	return out
}

// TestBatchesAddUpToTask: a task passed as two batches, each with the task's number of positions,
// has the loss of the task passed whole (the rows' terms are float64 sums in another order:
// 1e-12) and its gradient up to float32 rounding (each batch's gradient is a float32 product
// over its rows; measured 5e-8 to 1e-7: 1e-6), and OnStep sees every step's loss.
func TestBatchesAddUpToTask(t *testing.T) {
	base, tasks, f := smallProblem(t)
	ctx := context.Background()
	split := append([]Task{tasks[0]}, splitTask(t, base, tasks[1], 2)...)
	l1, g1, err := Gradient(ctx, base, 1, tasks, f)
	if err != nil {
		t.Fatal(err)
	}
	l2, g2, err := Gradient(ctx, base, 1, split, f)
	if err != nil {
		t.Fatal(err)
	}
	if e := math.Abs(l1-l2) / l1; e > 1e-12 {
		t.Errorf("loss %.17g whole, %.17g in batches (rel %.2g)", l1, l2, e)
	}
	for name := range f {
		if e := relDiff(g2[name].B, g1[name].B) + relDiff(g2[name].A, g1[name].A); e > 1e-6 {
			t.Errorf("%s: gradients differ by %.3g relative", name, e)
		}
	}
	var seen []float64
	res, err := Refine(ctx, base, 1, split, f, Options{Steps: 3, LR: 1e-2, OnStep: func(k int, loss float64) {
		if k != len(seen)+1 {
			t.Errorf("OnStep(%d) after %d steps", k, len(seen))
		}
		seen = append(seen, loss)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0] != res.Loss[0] || seen[2] != res.Loss[2] {
		t.Errorf("OnStep saw %v, the losses are %v", seen, res.Loss)
	}
}

func relDiff(got, want *mat.Dense) float64 {
	var d mat.Dense
	d.Sub(got, want)
	return mat.Norm(&d, 2) / mat.Norm(want, 2)
}
