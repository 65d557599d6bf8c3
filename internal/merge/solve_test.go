package merge

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
)

var baseSite = synth{
	m: 10, n: 12,
	ranks:  []int{4, 3, 5},
	tokens: []int{40, 31, 55},
	scales: []float64{2, 0.5, 1.25},
	wts:    []float64{1, 0.7, 1.6},
	shift:  0.3,
	seed:   1,
}

func TestSolveDeltaMatchesNaive(t *testing.T) {
	cases := []struct {
		name     string
		adaptive bool
		a1, a2   float64
		plain    bool // X~ = X
	}{
		{"plain", false, 0, 0, false},
		{"adaptive", true, 0, 0, false},
		{"ridge", false, 1e-4, 1e-3, false},
		{"adaptive ridge first solve", true, 1e-4, 1e-4, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w0, ts := baseSite.build(t)
			if tc.plain {
				for i := range ts {
					ts[i].xt = ts[i].x
				}
			}
			g := grams(t, ts, tc.plain)
			res, err := SolveIterIS(w0, factors(ts), g, SolveOptions{Objective: Delta, Alpha1: tc.a1, Alpha2: tc.a2, Adaptive: tc.adaptive})
			if err != nil {
				t.Fatal(err)
			}
			want, w := naiveSolve(t, w0, ts, Delta, tc.a1, tc.a2, tc.adaptive)
			e := assertRel(t, "B A vs naive dense", product(res.B, res.A), want, 1e-10)
			t.Logf("rel err %.2e, method %s, coefs %v", e, res.Method, res.Coefs)
			if res.Method != "cholesky" {
				t.Errorf("method %q, want cholesky for an SPD H", res.Method)
			}
			for i := range w {
				if math.Abs(res.Weights[i]-w[i]) > 1e-12*math.Abs(w[i]) {
					t.Errorf("w_%d = %v, want %v", i, res.Weights[i], w[i])
				}
				wantC := 1.0
				if tc.adaptive {
					wantC = naiveCoef(t, w0, ts[i])
				}
				if math.Abs(res.Coefs[i]-wantC) > 1e-12*wantC {
					t.Errorf("c_%d = %v, want %v", i, res.Coefs[i], wantC)
				}
			}
			// Exactly rank R = sum r_i: B is [B_1 B_2 B_3] untouched.
			if _, k := res.B.Dims(); k != 12 {
				t.Fatalf("output rank %d, want 12", k)
			}
			if !mat.Equal(res.B.Slice(0, 10, 4, 7), ts[1].f.B) {
				t.Errorf("B block of adapter 1 is not B_1")
			}
		})
	}
}

func TestSolveDeltaRanks(t *testing.T) {
	w0, ts := baseSite.build(t)
	g := grams(t, ts, false)
	want, _ := naiveSolve(t, w0, ts, Delta, 1e-4, 1e-4, true)
	cases := []struct {
		rank, wantK int
		exact       bool
	}{
		{0, 12, true},
		{-1, 12, true},
		{12, 12, true},
		{15, 15, true}, // zero-padded
		{5, 5, false},
		{1, 1, false},
	}
	for _, tc := range cases {
		res, err := SolveIterIS(w0, factors(ts), g, SolveOptions{Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true, Rank: tc.rank})
		if err != nil {
			t.Fatalf("rank %d: %v", tc.rank, err)
		}
		if _, k := res.B.Dims(); k != tc.wantK {
			t.Errorf("rank %d: B has %d columns, want %d", tc.rank, k, tc.wantK)
		}
		if r, _ := res.A.Dims(); r != tc.wantK {
			t.Errorf("rank %d: A has %d rows, want %d", tc.rank, r, tc.wantK)
		}
		ref := want
		if !tc.exact {
			ref = bestRank(t, want, tc.wantK)
		}
		assertRel(t, "rank update", product(res.B, res.A), ref, 1e-9)
	}
}

func TestSolveFullMatchesNaive(t *testing.T) {
	cases := []struct {
		name     string
		adaptive bool
		a1, a2   float64
	}{
		{"plain", false, 0, 0},
		{"adaptive ridge", true, 1e-4, 1e-4},
		{"unequal ridges", true, 1e-3, 1e-5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w0, ts := baseSite.build(t)
			g := grams(t, ts, false)
			want, _ := naiveSolve(t, w0, ts, Full, tc.a1, tc.a2, tc.adaptive)
			opt := SolveOptions{Objective: Full, Alpha1: tc.a1, Alpha2: tc.a2, Adaptive: tc.adaptive, Rank: -1}
			res, err := SolveIterIS(w0, factors(ts), g, opt)
			if err != nil {
				t.Fatal(err)
			}
			if _, k := res.B.Dims(); k != 10 {
				t.Fatalf("rank -1 gives %d columns, want min(m, n) = 10", k)
			}
			e := assertRel(t, "full, rank -1", product(res.B, res.A), want, 1e-10)
			t.Logf("full rank -1 rel err %.2e", e)
			for _, k := range []int{0, 4} {
				opt.Rank = k
				res, err := SolveIterIS(w0, factors(ts), g, opt)
				if err != nil {
					t.Fatal(err)
				}
				wantK := k
				if k == 0 {
					wantK = 12
				}
				if _, got := res.B.Dims(); got != wantK {
					t.Fatalf("rank %d gives %d columns, want %d", k, got, wantK)
				}
				// R = 12 > min(m, n) = 10: rank 0 keeps everything.
				assertRel(t, "full truncated", product(res.B, res.A), bestRank(t, want, wantK), 1e-9)
			}
		})
	}
}

