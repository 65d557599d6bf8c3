package merge

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
)

// naiveCorrected solves the residual-corrected normal equations densely from
// explicit features: targets Y_i = X_i W_i^T + D_i, N = sum_i w_i (Y_i^T X~_i
// + rho1_i W_i), G = sum_i w_i (Q_i + rho2_i I), W* = N G^-1; it returns
// d* = W* - W0 and G.
func naiveCorrected(t *testing.T, w0 *mat.Dense, ts []task, drift []*mat.Dense, a1, a2 float64) (*mat.Dense, *mat.Dense) {
	t.Helper()
	m, n := w0.Dims()
	g := mat.NewDense(n, n, nil)
	nn := mat.NewDense(m, n, nil)
	for i, tk := range ts {
		c := naiveCoef(t, w0, tk)
		wt := delta(tk.f)
		wt.Add(wt, w0)
		var y, p, q, term mat.Dense
		y.Mul(tk.x, wt.T())
		if drift != nil && drift[i] != nil {
			y.Add(&y, drift[i])
		}
		p.Mul(tk.x.T(), tk.xt)
		q.Mul(tk.xt.T(), tk.xt)
		r1, r2 := a1*mat.Norm(&p, 2), a2*mat.Norm(&q, 2)
		term.Mul(y.T(), tk.xt)
		var ridge mat.Dense
		ridge.Scale(r1, wt)
		term.Add(&term, &ridge)
		term.Scale(c*tk.f.Weight, &term)
		nn.Add(nn, &term)
		for d := 0; d < n; d++ {
			q.Set(d, d, q.At(d, d)+r2)
		}
		q.Scale(c*tk.f.Weight, &q)
		g.Add(g, &q)
	}
	var zt mat.Dense
	if err := zt.Solve(g, nn.T()); err != nil { // G symmetric: G Z = N^T
		t.Fatalf("naive solve: %v", err)
	}
	d := mat.DenseCopyOf(zt.T())
	d.Sub(d, w0)
	return d, g
}

// weightedObjective is tr((x - d) G (x - d)^T).
func weightedObjective(x, d mat.Matrix, g mat.Matrix) float64 {
	var e, eg mat.Dense
	e.Sub(x, d)
	eg.Mul(&e, g)
	return frob(&eg, &e)
}

// driftSite builds a synthetic site with per-task drift rows D_i and
// returns its Grams and cross terms through the gram package.
func driftSite(t *testing.T, s synth) (*mat.Dense, []task, []*mat.Dense, []gram.Grams, []*mat.Dense) {
	t.Helper()
	w0, ts := s.build(t)
	rng := rand.New(rand.NewPCG(s.seed, 7))
	var drift, cross []*mat.Dense
	for _, tk := range ts {
		rows, _ := tk.x.Dims()
		d := randDense(rng, rows, s.m, 0.5)
		drift = append(drift, d)
		acc := gram.NewCrossAccumulator(s.m, s.n)
		if err := acc.AddFloat64(d.RawMatrix().Data, tk.xt.RawMatrix().Data, rows); err != nil {
			t.Fatal(err)
		}
		cross = append(cross, acc.Sum())
	}
	return w0, ts, drift, grams(t, ts, false), cross
}

