package model

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/gonum"
)

// Point names a place inside a decoder layer where linear-module inputs are observed. Modules that
// read the same input share a point: q/k/v read PointAttn, gate/up read PointMLP.
type Point int

// The observation points of a decoder layer, in the order the layer computes them.
const (
	// PointAttn is the input of q_proj, k_proj and v_proj (after input_layernorm).
	PointAttn Point = iota
	// PointO is the input of o_proj (the attention output).
	PointO
	// PointMLP is the input of gate_proj and up_proj (after post_attention_layernorm).
	PointMLP
	// PointDown is the input of down_proj (silu(gate) * up).
	PointDown
	// NumPoints is the number of points per layer.
	NumPoints
)

var pointModules = [NumPoints][]string{
	{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
	{"self_attn.o_proj"},
	{"mlp.gate_proj", "mlp.up_proj"},
	{"mlp.down_proj"},
}

// String returns the point's name.
func (p Point) String() string {
	switch p {
	case PointAttn:
		return "attn_in"
	case PointO:
		return "o_in"
	case PointMLP:
		return "mlp_in"
	case PointDown:
		return "down_in"
	}
	return "point(" + strconv.Itoa(int(p)) + ")"
}

// Modules returns the full names of the linear modules of layer l that read point p.
func (p Point) Modules(l int) []string {
	out := make([]string, 0, 3)
	for _, s := range pointModules[p] {
		out = append(out, fmt.Sprintf("model.layers.%d.%s", l, s))
	}
	return out
}

// PointOf maps a module name such as "model.layers.3.mlp.up_proj" to its layer and point.
func PointOf(module string) (layer int, p Point, ok bool) {
	rest, found := strings.CutPrefix(module, "model.layers.")
	if !found {
		return 0, 0, false
	}
	num, leaf, found := strings.Cut(rest, ".")
	if !found {
		return 0, 0, false
	}
	l, err := strconv.Atoi(num)
	if err != nil || l < 0 {
		return 0, 0, false
	}
	for pi, mods := range pointModules {
		for _, s := range mods {
			if s == leaf {
				return l, Point(pi), true
			}
		}
	}
	return 0, 0, false
}

// Observer receives the input rows of the modules at point p of layer l: x holds rows x width
// float32 values, one row per real token of the batch, in batch order. x is only valid during the
// call.
type Observer func(l int, p Point, x []float32, rows int)

// State is a batch of sequences on its way through the model: the residual stream of every new
// token, packed without padding, plus (when generating) the key/value cache. A State is tied to a
// model configuration, not to particular weights: it may be advanced by any variant of the model,
// and it crosses layer shards in its wire form (Export, Resume).
type State struct {
	// Lens holds the number of new tokens of each sequence in this step.
	Lens []int
	// Offsets holds the first row of each sequence in H.
	Offsets []int
	// Start holds the position of each sequence's first new token.
	Start []int
	// H is rows x hidden: the residual stream entering the next layer.
	H []float32
	// Rows is the total number of token rows.
	Rows int

	hidden   int
	cos, sin []float32 // rows x headDim/2
	cache    *Cache
	slots    []int // cache slot of each sequence (with a cache)
}

// Clone returns a deep copy of the residual stream (the key/value cache is shared).
func (s *State) Clone() *State {
	c := *s
	c.H = append([]float32(nil), s.H...)
	return &c
}

// Start embeds the token sequences as a new State (positions start at 0, no cache).
func (m *Model) Start(seqs [][]int) (*State, error) {
	return m.EmbedTokens(seqs, nil, nil, nil)
}

// EmbedTokens embeds one step of token sequences: sequence i's first token is at position start[i] (all
// 0 when start is nil). With a cache, slots[i] names sequence i's slot in it, and attention sees the
// slot's cached keys and values before the new ones. The model must hold the embeddings.
func (m *Model) EmbedTokens(seqs [][]int, start []int, cache *Cache, slots []int) (*State, error) {
	c := m.Config
	if m.Embed == nil {
		return nil, fmt.Errorf("%w: model %s holds layers [%d, %d) without the embeddings", ErrInvalid, m.Dir, m.Range.Lo, m.Range.Hi)
	}
	lens := make([]int, len(seqs))
	for i, s := range seqs {
		lens[i] = len(s)
	}
	st, err := m.newState(lens, start, cache, slots)
	if err != nil {
		return nil, err
	}
	st.H = make([]float32, st.Rows*c.Hidden)
	for i, s := range seqs {
		for j, tok := range s {
			if tok < 0 || tok >= c.Vocab {
				return nil, fmt.Errorf("%w: sequence %d, position %d: token id %d is outside the vocabulary of %d", ErrInvalid, i, j, tok, c.Vocab)
			}
			r := st.Offsets[i] + j
			copy(st.H[r*c.Hidden:(r+1)*c.Hidden], m.Embed[tok*c.Hidden:(tok+1)*c.Hidden])
		}
	}
	return st, nil
}

// newState lays out a State for sequences of the given lengths and fills its rotary tables; H is
// left nil for the caller.
func (m *Model) newState(lens, start []int, cache *Cache, slots []int) (*State, error) {
	c := m.Config
	if start != nil && len(start) != len(lens) {
		return nil, fmt.Errorf("%w: %d start positions for %d sequences", ErrInvalid, len(start), len(lens))
	}
	if cache != nil && len(slots) != len(lens) {
		return nil, fmt.Errorf("%w: %d cache slots for %d sequences", ErrInvalid, len(slots), len(lens))
	}
	st := &State{hidden: c.Hidden, cache: cache}
	if cache != nil {
		st.slots = append([]int(nil), slots...)
		for i, sl := range slots {
			if sl < 0 || sl >= cache.slots {
				return nil, fmt.Errorf("%w: sequence %d: cache slot %d outside the cache's %d", ErrInvalid, i, sl, cache.slots)
			}
		}
	}
	for i, n := range lens {
		if n <= 0 {
			return nil, fmt.Errorf("%w: sequence %d is empty", ErrInvalid, i)
		}
		p := 0
		if start != nil {
			p = start[i]
		}
		if p < 0 {
			return nil, fmt.Errorf("%w: sequence %d starts at position %d", ErrInvalid, i, p)
		}
		if limit := c.MaxLength(); p+n > limit {
			return nil, fmt.Errorf("%w: sequence %d needs %d positions, more than the model's max_position_embeddings of %d", ErrInvalid, i, p+n, limit)
		}
		st.Offsets = append(st.Offsets, st.Rows)
		st.Lens = append(st.Lens, n)
		st.Start = append(st.Start, p)
		st.Rows += n
	}
	half := c.HeadDim / 2
	st.cos = make([]float32, st.Rows*half)
	st.sin = make([]float32, st.Rows*half)
	for i := range st.Lens {
		for j := 0; j < st.Lens[i]; j++ {
			r := st.Offsets[i] + j
			m.rope.fill(st.cos[r*half:(r+1)*half], st.sin[r*half:(r+1)*half], st.Start[i]+j)
		}
	}
	return st, nil
}

// RunLayer advances st through decoder layer l, calling obs (if not nil) at each point.
func (m *Model) RunLayer(l int, st *State, obs Observer) {
	st.H = m.layer(l, st, obs, NumPoints, nil)
}

// ObserveLayer runs layer l on st up to and including point until, calling obs at each point
// reached, and leaves st unchanged.
func (m *Model) ObserveLayer(l int, st *State, obs Observer, until Point) {
	m.layer(l, st, obs, until, nil)
}

// ObserveResiduals runs the whole of layer l on st, calling obs (if not nil) at each point, and
// returns the residual stream after the attention block, mid = h + o_proj(attention) (h^{l,mid}),
// and the layer's output out (h^{l+1}), both rows x hidden. st is unchanged; setting st.H = out
// advances it exactly as RunLayer does.
func (m *Model) ObserveResiduals(l int, st *State, obs Observer) (mid, out []float32) {
	var tp tape
	out = m.layer(l, st, obs, NumPoints, &tp)
	return tp.mid, out
}

// tape records the intermediate values of one layer's forward pass (what its backward pass and
// ObserveResiduals need). Every slice is rows x width, packed like State.H.
type tape struct {
	xn1      []float32 // input_layernorm(h): the input of q, k, v
	q, k, v  []float32 // projections; q and k after the rotary embedding
	ao       []float32 // attention output: the input of o_proj
	mid      []float32 // h + o_proj(ao)
	xn2      []float32 // post_attention_layernorm(mid): the input of gate, up
	gate, up []float32 // MLP projections (gate before the SiLU)
	act      []float32 // silu(gate) * up: the input of down_proj
}

// layer computes decoder layer l and returns the new residual stream (nil when stopped early).
// A non-nil tp receives the intermediate values (and costs one copy of the mid residual and of the
// gate projection).
func (m *Model) layer(l int, st *State, obs Observer, until Point, tp *tape) []float32 {
	c := m.Config
	L := m.Layers[l]
	if L == nil {
		panic(fmt.Sprintf("model: layer %d is outside the loaded range [%d, %d)", l, m.Range.Lo, m.Range.Hi))
	}
	T := st.Rows
	xn := make([]float32, T*c.Hidden)
	rmsNorm(xn, st.H, L.InputNorm, c.Hidden, c.RMSNormEps)
	if obs != nil {
		obs(l, PointAttn, xn, T)
	}
	if until == PointAttn {
		return nil
	}
	q := linear(L.Q, xn, T)
	k := linear(L.K, xn, T)
	v := linear(L.V, xn, T)
	applyRope(q, st, c.Heads, c.HeadDim)
	applyRope(k, st, c.KVHeads, c.HeadDim)
	ao := m.attention(l, st, q, k, v)
	if obs != nil {
		obs(l, PointO, ao, T)
	}
	if until == PointO {
		return nil
	}
	// Residual connections are accumulated by the products themselves (beta = 1).
	h := append([]float32(nil), st.H...)
	linearInto(L.O, ao, T, h, 1)
	if tp != nil {
		tp.xn1, tp.q, tp.k, tp.v, tp.ao = xn, q, k, v, ao
		tp.mid = append([]float32(nil), h...)
		xn = make([]float32, T*c.Hidden)
	}
	rmsNorm(xn, h, L.PostNorm, c.Hidden, c.RMSNormEps)
	if obs != nil {
		obs(l, PointMLP, xn, T)
	}
	if until == PointMLP {
		return nil
	}
	g := linear(L.Gate, xn, T)
	u := linear(L.Up, xn, T)
	if tp != nil {
		tp.xn2, tp.gate, tp.up = xn, append([]float32(nil), g...), u
	}
	for i, gv := range g {
		g[i] = float32(float64(gv)/(1+math.Exp(-float64(gv)))) * u[i]
	}
	if obs != nil {
		obs(l, PointDown, g, T)
	}
	if until == PointDown {
		return nil
	}
	if tp != nil {
		tp.act = g
	}
	linearInto(L.Down, g, T, h, 1)
	return h
}

// FinalNorm returns the final RMSNorm of the residual stream, rows x hidden.
func (m *Model) FinalNorm(st *State) []float32 {
	out := make([]float32, st.Rows*m.Config.Hidden)
	rmsNorm(out, st.H, m.Norm, m.Config.Hidden, m.Config.RMSNormEps)
	return out
}

// Logits returns lm_head(final_norm(h)) for the given rows of st (all rows when rows is nil),
// len(rows) x vocab.
func (m *Model) Logits(st *State, rows []int) []float32 {
	c := m.Config
	if rows == nil {
		rows = make([]int, st.Rows)
		for i := range rows {
			rows[i] = i
		}
	}
	x := make([]float32, len(rows)*c.Hidden)
	for i, r := range rows {
		rmsNorm(x[i*c.Hidden:(i+1)*c.Hidden], st.H[r*c.Hidden:(r+1)*c.Hidden], m.Norm, c.Hidden, c.RMSNormEps)
	}
	return linear(m.LMHead, x, len(rows))
}

// ForwardOptions selects what Forward records.
type ForwardOptions struct {
	// Observe, if set, sees the inputs of every linear module.
	Observe Observer
	// LayerInputs records the residual stream entering every layer.
	LayerInputs bool
	// FinalNorm records the output of the final RMSNorm.
	FinalNorm bool
	// Logits records the logits of every token.
	Logits bool
}

// Output is what Forward recorded. Every matrix is packed: the rows of sequence i start at
// Offsets[i].
type Output struct {
	// Offsets holds the first row of each sequence.
	Offsets []int
	// LayerInputs[k] is rows x hidden: the residual stream entering layer k.
	LayerInputs [][]float32
	// FinalNorm is rows x hidden.
	FinalNorm []float32
	// Logits is rows x vocab.
	Logits []float32
}

// Forward runs full sequences through the whole model.
func (m *Model) Forward(seqs [][]int, opt ForwardOptions) (*Output, error) {
	st, err := m.Start(seqs)
	if err != nil {
		return nil, err
	}
	out := &Output{Offsets: st.Offsets}
	if err := m.requireFull(); err != nil {
		return nil, err
	}
	for l := range m.Layers {
		if opt.LayerInputs {
			out.LayerInputs = append(out.LayerInputs, append([]float32(nil), st.H...))
		}
		m.RunLayer(l, st, opt.Observe)
	}
	if opt.FinalNorm {
		out.FinalNorm = m.FinalNorm(st)
	}
	if opt.Logits {
		out.Logits = m.Logits(st, nil)
	}
	return out, nil
}

// linear computes x W^T + bias + sum Scale (x A^T) B^T for rows rows of x.
func linear(l *Linear, x []float32, rows int) []float32 {
	y := make([]float32, rows*l.Out)
	linearInto(l, x, rows, y, 0)
	return y
}

// linearInto computes y = beta*y + x W^T + bias + sum Scale (x A^T) B^T (beta 0 or 1).
func linearInto(l *Linear, x []float32, rows int, y []float32, beta float32) {
	X := blas32.General{Rows: rows, Cols: l.In, Stride: l.In, Data: x}
	Y := blas32.General{Rows: rows, Cols: l.Out, Stride: l.Out, Data: y}
	blas32.Gemm(blas.NoTrans, blas.Trans, 1, X, blas32.General{Rows: l.Out, Cols: l.In, Stride: l.In, Data: l.W}, beta, Y)
	for _, u := range l.LoRAs {
		t := make([]float32, rows*u.R)
		Tm := blas32.General{Rows: rows, Cols: u.R, Stride: u.R, Data: t}
		blas32.Gemm(blas.NoTrans, blas.Trans, 1, X, blas32.General{Rows: u.R, Cols: l.In, Stride: l.In, Data: u.A}, 0, Tm)
		blas32.Gemm(blas.NoTrans, blas.Trans, u.Scale, Tm, blas32.General{Rows: l.Out, Cols: u.R, Stride: u.R, Data: u.B}, 1, Y)
	}
	if l.Bias != nil {
		for r := 0; r < rows; r++ {
			yr := y[r*l.Out : (r+1)*l.Out]
			for j, b := range l.Bias {
				yr[j] += b
			}
		}
	}
}

// rmsNorm writes w * x / sqrt(mean(x^2) + eps) row by row (the mean taken in float64).
func rmsNorm(dst, x, w []float32, width int, eps float64) {
	rows := len(x) / width
	for r := 0; r < rows; r++ {
		xr := x[r*width : (r+1)*width]
		var ss float64
		for _, v := range xr {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss/float64(width)+eps))
		dr := dst[r*width : (r+1)*width]
		for j, v := range xr {
			dr[j] = w[j] * (v * inv)
		}
	}
}

