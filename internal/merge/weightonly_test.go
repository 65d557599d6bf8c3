package merge

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// equalRankFactors returns three rank-4 adapters of a 9 x 7 site, one with a
// negative weight.
func equalRankFactors(t *testing.T) []Factor {
	t.Helper()
	rng := rand.New(rand.NewPCG(11, 12))
	var f []Factor
	for i, w := range []float64{1, -0.5, 0.25} {
		f = append(f, Factor{A: randDense(rng, 4, 7, 1), B: randDense(rng, 9, 4, 1), Scale: float64(i + 1), Weight: w})
	}
	return f
}

func TestCatIsTaskArithmetic(t *testing.T) {
	f := equalRankFactors(t)
	f[2].A = randDense(rand.New(rand.NewPCG(1, 2)), 2, 7, 1) // ranks may differ
	f[2].B = randDense(rand.New(rand.NewPCG(3, 4)), 9, 2, 1)
	b, a, err := Cat(f)
	if err != nil {
		t.Fatal(err)
	}
	want := mat.NewDense(9, 7, nil)
	for _, fi := range f {
		d := delta(fi)
		d.Scale(fi.Weight, d)
		want.Add(want, d)
	}
	if _, k := b.Dims(); k != 10 {
		t.Fatalf("cat rank %d, want 10", k)
	}
	assertRel(t, "cat", product(b, a), want, 1e-15)
}

func TestLinearSignOnA(t *testing.T) {
	f := equalRankFactors(t)
	b, a, err := Linear(f)
	if err != nil {
		t.Fatal(err)
	}
	wa := mat.NewDense(4, 7, nil)
	wb := mat.NewDense(9, 4, nil)
	for _, fi := range f {
		ws := fi.Weight * fi.Scale
		var ta, tb mat.Dense
		ta.Scale(math.Copysign(math.Sqrt(math.Abs(ws)), ws), fi.A)
		tb.Scale(math.Sqrt(math.Abs(ws)), fi.B)
		wa.Add(wa, &ta)
		wb.Add(wb, &tb)
	}
	assertRel(t, "linear A", a, wa, 1e-15)
	assertRel(t, "linear B", b, wb, 1e-15)
}

func TestSVDIsBestApproximation(t *testing.T) {
	f := equalRankFactors(t)
	want := mat.NewDense(9, 7, nil)
	for _, fi := range f {
		d := delta(fi)
		d.Scale(fi.Weight, d)
		want.Add(want, d)
	}
	for _, k := range []int{0, 2, 7, 12} {
		b, a, err := SVD(f, k, 1)
		if err != nil {
			t.Fatal(err)
		}
		wantK := k
		if k == 0 {
			wantK = 4 // the largest input rank, as PEFT
		}
		if _, got := b.Dims(); got != wantK {
			t.Errorf("rank %d: %d columns, want %d", k, got, wantK)
		}
		assertRel(t, "svd", product(b, a), bestRank(t, want, wantK), 1e-12)
	}
}

// TestTIESHand checks sign election and disjoint merge on hand-computed
// numbers (density 0.5 keeps 2 of 4 entries per task).
func TestTIESHand(t *testing.T) {
	ts := []*mat.Dense{
		mat.NewDense(1, 4, []float64{3, -1, 2, 0.5}),
		mat.NewDense(1, 4, []float64{-2, -4, 1, 0.1}),
		mat.NewDense(1, 4, []float64{1, 2, -5, 0.2}),
	}
	w := []float64{1, 0.5, 2}
	cases := []struct {
		name string
		got  *mat.Dense
		want []float64
	}{
		// pruned: [3 0 2 0], [-2 -4 0 0], [0 2 -5 0]
		{"total", ties(magnitudePruneAll(ts, 0.5), w, MajorityTotal), []float64{3, -2, -10, 0}},
		{"frequency", ties(magnitudePruneAll(ts, 0.5), w, MajorityFrequency), []float64{3, 4, 2, 0}},
		{"magnitude prune", weightedSum(magnitudePruneAll(ts, 0.5), w), []float64{2, 2, -8, 0}},
		{"no pruning at density 1", ties(magnitudePruneAll(ts, 1), w, MajorityTotal), []float64{(3 + 2) / 2.0, (-1 - 2) / 2.0, -10, (0.5 + 0.05 + 0.4) / 3}},
		{"density 0 prunes all", weightedSum(magnitudePruneAll(ts, 0), w), []float64{0, 0, 0, 0}},
	}
	for _, tc := range cases {
		if !mat.EqualApprox(tc.got, mat.NewDense(1, 4, tc.want), 1e-15) {
			t.Errorf("%s: got %v, want %v", tc.name, mat.Formatted(tc.got), tc.want)
		}
	}
	// int(0.3 * 10) = 3 entries survive, largest magnitudes first.
	p := magnitudePrune(mat.NewDense(2, 5, []float64{1, -9, 3, 0, 2, -7, 5, 0.5, 8, -4}), 0.3)
	if !mat.Equal(p, mat.NewDense(2, 5, []float64{0, -9, 0, 0, 0, -7, 0, 0, 8, 0})) {
		t.Errorf("magnitude prune: %v", mat.Formatted(p))
	}
}

