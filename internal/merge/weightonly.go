package merge

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/linalg"
)

// This file reproduces PEFT's LoraModel.add_weighted_adapter (PEFT 0.21,
// src/peft/tuners/lora/model.py and src/peft/utils/merge_utils.py). Every
// function returns a LoRA of scale 1 (PEFT writes r = lora_alpha = new rank).
// With w_i the user weight and s_i the adapter scale:
//
//   - cat: A = [w_1 s_1 A_1; ...], B = [B_1 ... B_N]: exactly sum_i w_i dW_i.
//   - linear, ties, dare_linear, dare_ties, magnitude_prune: the A's and the
//     B's are combined separately, A with weights sign(w_i s_i) sqrt(|w_i s_i|)
//     and B with sqrt(|w_i s_i|) (sign on one side only), so the result is not
//     sum_i w_i dW_i but (sum B-terms)(sum A-terms), cross terms included.
//   - svd and the *_svd variants: the dense updates dW_i = s_i B_i A_i are
//     combined with the weights w_i (PEFT >= 0.21 no longer multiplies the
//     scale in a second time, huggingface/peft#3111; the svd_sum / svd_mean
//     fixtures confirm it) and truncated by SVD to the requested rank
//     (default: the largest input rank). svd_clamp is not supported.
//
// Majority sign, pruning and disjoint merge follow merge_utils.py: pruning
// keeps the int(density * numel) entries of largest magnitude of each task
// tensor (ties between equal magnitudes broken by position, where torch.topk
// is unspecified); the majority sign is taken on the pruned, unweighted
// tensors (sum: "total", or count of signs: "frequency"; >= 0 counts as +);
// an entry is averaged over the tasks that agree with it, weighted, divided
// by their count (at least 1). DARE masks are Bernoulli(density) from a
// PCG generator seeded by seed, rescaled by 1/density: statistically the same
// as PEFT, not the same draws.

// Majority-sign methods of TIES.
const (
	MajorityTotal     = "total"
	MajorityFrequency = "frequency"
)

// Cat concatenates the adapters: the exact weighted task arithmetic
// sum_i w_i dW_i as a LoRA of rank sum r_i (PEFT's "cat").
func Cat(f []Factor) (b, a *mat.Dense, err error) {
	s, err := checkFactors(f)
	if err != nil {
		return nil, nil, err
	}
	b, a = catFactors(f, s, func(fi Factor) float64 { return fi.Weight * fi.Scale })
	return b, a, nil
}

// catFactors returns [B_1 ... B_N] and [c_1 A_1; ...; c_N A_N].
func catFactors(f []Factor, s site, coef func(Factor) float64) (b, a *mat.Dense) {
	b = hcatB(f, s)
	a = mat.NewDense(s.R, s.n, nil)
	off := 0
	for i, fi := range f {
		a.Slice(off, off+s.ranks[i], 0, s.n).(*mat.Dense).Scale(coef(fi), fi.A)
		off += s.ranks[i]
	}
	return b, a
}

// Linear is PEFT's "linear": A = sum_i sign(w_i s_i) sqrt(|w_i s_i|) A_i and
// B = sum_i sqrt(|w_i s_i|) B_i. All ranks must be equal.
func Linear(f []Factor) (b, a *mat.Dense, err error) {
	return factorwise(f, func(ts []*mat.Dense, w []float64) (*mat.Dense, error) {
		return weightedSum(ts, w), nil
	})
}

// SVD is PEFT's "svd": the rank-limited best approximation of
// sum_i w_i dW_i. rank <= 0 means the largest input rank. The truncation
// goes through the small core of the concatenated factors (exact), so seed
// is not used; it is accepted for symmetry with the dense variants.
func SVD(f []Factor, rank int, seed uint64) (b, a *mat.Dense, err error) {
	_ = seed
	s, err := checkFactors(f)
	if err != nil {
		return nil, nil, err
	}
	k := rank
	if k <= 0 {
		k = slices.Max(s.ranks)
	}
	b, a = catFactors(f, s, func(fi Factor) float64 { return fi.Weight * fi.Scale })
	if k < s.R {
		b, a = linalg.TruncateFactors(b, a, k)
	}
	b, a = padRank(b, a, k)
	return b, a, nil
}

// TIES is PEFT's "ties" on the A's and, separately, on the B's. majority is
// MajorityTotal or MajorityFrequency. All ranks must be equal.
func TIES(f []Factor, density float64, majority string) (b, a *mat.Dense, err error) {
	if err := checkDensity(density, false); err != nil {
		return nil, nil, err
	}
	if err := checkMajority(majority); err != nil {
		return nil, nil, err
	}
	return factorwise(f, func(ts []*mat.Dense, w []float64) (*mat.Dense, error) {
		return ties(magnitudePruneAll(ts, density), w, majority), nil
	})
}