func TestResidualMatchesBruteForce(t *testing.T) {
	cases := []struct {
		obj  Objective
		rank int
	}{
		{Delta, 0}, {Delta, 5}, {Full, -1}, {Full, 3},
	}
	for _, tc := range cases {
		w0, ts := baseSite.build(t)
		g := grams(t, ts, false)
		res, err := SolveIterIS(w0, factors(ts), g, SolveOptions{Objective: tc.obj, Alpha1: 1e-3, Alpha2: 1e-3, Adaptive: true, Rank: tc.rank})
		if err != nil {
			t.Fatal(err)
		}
		want := bruteResidual(t, w0, ts, res.Weights, product(res.B, res.A), tc.obj)
		if d := math.Abs(res.Residual-want) / want; d > 1e-9 {
			t.Errorf("%s rank %d: residual %v, brute force %v (rel %.2e)", tc.obj, tc.rank, res.Residual, want, d)
		} else {
			t.Logf("%s rank %d: residual %.6g, rel diff %.2e", tc.obj, tc.rank, want, d)
		}
	}
}

// TestRegMeanSingular: the summed Gram has rank 9 < n = 12 (three tasks of
// three distinct, repeated tokens). The solve must succeed and its outputs on
// the features must be the least-squares ones.
func TestRegMeanSingular(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const m, n = 7, 12
	var ts []task
	for i := 0; i < 3; i++ {
		distinct := randDense(rng, 3, n, 1)
		x := mat.NewDense(8, n, nil)
		for r := 0; r < 8; r++ {
			x.SetRow(r, distinct.RawRowView(r%3))
		}
		ts = append(ts, task{
			f: Factor{A: randDense(rng, 2, n, 0.5), B: randDense(rng, m, 2, 0.5), Scale: 2, Weight: 1},
			x: x, xt: x,
		})
	}
	g := grams(t, ts, true)
	res, err := SolveRegMean(nil, factors(ts), g, 1, 0)
	if err != nil {
		t.Fatalf("singular RegMean: %v", err)
	}
	t.Logf("method %s", res.Method)
	dw := product(res.B, res.A)
	// Least squares on the stacked features: min ||X D^T - Y||, Y_i = X_i dW_i^T.
	xs := mat.NewDense(24, n, nil)
	ys := mat.NewDense(24, m, nil)
	for i, tk := range ts {
		xs.Slice(8*i, 8*i+8, 0, n).(*mat.Dense).Copy(tk.x)
		ys.Slice(8*i, 8*i+8, 0, m).(*mat.Dense).Mul(tk.x, delta(tk.f).T())
	}
	dls := pinvSolve(t, xs, ys) // n x m = D^T
	got := product(xs, dw.T())
	want := product(xs, dls)
	e := assertRel(t, "RegMean outputs vs least squares", got, want, 1e-9)
	t.Logf("outputs rel err %.2e, ||dW||_F %.3g", e, mat.Norm(dw, 2))
	if math.IsNaN(res.Residual) || math.IsInf(res.Residual, 0) {
		t.Errorf("residual %v", res.Residual)
	}
	brute := bruteResidual(t, nil, ts, res.Weights, dw, Delta)
	if math.Abs(res.Residual-brute) > 1e-9*mat.Norm(ys, 2)*mat.Norm(ys, 2) {
		t.Errorf("residual %v, brute force %v", res.Residual, brute)
	}
}

