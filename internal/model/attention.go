package model

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"gonum.org/v1/gonum/blas/gonum"
)

// smallBLAS runs the attention's per-head arithmetic: its dot products and axpys are gonum's own
// kernels, in the order gonum's Sgemm applies them (see attendRows).
var smallBLAS gonum.Implementation

// Cache holds, for every layer and cache slot, the keys and values of all positions so far: what
// greedy generation keeps between steps. A layer shard keeps a Cache for its own layers only.
type Cache struct {
	k, v  [][][]float32 // [layer][slot] -> positions x kvHeads*headDim
	slots int
}

// NewCache returns an empty cache of the given number of slots for a model of the given number of
// layers.
func NewCache(layers, slots int) *Cache {
	c := &Cache{k: make([][][]float32, layers), v: make([][][]float32, layers), slots: slots}
	for l := range c.k {
		c.k[l] = make([][]float32, slots)
		c.v[l] = make([][]float32, slots)
	}
	return c
}

// AttentionBlock is the number of query rows whose attention is computed as one unit of work.
// It is a multiple of gonum's 64-wide GEMM tile of at least 192, so a sequence longer than a
// block gives bit for bit the result of computing all its rows at once (a block then has at least
// four tiles, so the score products take gonum's parallel path with the same summation order).
const AttentionBlock = 256

// qkv locates the queries, keys and values of a batch: rows of q have stride ldq and those of k
// and v stride ldkv (they may be column ranges of one fused projection output).
type qkv struct {
	q, k, v   []float32
	ldq, ldkv int
}

// attention computes causal grouped-query attention for every sequence of st from contiguous
// queries (rows x heads*headDim) and keys and values (rows x kvHeads*headDim), and returns
// rows x heads*headDim.
func (m *Model) attention(l int, st *State, q, k, v []float32) []float32 {
	c := m.Config
	out := make([]float32, st.Rows*c.Heads*c.HeadDim)
	m.attend(l, st, qkv{q: q, k: k, v: v, ldq: c.Heads * c.HeadDim, ldkv: c.KVHeads * c.HeadDim}, out)
	return out
}

// attend writes the attention output of every sequence of st into out (rows x heads*headDim).
// With a cache, each sequence's new keys and values are appended to its slot first, and its
// queries see the whole slot. One unit of work is one key/value head of one sequence and a block
// of at most AttentionBlock query rows: the query heads of the group run one after another over
// the same keys and values.
func (m *Model) attend(l int, st *State, in qkv, out []float32) {
	c := m.Config
	d, kw := c.HeadDim, c.KVHeads*c.HeadDim
	keys := make([]kvRows, len(st.Lens))
	for s := range st.Lens {
		o, n := st.Offsets[s], st.Lens[s]
		if st.cache == nil {
			keys[s] = kvRows{k: in.k[o*in.ldkv:], v: in.v[o*in.ldkv:], ld: in.ldkv}
			continue
		}
		sl := st.slots[s]
		for r := o; r < o+n; r++ {
			st.cache.k[l][sl] = append(st.cache.k[l][sl], in.k[r*in.ldkv:r*in.ldkv+kw]...)
			st.cache.v[l][sl] = append(st.cache.v[l][sl], in.v[r*in.ldkv:r*in.ldkv+kw]...)
		}
		keys[s] = kvRows{k: st.cache.k[l][sl], v: st.cache.v[l][sl], ld: kw}
	}
	type job struct{ s, kv, r0 int }
	var jobs []job
	for s, n := range st.Lens {
		for kv := 0; kv < c.KVHeads; kv++ {
			for r0 := 0; r0 < n; r0 += AttentionBlock {
				jobs = append(jobs, job{s, kv, r0})
			}
		}
	}
	ld := c.Heads * d
	a := attender{d: d, group: c.Heads / c.KVHeads, scale: float32(1 / math.Sqrt(float64(d)))}
	var next atomic.Int64
	work := func() {
		var scores []float32
		for i := int(next.Add(1)) - 1; i < len(jobs); i = int(next.Add(1)) - 1 {
			j := jobs[i]
			o, start, n := st.Offsets[j.s], st.Start[j.s], min(AttentionBlock, st.Lens[j.s]-j.r0)
			L := start + st.Lens[j.s]
			if cap(scores) < 2*L {
				scores = make([]float32, 2*L)
			}
			rows := blockRows{q: in.q[(o+j.r0)*in.ldq:], ldq: in.ldq, out: out[(o+j.r0)*ld:], ldo: ld, n: n, first: start + j.r0, keys: L}
			a.group1(rows, keys[j.s], j.kv, scores[:2*L])
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work()
		}()
	}
	work()
	wg.Wait()
}