func TestSolveCorrectedMatchesNaive(t *testing.T) {
	site := synth{m: 9, n: 14, ranks: []int{2, 3, 2}, tokens: []int{40, 31, 55}, scales: []float64{2, 0.5, 1.25},
		wts: []float64{1, 0.7, 1.6}, shift: 0.3, seed: 11}
	w0, ts, drift, g, cross := driftSite(t, site)
	for _, tc := range []struct {
		name      string
		corrected bool
		rank      int
		trunc     Truncation
	}{
		{"corrected data rank 4", true, 4, TruncData},
		{"corrected svd rank 4", true, 4, TruncSVD},
		{"corrected default rank", true, 0, ""},
		{"uncorrected untruncated", false, -1, TruncData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cr, dr []*mat.Dense
			if tc.corrected {
				cr, dr = cross, drift
			}
			res, err := SolveCorrected(w0, factors(ts), g, cr, CorrectedOptions{Alpha1: 1e-3, Alpha2: 2e-3, Adaptive: true, Rank: tc.rank, Truncation: tc.trunc})
			if err != nil {
				t.Fatal(err)
			}
			want, gw := naiveCorrected(t, w0, ts, dr, 1e-3, 2e-3)
			e := assertRel(t, "Update vs naive", res.Update, want, 1e-10)
			if tc.corrected != math.IsNaN(res.Residual) {
				t.Errorf("residual %v: want NaN exactly when there are cross terms", res.Residual)
			}
			t.Logf("update rel err %.2e, method %s", e, res.Method)
			wsum := 0.0
			for i, tk := range ts {
				if c := naiveCoef(t, w0, tk); math.Abs(res.Coefs[i]-c) > 1e-12*c {
					t.Errorf("c_%d = %v, want %v", i, res.Coefs[i], c)
				}
				wsum += res.Weights[i]
			}
			var gs mat.Dense
			gs.Scale(1/wsum, gw)
			assertRel(t, "Metric vs naive G / sum w", res.Metric, &gs, 1e-12)
			k := tc.rank
			switch k {
			case 0:
				k = 7
			case -1:
				k = 9
			}
			if _, c := res.B.Dims(); c != k {
				t.Fatalf("output rank %d, want %d", c, k)
			}
			got := product(res.B, res.A)
			best := bestRank(t, want, k)
			switch {
			case tc.rank == -1:
				assertRel(t, "untruncated factors", got, want, 1e-12)
			case tc.trunc == TruncSVD:
				assertRel(t, "SVD truncation", got, best, 1e-10)
			default:
				// The data-aware truncation beats the SVD truncation on the
				// site's own objective, and differs from it.
				jd, js := weightedObjective(got, want, gw), weightedObjective(best, want, gw)
				if !(jd < js) {
					t.Errorf("data-aware objective %.6g is not below the SVD truncation's %.6g", jd, js)
				}
				t.Logf("objective data %.6g vs svd %.6g; rel diff of the updates %.3g", jd, js, relFrob(t, got, best))
			}
		})
	}
}

// TestSolveCorrectedWithoutCrossIsFull: without cross terms and with the SVD
// truncation, SolveCorrected is SolveIterIS with the full objective.
func TestSolveCorrectedWithoutCrossIsFull(t *testing.T) {
	w0, ts := baseSite.build(t)
	g := grams(t, ts, false)
	for _, rank := range []int{5, -1} {
		full, err := SolveIterIS(w0, factors(ts), g, SolveOptions{Objective: Full, Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true, Rank: rank})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := SolveCorrected(w0, factors(ts), g, []*mat.Dense{nil, nil, nil}, CorrectedOptions{Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true, Rank: rank, Truncation: TruncSVD})
		if err != nil {
			t.Fatal(err)
		}
		assertRel(t, fmt.Sprintf("rank %d", rank), product(rc.B, rc.A), product(full.B, full.A), 1e-12)
		if e := math.Abs(rc.Residual-full.Residual) / full.Residual; !(e <= 1e-9) {
			t.Errorf("rank %d: residual %.12g, SolveIterIS's %.12g (rel %.2g)", rank, rc.Residual, full.Residual, e)
		}
	}
}

func TestSolveCorrectedErrors(t *testing.T) {
	site := synth{m: 5, n: 6, ranks: []int{2, 2}, tokens: []int{20}, scales: []float64{2}, wts: []float64{1}, shift: 0.2, seed: 3}
	w0, ts, _, g, cross := driftSite(t, site)
	cases := []struct {
		name  string
		w0    *mat.Dense
		cross []*mat.Dense
		opt   CorrectedOptions
		want  error
	}{
		{"no W0", nil, nil, CorrectedOptions{}, ErrShape},
		{"cross count", w0, cross[:1], CorrectedOptions{}, ErrShape},
		{"cross shape", w0, []*mat.Dense{cross[0], mat.NewDense(6, 5, nil)}, CorrectedOptions{}, ErrShape},
		{"truncation", w0, cross, CorrectedOptions{Truncation: "best"}, ErrOption},
		{"rank", w0, cross, CorrectedOptions{Rank: -2}, ErrOption},
		{"alpha", w0, cross, CorrectedOptions{Alpha2: math.NaN()}, ErrOption},
		{"coef count", w0, cross, CorrectedOptions{Adaptive: true, Coefs: []float64{1}}, ErrOption},
		{"coef value", w0, cross, CorrectedOptions{Adaptive: true, Coefs: []float64{1, -1}}, ErrOption},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SolveCorrected(tc.w0, factors(ts), g, tc.cross, tc.opt); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