// pinvSolve returns the minimum-norm least-squares solution of X Z = Y.
func pinvSolve(t *testing.T, x, y *mat.Dense) *mat.Dense {
	t.Helper()
	var svd mat.SVD
	if !svd.Factorize(x, mat.SVDThin) {
		t.Fatal("svd")
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	var uty mat.Dense
	uty.Mul(u.T(), y)
	r, c := uty.Dims()
	for i := 0; i < r; i++ {
		inv := 0.0
		if s[i] > 1e-10*s[0] {
			inv = 1 / s[i]
		}
		for j := 0; j < c; j++ {
			uty.Set(i, j, uty.At(i, j)*inv)
		}
	}
	var z mat.Dense
	z.Mul(&v, &uty)
	return &z
}

func TestRegMeanReduceMatchesNaive(t *testing.T) {
	for _, reduce := range []float64{1, 0.9, 0} {
		_, ts := baseSite.build(t)
		g := grams(t, ts, true)
		res, err := SolveRegMean(nil, factors(ts), g, reduce, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, n := ts[0].x.Dims()
		m, _ := ts[0].f.B.Dims()
		h := mat.NewDense(n, n, nil)
		rhs := mat.NewDense(m, n, nil)
		for _, tk := range ts {
			var gi mat.Dense
			gi.Mul(tk.x.T(), tk.x)
			for a := 0; a < n; a++ {
				for b := 0; b < n; b++ {
					if a != b {
						gi.Set(a, b, reduce*gi.At(a, b))
					}
				}
			}
			gi.Scale(tk.f.Weight, &gi)
			h.Add(h, &gi)
			var tg mat.Dense
			tg.Mul(delta(tk.f), &gi)
			rhs.Add(rhs, &tg)
		}
		var zt mat.Dense
		if err := zt.Solve(h, rhs.T()); err != nil {
			t.Fatal(err)
		}
		assertRel(t, "RegMean", product(res.B, res.A), zt.T(), 1e-10)
	}
}

// TestIndefiniteFallsBackToLU: a negative user weight makes H indefinite;
// Cholesky must fail over to LU and still give the exact solution.
func TestIndefiniteFallsBackToLU(t *testing.T) {
	s := baseSite
	s.wts = []float64{1, -2.5, 1}
	w0, ts := s.build(t)
	g := grams(t, ts, false)
	res, err := SolveIterIS(w0, factors(ts), g, SolveOptions{Alpha1: 1e-4, Alpha2: 1e-4})
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != "lu" {
		t.Errorf("method %q, want lu", res.Method)
	}
	want, _ := naiveSolve(t, w0, ts, Delta, 1e-4, 1e-4, false)
	assertRel(t, "indefinite H", product(res.B, res.A), want, 1e-9)
}

// TestSplitAccumulation: Grams accumulated in two halves (two machines) and
// merged give the same solve as one pass.
func TestSplitAccumulation(t *testing.T) {
	w0, ts := baseSite.build(t)
	one := grams(t, ts, false)
	split := make([]gram.Grams, len(ts))
	for i, tk := range ts {
		r, n := tk.x.Dims()
		h := r / 3
		a, b := gram.NewAccumulator(n, true), gram.NewAccumulator(n, true)
		if err := a.Add(f32(tk.x.Slice(0, h, 0, n)), f32(tk.xt.Slice(0, h, 0, n)), h); err != nil {
			t.Fatal(err)
		}
		if err := b.Add(f32(tk.x.Slice(h, r, 0, n)), f32(tk.xt.Slice(h, r, 0, n)), r-h); err != nil {
			t.Fatal(err)
		}
		if err := a.Merge(b); err != nil {
			t.Fatal(err)
		}
		split[i] = a.Grams()
		// The float32 path rounds the features; compare against the same
		// rounding done in one pass.
		c := gram.NewAccumulator(n, true)
		if err := c.Add(f32(tk.x), f32(tk.xt), r); err != nil {
			t.Fatal(err)
		}
		one[i] = c.Grams()
	}
	opt := SolveOptions{Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true}
	r1, err := SolveIterIS(w0, factors(ts), one, opt)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := SolveIterIS(w0, factors(ts), split, opt)
	if err != nil {
		t.Fatal(err)
	}
	assertRel(t, "split vs one pass", product(r2.B, r2.A), product(r1.B, r1.A), 1e-12)
}

func f32(m mat.Matrix) []float32 {
	r, c := m.Dims()
	out := make([]float32, 0, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out = append(out, float32(m.At(i, j)))
		}
	}
	return out
}

func TestRelChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name       string
		m, n, r, q int
		eps        float64 // B' A' = B A + eps * noise
	}{
		{"tall", 40, 30, 4, 6, 0},
		{"small change", 40, 30, 4, 4, 1e-9},
		{"wide factors (dense path)", 5, 30, 4, 3, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, a := randDense(rng, tc.m, tc.r, 1), randDense(rng, tc.r, tc.n, 1)
			pb, pa := randDense(rng, tc.m, tc.q, 1), randDense(rng, tc.q, tc.n, 1)
			if tc.eps > 0 {
				pb = mat.DenseCopyOf(b)
				pa = mat.DenseCopyOf(a)
				pa.Add(pa, randDense(rng, tc.r, tc.n, tc.eps))
			}
			got := RelChange(pb, pa, b, a)
			var d mat.Dense
			d.Sub(product(b, a), product(pb, pa))
			want := mat.Norm(&d, 2) / mat.Norm(product(pb, pa), 2)
			if math.Abs(got-want) > 1e-12*want+1e-15 {
				t.Errorf("RelChange = %.15g, want %.15g", got, want)
			}
		})
	}
	b, a := randDense(rng, 6, 2, 1), randDense(rng, 2, 5, 1)
	if got := RelChange(nil, nil, b, a); !math.IsInf(got, 1) {
		t.Errorf("no previous update: %v, want +Inf", got)
	}
	if got := RelChange(b, a, b, a); got > 1e-15 {
		t.Errorf("unchanged update: %v, want 0 (to rounding)", got)
	}
}