// MagnitudePrune is PEFT's "magnitude_prune": each A_i and B_i keeps its
// int(density * numel) largest-magnitude entries, then linear weighting.
// All ranks must be equal.
func MagnitudePrune(f []Factor, density float64) (b, a *mat.Dense, err error) {
	if err := checkDensity(density, false); err != nil {
		return nil, nil, err
	}
	return factorwise(f, func(ts []*mat.Dense, w []float64) (*mat.Dense, error) {
		return weightedSum(magnitudePruneAll(ts, density), w), nil
	})
}

// DARELinear is PEFT's "dare_linear": random pruning of each A_i and B_i
// with keep probability density, rescaled by 1/density, then linear
// weighting. All ranks must be equal.
func DARELinear(f []Factor, density float64, seed uint64) (b, a *mat.Dense, err error) {
	if err := checkDensity(density, true); err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(seed, dareStream))
	return factorwise(f, func(ts []*mat.Dense, w []float64) (*mat.Dense, error) {
		return weightedSum(randomPruneAll(ts, density, rng), w), nil
	})
}

// DARETies is PEFT's "dare_ties": DARE pruning, then TIES sign election and
// disjoint merge. All ranks must be equal.
func DARETies(f []Factor, density float64, majority string, seed uint64) (b, a *mat.Dense, err error) {
	if err := checkDensity(density, true); err != nil {
		return nil, nil, err
	}
	if err := checkMajority(majority); err != nil {
		return nil, nil, err
	}
	rng := rand.New(rand.NewPCG(seed, dareStream))
	return factorwise(f, func(ts []*mat.Dense, w []float64) (*mat.Dense, error) {
		return ties(randomPruneAll(ts, density, rng), w, majority), nil
	})
}

// TIESDense is PEFT's "ties_svd": TIES on the dense updates dW_i with the
// weights w_i, truncated to rank (<= 0: the largest input rank) by SVD.
func TIESDense(f []Factor, density float64, majority string, rank int, seed uint64) (b, a *mat.Dense, err error) {
	if err := checkDensity(density, false); err != nil {
		return nil, nil, err
	}
	if err := checkMajority(majority); err != nil {
		return nil, nil, err
	}
	return dense(f, rank, seed, func(ts []*mat.Dense, w []float64) *mat.Dense {
		return ties(magnitudePruneAll(ts, density), w, majority)
	})
}

// MagnitudePruneDense is PEFT's "magnitude_prune_svd": magnitude pruning of
// the dense updates dW_i, weighted sum, truncated to rank by SVD.
func MagnitudePruneDense(f []Factor, density float64, rank int, seed uint64) (b, a *mat.Dense, err error) {
	if err := checkDensity(density, false); err != nil {
		return nil, nil, err
	}
	return dense(f, rank, seed, func(ts []*mat.Dense, w []float64) *mat.Dense {
		return weightedSum(magnitudePruneAll(ts, density), w)
	})
}

// dareStream separates the DARE generator from other users of the seed.
const dareStream = 0xda4e

func checkDensity(d float64, random bool) error {
	if math.IsNaN(d) || d < 0 || (random && d == 0) {
		lo := ">= 0"
		if random {
			lo = "> 0"
		}
		return fmt.Errorf("%w: density %v (want %s; 1 or more means no pruning)", ErrOption, d, lo)
	}
	return nil
}

func checkMajority(m string) error {
	if m != MajorityTotal && m != MajorityFrequency {
		return fmt.Errorf("%w: majority sign method %q (want %q or %q)", ErrOption, m, MajorityTotal, MajorityFrequency)
	}
	return nil
}

// factorwise applies combine to the A's and to the B's with PEFT's
// square-root weights (sign on the A side).
func factorwise(f []Factor, combine func(ts []*mat.Dense, w []float64) (*mat.Dense, error)) (b, a *mat.Dense, err error) {
	s, err := checkFactors(f)
	if err != nil {
		return nil, nil, err
	}
	for i, r := range s.ranks {
		if r != s.ranks[0] {
			return nil, nil, fmt.Errorf("%w: adapter %d has rank %d, adapter 0 has %d (this combination needs equal ranks; use cat or svd)", ErrRankMismatch, i, r, s.ranks[0])
		}
	}
	as := make([]*mat.Dense, len(f))
	bs := make([]*mat.Dense, len(f))
	wa := make([]float64, len(f))
	wb := make([]float64, len(f))
	for i, fi := range f {
		ws := fi.Weight * fi.Scale
		root := math.Sqrt(math.Abs(ws))
		wa[i], wb[i] = root, root
		if ws < 0 {
			wa[i] = -root
		}
		as[i], bs[i] = fi.A, fi.B
	}
	if a, err = combine(as, wa); err != nil {
		return nil, nil, err
	}
	if b, err = combine(bs, wb); err != nil {
		return nil, nil, err
	}
	return b, a, nil
}

