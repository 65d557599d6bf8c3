package model

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/blas"
)

// attentionAllRows is the attention of one head of one sequence with every query row at once
// (the computation before query rows were blocked), the reference of TestAttentionBlocksBitIdentical.
func attentionAllRows(m *Model, st *State, s, h int, q, keys, vals, out []float32) {
	c := m.Config
	d := c.HeadDim
	qw, kw := c.Heads*d, c.KVHeads*d
	kv := h / (c.Heads / c.KVHeads)
	scale := float32(1 / math.Sqrt(float64(d)))
	o, n, start := st.Offsets[s], st.Lens[s], st.Start[s]
	L := start + n
	S := make([]float32, n*L)
	smallBLAS.Sgemm(blas.NoTrans, blas.Trans, n, L, d, scale, q[o*qw+h*d:], qw, keys[kv*d:], kw, 0, S, L)
	for i := 0; i < n; i++ {
		row := S[i*L : (i+1)*L]
		lim := start + i + 1
		mx := float32(math.Inf(-1))
		for _, x := range row[:lim] {
			mx = max(mx, x)
		}
		var sum float64
		for j := 0; j < lim; j++ {
			e := math.Exp(float64(row[j] - mx))
			row[j] = float32(e)
			sum += e
		}
		inv := float32(1 / sum)
		for j := 0; j < lim; j++ {
			row[j] *= inv
		}
		for j := lim; j < L; j++ {
			row[j] = 0
		}
	}
	smallBLAS.Sgemm(blas.NoTrans, blas.NoTrans, n, d, L, 1, S, L, vals[kv*d:], kw, 0, out[o*qw+h*d:], qw)
}

func randFloats(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// TestAttentionBlocksBitIdentical checks that attention computed in blocks of AttentionBlock query
// rows equals, bit for bit, attention over all rows at once, for sequences shorter and longer
// than a block, with head_dim above and below gonum's 64-wide tile, and with cached positions.
func TestAttentionBlocksBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		headDim int
		lens    []int
		cached  int // positions already in the cache (Start of every sequence)
	}{
		{128, []int{700}, 0},
		{128, []int{1, 255, 256, 257, 513}, 0},
		{32, []int{600, 3}, 0},
		{128, []int{300}, 150},
		{80, []int{AttentionBlock*2 + 7}, 0},
	} {
		c := Config{Heads: 4, KVHeads: 2, HeadDim: tc.headDim}
		m := &Model{Config: c}
		qw, kw := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		st := &State{}
		var cache *Cache
		if tc.cached > 0 {
			cache = NewCache(1, len(tc.lens))
		}
		for i, n := range tc.lens {
			st.Offsets = append(st.Offsets, st.Rows)
			st.Lens = append(st.Lens, n)
			st.Start = append(st.Start, tc.cached)
			st.Rows += n
			if cache != nil {
				cache.k[0][i] = randFloats(r, tc.cached*kw)
				cache.v[0][i] = randFloats(r, tc.cached*kw)
			}
		}
		st.cache = cache
		for i := range tc.lens {
			st.slots = append(st.slots, i)
		}
		q, k, v := randFloats(r, st.Rows*qw), randFloats(r, st.Rows*kw), randFloats(r, st.Rows*kw)
		got := m.attention(0, st, q, k, v)
		want := make([]float32, len(got))
		for s := range st.Lens {
			keys, vals := k[st.Offsets[s]*kw:(st.Offsets[s]+st.Lens[s])*kw], v[st.Offsets[s]*kw:(st.Offsets[s]+st.Lens[s])*kw]
			if cache != nil {
				keys, vals = cache.k[0][s], cache.v[0][s]
			}
			for h := 0; h < c.Heads; h++ {
				attentionAllRows(m, st, s, h, q, keys, vals, want)
			}
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("head_dim %d, lens %v, cached %d: entry %d is %v blocked, %v unblocked", tc.headDim, tc.lens, tc.cached, i, got[i], want[i])
			}
		}
	}
}

// TestAttentionMemoryBounded runs attention over one sequence of 4096 positions: the scores held
// at once are AttentionBlock x 4096 per worker (4 MiB), where all rows at once took 4096 x 4096
// per worker (64 MiB). TotalAlloc also counts gonum's per-call bookkeeping of its parallel GEMM
// (a few MiB here), hence the margin.
func TestAttentionMemoryBounded(t *testing.T) {
	const n = 4096
	c := Config{Heads: 2, KVHeads: 1, HeadDim: 16}
	m := &Model{Config: c}
	r := rand.New(rand.NewPCG(3, 4))
	st := &State{Lens: []int{n}, Offsets: []int{0}, Start: []int{0}, Rows: n}
	q, k, v := randFloats(r, n*32), randFloats(r, n*16), randFloats(r, n*16)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m.attention(0, st, q, k, v)
	runtime.ReadMemStats(&after)
	workers := min(runtime.GOMAXPROCS(0), c.Heads*n/AttentionBlock)
	blocked := uint64(workers*AttentionBlock*n*4 + n*32*4)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 2*blocked+8<<20 {
		t.Errorf("attention over %d positions allocated %d bytes; its scores take %d (all rows at once: %d)", n, grew, blocked, workers*n*n*4)
	}
}