func TestSolveErrors(t *testing.T) {
	w0, ts := baseSite.build(t)
	g := grams(t, ts, false)
	f := factors(ts)
	bad := append([]Factor(nil), f...)
	bad[1].A = randDense(rand.New(rand.NewPCG(1, 1)), 2, 12, 1)
	wide := append([]gram.Grams(nil), g...)
	wide[2].P = mat.NewDense(11, 11, nil)
	cases := []struct {
		name string
		run  func() error
		want error
	}{
		{"no adapters", func() error { _, err := SolveIterIS(w0, nil, nil, SolveOptions{}); return err }, ErrNoAdapters},
		{"rank of A vs B", func() error { _, err := SolveIterIS(w0, bad, g, SolveOptions{}); return err }, ErrShape},
		{"gram size", func() error { _, err := SolveIterIS(w0, f, wide, SolveOptions{}); return err }, ErrShape},
		{"gram count", func() error { _, err := SolveIterIS(w0, f, g[:2], SolveOptions{}); return err }, ErrShape},
		{"w0 missing for adaptive", func() error { _, err := SolveIterIS(nil, f, g, SolveOptions{Adaptive: true}); return err }, ErrShape},
		{"w0 shape", func() error { _, err := SolveIterIS(mat.NewDense(3, 12, nil), f, g, SolveOptions{}); return err }, ErrShape},
		{"objective", func() error { _, err := SolveIterIS(w0, f, g, SolveOptions{Objective: "both"}); return err }, ErrOption},
		{"rank", func() error { _, err := SolveIterIS(w0, f, g, SolveOptions{Rank: -2}); return err }, ErrOption},
		{"alpha", func() error { _, err := SolveIterIS(w0, f, g, SolveOptions{Alpha1: -1}); return err }, ErrOption},
		{"reduce", func() error { _, err := SolveRegMean(nil, f, g, 1.5, 0); return err }, ErrOption},
		{"zero features", func() error {
			z := append([]gram.Grams(nil), g...)
			zero := mat.NewDense(12, 12, nil)
			z[0] = gram.Grams{N: 12, G: zero, P: zero, Q: zero}
			_, err := SolveIterIS(w0, f, z, SolveOptions{Adaptive: true})
			return err
		}, ErrDegenerate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestGivenCoefs: coefficients computed once (adaptiveCoefs) and passed to a
// later step give the same solve, without W0 for the delta objective.
func TestGivenCoefs(t *testing.T) {
	w0, ts := baseSite.build(t)
	g := grams(t, ts, false)
	coefs, err := adaptiveCoefs(w0, factors(ts), g)
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range ts {
		if want := naiveCoef(t, w0, tk); math.Abs(coefs[i]-want) > 1e-12*want {
			t.Errorf("c_%d = %v, want %v", i, coefs[i], want)
		}
	}
	opt := SolveOptions{Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true}
	r1, err := SolveIterIS(w0, factors(ts), g, opt)
	if err != nil {
		t.Fatal(err)
	}
	opt.Coefs = coefs
	r2, err := SolveIterIS(nil, factors(ts), g, opt)
	if err != nil {
		t.Fatal(err)
	}
	assertRel(t, "given coefs", product(r2.B, r2.A), product(r1.B, r1.A), 1e-14)
	if math.Abs(r1.Residual-r2.Residual) > 1e-12*r1.Residual {
		t.Errorf("residual %v vs %v", r2.Residual, r1.Residual)
	}
	opt.Coefs = coefs[:2]
	if _, err := SolveIterIS(w0, factors(ts), g, opt); !errors.Is(err, ErrOption) {
		t.Errorf("short coefs: %v, want ErrOption", err)
	}
	opt.Coefs = []float64{1, 0, 1}
	if _, err := SolveIterIS(w0, factors(ts), g, opt); !errors.Is(err, ErrOption) {
		t.Errorf("zero coef: %v, want ErrOption", err)
	}
}