// rope holds the inverse frequencies of the rotary embedding.
type rope struct {
	invFreq []float64
}

func newRope(headDim int, theta float64) *rope {
	r := &rope{invFreq: make([]float64, headDim/2)}
	for i := range r.invFreq {
		r.invFreq[i] = 1 / math.Pow(theta, float64(2*i)/float64(headDim))
	}
	return r
}

func (r *rope) fill(cos, sin []float32, pos int) {
	for i, f := range r.invFreq {
		s, c := math.Sincos(float64(pos) * f)
		cos[i], sin[i] = float32(c), float32(s)
	}
}

// applyRope rotates each head of x (rows x heads*headDim) in place the way transformers'
// rotate_half does: pairs (i, i + headDim/2).
func applyRope(x []float32, st *State, heads, headDim int) {
	half := headDim / 2
	width := heads * headDim
	for r := 0; r < st.Rows; r++ {
		cs := st.cos[r*half : (r+1)*half]
		sn := st.sin[r*half : (r+1)*half]
		for h := 0; h < heads; h++ {
			v := x[r*width+h*headDim : r*width+(h+1)*headDim]
			for i := 0; i < half; i++ {
				a, b := v[i], v[i+half]
				v[i] = a*cs[i] - b*sn[i]
				v[i+half] = b*cs[i] + a*sn[i]
			}
		}
	}
}

