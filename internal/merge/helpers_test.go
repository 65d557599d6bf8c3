package merge

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
)

// task is one synthetic adapter with explicit features.
type task struct {
	f     Factor
	x, xt *mat.Dense // tokens x n
}

// synth describes a synthetic site.
type synth struct {
	m, n   int
	ranks  []int
	tokens []int
	scales []float64
	wts    []float64
	shift  float64 // X~ = X + shift * noise
	seed   uint64
}

func randDense(rng *rand.Rand, r, c int, sd float64) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = sd * rng.NormFloat64()
	}
	return mat.NewDense(r, c, d)
}

// build returns W0 and the tasks of a synthetic site.
func (s synth) build(t *testing.T) (*mat.Dense, []task) {
	t.Helper()
	rng := rand.New(rand.NewPCG(s.seed, 99))
	w0 := randDense(rng, s.m, s.n, 1/math.Sqrt(float64(s.n)))
	var out []task
	for i, r := range s.ranks {
		f := Factor{
			A:      randDense(rng, r, s.n, 0.3),
			B:      randDense(rng, s.m, r, 0.3),
			Scale:  s.scales[i%len(s.scales)],
			Weight: s.wts[i%len(s.wts)],
		}
		x := randDense(rng, s.tokens[i%len(s.tokens)], s.n, 1)
		// Give every task a different input distribution.
		for c := 0; c < s.n; c++ {
			sc := 1 + 0.5*math.Sin(float64(i*s.n+c))
			for rr := 0; rr < x.RawMatrix().Rows; rr++ {
				x.Set(rr, c, x.At(rr, c)*sc)
			}
		}
		xt := mat.DenseCopyOf(x)
		noise := randDense(rng, s.tokens[i%len(s.tokens)], s.n, s.shift)
		xt.Add(xt, noise)
		out = append(out, task{f: f, x: x, xt: xt})
	}
	return w0, out
}

// grams accumulates the tasks' Grams through the gram package (cross
// terms unless plain).
func grams(t *testing.T, ts []task, plain bool) []gram.Grams {
	t.Helper()
	var gs []gram.Grams
	for _, tk := range ts {
		xt := tk.xt
		if plain {
			xt = nil
		}
		g, err := gram.FromFeatures(tk.x, xt)
		if err != nil {
			t.Fatalf("FromFeatures: %v", err)
		}
		gs = append(gs, g)
	}
	return gs
}

func factors(ts []task) []Factor {
	f := make([]Factor, len(ts))
	for i, tk := range ts {
		f[i] = tk.f
	}
	return f
}

// delta returns s B A.
func delta(f Factor) *mat.Dense {
	var d mat.Dense
	d.Mul(f.B, f.A)
	d.Scale(f.Scale, &d)
	return &d
}

func product(b, a mat.Matrix) *mat.Dense {
	var d mat.Dense
	d.Mul(b, a)
	return &d
}

func relFrob(t *testing.T, got, want mat.Matrix) float64 {
	t.Helper()
	var d mat.Dense
	d.Sub(got, want)
	return mat.Norm(&d, 2) / mat.Norm(want, 2)
}

func assertRel(t *testing.T, what string, got, want mat.Matrix, tol float64) float64 {
	t.Helper()
	e := relFrob(t, got, want)
	if !(e <= tol) {
		t.Errorf("%s: relative Frobenius error %.3g > %.3g", what, e, tol)
	}
	return e
}

// naiveCoef is c_i from explicit features.
func naiveCoef(t *testing.T, w0 *mat.Dense, tk task) float64 {
	t.Helper()
	var full, out mat.Dense
	full.Add(w0, delta(tk.f))
	out.Mul(tk.x, full.T())
	a, b := mat.Norm(&full, 2), mat.Norm(&out, 2)
	return a * a / (b * b)
}

// naiveSolve solves the normal equations of the IterIS objective densely
// from explicit features: target_i = dW_i (delta) or W0 + dW_i (full);
// returns the dense update dW and the weights w_i.
func naiveSolve(t *testing.T, w0 *mat.Dense, ts []task, obj Objective, a1, a2 float64, adaptive bool) (*mat.Dense, []float64) {
	t.Helper()
	m, n := w0.Dims()
	h := mat.NewDense(n, n, nil)
	rhs := mat.NewDense(m, n, nil)
	var w []float64
	for _, tk := range ts {
		c := 1.0
		if adaptive {
			c = naiveCoef(t, w0, tk)
		}
		wi := c * tk.f.Weight
		w = append(w, wi)
		var p, q mat.Dense
		p.Mul(tk.x.T(), tk.xt)
		q.Mul(tk.xt.T(), tk.xt)
		r1, r2 := a1*mat.Norm(&p, 2), a2*mat.Norm(&q, 2)
		for d := 0; d < n; d++ {
			p.Set(d, d, p.At(d, d)+r1)
			q.Set(d, d, q.At(d, d)+r2)
		}
		q.Scale(wi, &q)
		h.Add(h, &q)
		target := delta(tk.f)
		if obj == Full {
			target.Add(target, w0)
		}
		var tp mat.Dense
		tp.Mul(target, &p)
		tp.Scale(wi, &tp)
		rhs.Add(rhs, &tp)
	}
	// X H = RHS  <=>  H^T X^T = RHS^T.
	var xt mat.Dense
	if err := xt.Solve(h.T(), rhs.T()); err != nil {
		t.Fatalf("naive solve: %v", err)
	}
	x := mat.DenseCopyOf(xt.T())
	if obj == Full {
		x.Sub(x, w0)
	}
	return x, w
}

// bestRank returns the best rank-k approximation of d by a dense SVD.
func bestRank(t *testing.T, d *mat.Dense, k int) *mat.Dense {
	t.Helper()
	var svd mat.SVD
	if !svd.Factorize(d, mat.SVDThin) {
		t.Fatal("SVD failed")
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	r, c := d.Dims()
	out := mat.NewDense(r, c, nil)
	for i := 0; i < k && i < len(s); i++ {
		var o mat.Dense
		o.Outer(s[i], u.ColView(i), v.ColView(i))
		out.Add(out, &o)
	}
	return out
}

// bruteResidual is sum_i w_i ||X~_i S^T - X_i T_i^T||_F^2 with S = dW (delta)
// or W0 + dW (full), T_i = dW_i or W0 + dW_i.
func bruteResidual(t *testing.T, w0 *mat.Dense, ts []task, w []float64, dw *mat.Dense, obj Objective) float64 {
	t.Helper()
	sum := 0.0
	for i, tk := range ts {
		s := mat.DenseCopyOf(dw)
		tg := delta(tk.f)
		if obj == Full {
			s.Add(s, w0)
			tg.Add(tg, w0)
		}
		var a, b mat.Dense
		a.Mul(tk.xt, s.T())
		b.Mul(tk.x, tg.T())
		a.Sub(&a, &b)
		nrm := mat.Norm(&a, 2)
		sum += w[i] * nrm * nrm
	}
	return sum
}