func TestFactorwiseMethods(t *testing.T) {
	f := equalRankFactors(t)
	wa, wb := []float64{}, []float64{}
	for _, fi := range f {
		ws := fi.Weight * fi.Scale
		wa = append(wa, math.Copysign(math.Sqrt(math.Abs(ws)), ws))
		wb = append(wb, math.Sqrt(math.Abs(ws)))
	}
	as := []*mat.Dense{f[0].A, f[1].A, f[2].A}
	bs := []*mat.Dense{f[0].B, f[1].B, f[2].B}
	b, a, err := TIES(f, 0.4, MajorityTotal)
	if err != nil {
		t.Fatal(err)
	}
	assertRel(t, "ties A", a, ties(magnitudePruneAll(as, 0.4), wa, MajorityTotal), 0)
	assertRel(t, "ties B", b, ties(magnitudePruneAll(bs, 0.4), wb, MajorityTotal), 0)
	b, a, err = MagnitudePrune(f, 0.4)
	if err != nil {
		t.Fatal(err)
	}
	assertRel(t, "magnitude_prune A", a, weightedSum(magnitudePruneAll(as, 0.4), wa), 0)
	assertRel(t, "magnitude_prune B", b, weightedSum(magnitudePruneAll(bs, 0.4), wb), 0)

	// DARE at density 1 is linear; at 0.5 it is reproducible per seed and
	// keeps about half of the entries, rescaled by 2.
	lb, la, _ := Linear(f)
	db, da, err := DARELinear(f, 1, 7)
	if err != nil {
		t.Fatal(err)
	}
	assertRel(t, "dare_linear density 1", product(db, da), product(lb, la), 1e-15)
	d1b, d1a, _ := DARELinear(f, 0.5, 7)
	d2b, d2a, _ := DARELinear(f, 0.5, 7)
	if !mat.Equal(d1a, d2a) || !mat.Equal(d1b, d2b) {
		t.Errorf("dare_linear is not reproducible for one seed")
	}
	d3b, _, _ := DARELinear(f, 0.5, 8)
	if mat.Equal(d1b, d3b) {
		t.Errorf("dare_linear ignores the seed")
	}
	kept := 0
	rng := rand.New(rand.NewPCG(7, dareStream))
	pruned := randomPruneAll([]*mat.Dense{f[0].B}, 0.5, rng)[0]
	for i := 0; i < 9; i++ {
		for j := 0; j < 4; j++ {
			switch v := pruned.At(i, j); v {
			case 0:
			case 2 * f[0].B.At(i, j):
				kept++
			default:
				t.Fatalf("dare entry %v is neither 0 nor 2 x %v", v, f[0].B.At(i, j))
			}
		}
	}
	if kept < 9 || kept > 27 {
		t.Errorf("dare kept %d of 36 entries at density 0.5", kept)
	}
	if _, _, err := DARETies(f, 0.5, MajorityFrequency, 1); err != nil {
		t.Errorf("dare_ties: %v", err)
	}
}

func TestDenseVariants(t *testing.T) {
	f := equalRankFactors(t)
	var ds []*mat.Dense
	var w []float64
	for _, fi := range f {
		ds = append(ds, delta(fi))
		w = append(w, fi.Weight)
	}
	cases := []struct {
		name string
		run  func(rank int) (*mat.Dense, *mat.Dense, error)
		want *mat.Dense
	}{
		{"ties_svd", func(k int) (*mat.Dense, *mat.Dense, error) { return TIESDense(f, 0.5, MajorityTotal, k, 1) },
			ties(magnitudePruneAll(ds, 0.5), w, MajorityTotal)},
		{"magnitude_prune_svd", func(k int) (*mat.Dense, *mat.Dense, error) { return MagnitudePruneDense(f, 0.5, k, 1) },
			weightedSum(magnitudePruneAll(ds, 0.5), w)},
	}
	for _, tc := range cases {
		for _, k := range []int{0, 3, 7} {
			b, a, err := tc.run(k)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			wantK := k
			if k == 0 {
				wantK = 4
			}
			assertRel(t, tc.name, product(b, a), bestRank(t, tc.want, wantK), 1e-10)
		}
	}
}

func TestWeightOnlyErrors(t *testing.T) {
	f := equalRankFactors(t)
	mixed := append([]Factor(nil), f...)
	mixed[1] = Factor{A: mat.NewDense(2, 7, nil), B: mat.NewDense(9, 2, nil), Scale: 1, Weight: 1}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"linear ranks", second(Linear(mixed)), ErrRankMismatch},
		{"ties ranks", second(TIES(mixed, 0.5, MajorityTotal)), ErrRankMismatch},
		{"density", second(TIES(f, -0.1, MajorityTotal)), ErrOption},
		{"dare density 0", second(DARELinear(f, 0, 1)), ErrOption},
		{"majority", second(TIES(f, 0.5, "mean")), ErrOption},
		{"empty", second(Cat(nil)), ErrNoAdapters},
		{"shape", second(SVD([]Factor{f[0], {A: mat.NewDense(4, 6, nil), B: mat.NewDense(9, 4, nil)}}, 2, 0)), ErrShape},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

func second(_, _ *mat.Dense, err error) error { return err }