// smallBLAS runs the attention's per-head products (see attention).
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

// attention computes causal grouped-query attention for every sequence of st and returns
// rows x heads*headDim.
func (m *Model) attention(l int, st *State, q, k, v []float32) []float32 {
	c := m.Config
	d := c.HeadDim
	qw, kw := c.Heads*d, c.KVHeads*d
	out := make([]float32, st.Rows*qw)
	// Keys and values each sequence attends to: its cached past plus its new rows.
	keys := make([][]float32, len(st.Lens))
	vals := make([][]float32, len(st.Lens))
	for s := range st.Lens {
		o, n := st.Offsets[s], st.Lens[s]
		kn, vn := k[o*kw:(o+n)*kw], v[o*kw:(o+n)*kw]
		if st.cache != nil {
			sl := st.slots[s]
			st.cache.k[l][sl] = append(st.cache.k[l][sl], kn...)
			st.cache.v[l][sl] = append(st.cache.v[l][sl], vn...)
			keys[s], vals[s] = st.cache.k[l][sl], st.cache.v[l][sl]
		} else {
			keys[s], vals[s] = kn, vn
		}
	}
	group := c.Heads / c.KVHeads
	scale := float32(1 / math.Sqrt(float64(d)))
	// One job is a block of at most AttentionBlock query rows of one head of one sequence, so
	// the scores held at once are AttentionBlock x L per worker, not L x L.
	type job struct{ s, h, r0 int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	njobs := 0
	for _, n := range st.Lens {
		njobs += c.Heads * ((n + AttentionBlock - 1) / AttentionBlock)
	}
	workers := min(runtime.GOMAXPROCS(0), njobs)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var scores []float32
			for j := range jobs {
				scores = m.attendBlock(st, j.s, j.h/group, j.h, j.r0, q, keys[j.s], vals[j.s], out, scale, scores)
			}
		}()
	}
	for s := range st.Lens {
		for h := 0; h < c.Heads; h++ {
			for r0 := 0; r0 < st.Lens[s]; r0 += AttentionBlock {
				jobs <- job{s, h, r0}
			}
		}
	}
	close(jobs)
	wg.Wait()
	return out
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
	for j := lim; j < len(row); j++ {
		row[j] = 0
	}
}