// kvRows are the keys and values one sequence attends to, position by position, row stride ld.
type kvRows struct {
	k, v []float32
	ld   int
}

// blockRows is a block of n query rows of one sequence: query row i is q[i*ldq:], its output
// out[i*ldo:]; row i sits at position first+i and sees keys [0, first+i]; the sequence has keys
// positions in all (what the score product of the block spans).
type blockRows struct {
	q     []float32
	ldq   int
	out   []float32
	ldo   int
	n     int
	first int
	keys  int
}

// attender holds what every block of one attention call shares.
type attender struct {
	d, group int
	scale    float32
}

// group1 computes the block's rows for every query head of key/value head kv. scores is scratch
// of two rows of keys.
func (a attender) group1(b blockRows, kv kvRows, g int, scores []float32) {
	// gonum's Sgemm for the block's n x keys score product sums each dot product over all of
	// head_dim on its serial path, and in 64-wide blocks of head_dim on its parallel one (4 or
	// more 64 x 64 blocks of output): replaying that choice keeps every score's bits.
	split := (b.n+63)/64*((b.keys+63)/64) >= 4 && a.d > 64
	for h := g * a.group; h < (g+1)*a.group; h++ {
		for i := 0; i < b.n; i++ {
			a.row(b, kv, g, h, i, split, scores)
		}
	}
}

// row computes query row i of head h: the scores of the visible positions (the masked ones are
// never computed; gonum computed them and the softmax zeroed them), their causal softmax, and the
// weighted sum of the values, each value row added in position order and skipped where its
// weight is zero, as gonum's Sgemm does. scores has room for 2 x keys values.
func (a attender) row(b blockRows, kv kvRows, g, h, i int, split bool, scores []float32) {
	d := a.d
	q := b.q[i*b.ldq+h*d:][:d]
	lim := b.first + i + 1
	sc, dots := scores[:lim], scores[b.keys:b.keys+lim]
	k := kv.k[g*d:]
	for c := 0; c < d; c += 64 {
		e := d
		if split {
			e = min(c+64, d)
		}
		a.dots(q[c:e], k[c:], kv.ld, dots)
		for j, dot := range dots {
			if c == 0 {
				sc[j] = 0
			}
			sc[j] += a.scale * dot
		}
		if !split {
			break
		}
	}
	causalSoftmax(sc, lim)
	out := b.out[i*b.ldo+h*d:][:d]
	clear(out)
	v := kv.v[g*d:]
	if useAVX && d%8 == 0 {
		axpysAVX(&out[0], d, &sc[0], &v[0], kv.ld, lim)
		return
	}
	for j, p := range sc {
		if p != 0 {
			smallBLAS.Saxpy(d, p, v[j*kv.ld:], 1, out, 1)
		}
	}
}

// dots sets out[j] to gonum's dot product of q and key row j (k[j*ld:], len(q) values): with
// the AVX kernel where its operands allow (the key rows 16-byte aligned, len(q) a multiple of
// 16), else through gonum's Sdot.
func (a attender) dots(q, k []float32, ld int, out []float32) {
	n := len(q)
	if useAVX && n%16 == 0 && ld%4 == 0 && uintptr(unsafe.Pointer(&k[0]))%16 == 0 {
		dotsAVX(&q[0], &k[0], ld, n, &out[0], len(out))
		return
	}
	for j := range out {
		out[j] = smallBLAS.Sdot(n, q, 1, k[j*ld:], 1)
	}
}

// causalSoftmax replaces the scores row with softmax(row[:lim]) (positions < lim are visible) and
// zeros at the masked positions; the sum is taken in float64.
func causalSoftmax(row []float32, lim int) {
	mx := float32(math.Inf(-1))
	for _, x := range row[:lim] {
		if x > mx {
			mx = x
		}
	}
	sum := expShifted(row[:lim], mx)
	inv := float32(1 / sum)
	for j := 0; j < lim; j++ {
		row[j] *= inv
	}
	for j := lim; j < len(row); j++ {
		row[j] = 0
	}
}