// dense combines the dense updates dW_i = s_i B_i A_i with the weights w_i
// and truncates the result to rank (<= 0: the largest input rank).
func dense(f []Factor, rank int, seed uint64, combine func(ts []*mat.Dense, w []float64) *mat.Dense) (b, a *mat.Dense, err error) {
	s, err := checkFactors(f)
	if err != nil {
		return nil, nil, err
	}
	ts := make([]*mat.Dense, len(f))
	w := make([]float64, len(f))
	for i, fi := range f {
		d := mat.NewDense(s.m, s.n, nil)
		d.Mul(fi.B, fi.A)
		d.Scale(fi.Scale, d)
		ts[i], w[i] = d, fi.Weight
	}
	merged := combine(ts, w)
	k := rank
	if k <= 0 {
		k = slices.Max(s.ranks)
	}
	b, a = linalg.TruncateDense(merged, k, seed)
	b, a = padRank(b, a, k)
	return b, a, nil
}

// weightedSum returns sum_i w_i t_i.
func weightedSum(ts []*mat.Dense, w []float64) *mat.Dense {
	r, c := ts[0].Dims()
	out := mat.NewDense(r, c, nil)
	for i, t := range ts {
		axpy(out, w[i], t)
	}
	return out
}

// magnitudePruneAll prunes every tensor to its largest int(density*numel)
// magnitudes; density >= 1 returns the tensors unchanged.
func magnitudePruneAll(ts []*mat.Dense, density float64) []*mat.Dense {
	if density >= 1 {
		return ts
	}
	out := make([]*mat.Dense, len(ts))
	for i, t := range ts {
		out[i] = magnitudePrune(t, density)
	}
	return out
}

func magnitudePrune(t *mat.Dense, density float64) *mat.Dense {
	r, c := t.Dims()
	vals := denseValues(t)
	k := int(density * float64(len(vals)))
	idx := make([]int, len(vals))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(x, y int) int {
		return cmp.Compare(math.Abs(vals[y]), math.Abs(vals[x]))
	})
	out := make([]float64, len(vals))
	for _, j := range idx[:k] {
		out[j] = vals[j]
	}
	return mat.NewDense(r, c, out)
}

// randomPruneAll keeps each entry with probability density and rescales by
// 1/density; density >= 1 returns the tensors unchanged.
func randomPruneAll(ts []*mat.Dense, density float64, rng *rand.Rand) []*mat.Dense {
	if density >= 1 {
		return ts
	}
	out := make([]*mat.Dense, len(ts))
	for i, t := range ts {
		r, c := t.Dims()
		vals := denseValues(t)
		for j := range vals {
			if rng.Float64() < density {
				vals[j] /= density
			} else {
				vals[j] = 0
			}
		}
		out[i] = mat.NewDense(r, c, vals)
	}
	return out
}

// ties elects the majority sign on the (pruned, unweighted) tensors and
// averages the weighted entries that agree with it.
func ties(ts []*mat.Dense, w []float64, majority string) *mat.Dense {
	r, c := ts[0].Dims()
	vals := make([][]float64, len(ts))
	for i, t := range ts {
		vals[i] = denseValues(t)
	}
	out := make([]float64, r*c)
	for j := range out {
		elect := 0.0
		for i := range ts {
			v := vals[i][j]
			if majority == MajorityFrequency {
				elect += sign(v)
			} else {
				elect += v
			}
		}
		maj := 1.0
		if elect < 0 {
			maj = -1
		}
		sum, count := 0.0, 0.0
		for i := range ts {
			v := vals[i][j]
			if sign(v) == maj {
				sum += w[i] * v
				count++
			}
		}
		out[j] = sum / math.Max(count, 1)
	}
	return mat.NewDense(r, c, out)
}

func sign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// denseValues returns a row-major copy of t's entries.
func denseValues(t *mat.Dense) []float64 {
	r, c := t.Dims()
	raw := t.RawMatrix()
	out := make([]float64, 0, r*c)
	for i := 0; i < r; i++ {
		out = append(out, raw.Data[i*raw.Stride:i*raw.Stride+c]...)
	}
	return out
}