// AttentionBlock is the number of query rows whose attention scores are computed together: the
// scores of one block take AttentionBlock x L float32 per worker for a sequence of L positions.
// It is a multiple of gonum's 64-wide GEMM tile of at least 192, so a sequence longer than a
// block gives bit for bit the result of computing all its rows at once (a block then has at least
// four tiles, so gonum takes the same parallel path with the same summation order).
const AttentionBlock = 256

// attendBlock computes causal attention for query rows [r0, r0+AttentionBlock) of head h (key
// and value head kv) of sequence s, writing them into out. scores is scratch space, returned
// for reuse.
func (m *Model) attendBlock(st *State, s, kv, h, r0 int, q, keys, vals, out []float32, scale float32, scores []float32) []float32 {
	c := m.Config
	d := c.HeadDim
	qw, kw := c.Heads*d, c.KVHeads*d
	o, start := st.Offsets[s]+r0, st.Start[s]
	n := min(AttentionBlock, st.Lens[s]-r0)
	L := start + st.Lens[s]
	if cap(scores) < n*L {
		scores = make([]float32, n*L)
	}
	S := blas32.General{Rows: n, Cols: L, Stride: L, Data: scores[:n*L]}
	Q := blas32.General{Rows: n, Cols: d, Stride: qw, Data: q[o*qw+h*d:]}
	K := blas32.General{Rows: L, Cols: d, Stride: kw, Data: keys[kv*d:]}
	V := blas32.General{Rows: L, Cols: d, Stride: kw, Data: vals[kv*d:]}
	// The per-head products are small and already run in parallel across heads: gonum's own
	// kernel avoids a threaded BLAS's per-call overhead here.
	smallBLAS.Sgemm(blas.NoTrans, blas.Trans, n, L, d, scale, Q.Data, Q.Stride, K.Data, K.Stride, 0, S.Data, S.Stride)
	for i := 0; i < n; i++ {
		causalSoftmax(S.Data[i*L:(i+1)*L], start+r0+i+1) // causal: positions < lim are visible
	}
	Out := blas32.General{Rows: n, Cols: d, Stride: qw, Data: out[o*qw+h*d:]}
	smallBLAS.Sgemm(blas.NoTrans, blas.NoTrans, n, d, L, 1, S.Data, S.Stride, V.Data, V.Stride, 0, Out.Data, Out.Stride)
	return scores
}
