package model

import (
	"fmt"
	"math"
	"strconv"
	"strings"
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
	if m.Embed.Len() == 0 {
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
			m.Embed.row(st.H[r*c.Hidden:(r+1)*c.Hidden], tok)
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
// A non-nil tp receives the intermediate values in buffers of their own (and costs one copy of
// the mid residual, of q, k and v and of the gate and up projections); without one, the layer's
// scratch comes from a reused workspace.
func (m *Model) layer(l int, st *State, obs Observer, until Point, tp *tape) []float32 {
	c := m.Config
	L := m.Layers[l]
	if L == nil {
		panic(fmt.Sprintf("model: layer %d is outside the loaded range [%d, %d)", l, m.Range.Lo, m.Range.Hi))
	}
	var ws *workspace
	if tp == nil {
		ws = workspaces.Get().(*workspace)
		defer workspaces.Put(ws)
	}
	T := st.Rows
	xn := ws.get(bufNorm, T*c.Hidden)
	rmsNorm(xn, st.H, L.InputNorm, c.Hidden, c.RMSNormEps)
	if obs != nil {
		obs(l, PointAttn, xn, T)
	}
	if until == PointAttn {
		return nil
	}
	ao := m.selfAttention(l, st, xn, ws, tp)
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
		tp.xn1, tp.ao = xn, ao
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
	act := m.gatedMLP(l, xn, T, ws, tp)
	if obs != nil {
		obs(l, PointDown, act, T)
	}
	if until == PointDown {
		return nil
	}
	if tp != nil {
		tp.xn2, tp.act = xn, act
	}
	linearInto(L.Down, act, T, h, 1)
	return h
}

// selfAttention projects xn to queries, keys and values (one fused product, rows x (heads +
// 2 kv_heads) * head_dim), rotates the queries and keys and returns the attention output.
func (m *Model) selfAttention(l int, st *State, xn []float32, ws *workspace, tp *tape) []float32 {
	c := m.Config
	L := m.Layers[l]
	T := st.Rows
	qw, kw := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	ld := qw + 2*kw
	qkvs := ws.get(bufQKV, T*ld)
	project([]*Linear{L.Q, L.K, L.V}, xn, T, qkvs, ld, 0)
	applyRope(qkvs, ld, st, c.Heads, c.HeadDim)
	applyRope(qkvs[qw:], ld, st, c.KVHeads, c.HeadDim)
	ao := ws.get(bufAttn, T*qw)
	in := qkv{q: qkvs, k: qkvs[qw:], v: qkvs[qw+kw:], ldq: ld, ldkv: ld}
	if qw%4 != 0 || kw%4 != 0 {
		// gonum's dot product sums in an order that depends on where the key row sits relative
		// to 16 bytes: keep the keys where separate projections put them.
		in.k, in.v, in.ldkv = columns(qkvs, ld, T, qw, kw), columns(qkvs, ld, T, qw+kw, kw), kw
	}
	m.attend(l, st, in, ao)
	if tp != nil {
		tp.q, tp.k, tp.v = columns(qkvs, ld, T, 0, qw), columns(qkvs, ld, T, qw, kw), columns(qkvs, ld, T, qw+kw, kw)
	}
	return ao
}

// gatedMLP projects xn to gate and up (one fused product, rows x 2 intermediate) and returns
// silu(gate) * up, the input of down_proj.
func (m *Model) gatedMLP(l int, xn []float32, T int, ws *workspace, tp *tape) []float32 {
	L := m.Layers[l]
	I := m.Config.Intermediate
	gu := ws.get(bufGateUp, T*2*I)
	project([]*Linear{L.Gate, L.Up}, xn, T, gu, 2*I, 0)
	if tp != nil {
		tp.gate, tp.up = columns(gu, 2*I, T, 0, I), columns(gu, 2*I, T, I, I)
	}
	act := ws.get(bufAct, T*I)
	parallelRows(T, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			siluMul(act[r*I:(r+1)*I], gu[r*2*I:r*2*I+I], gu[r*2*I+I:r*2*I+2*I])
		}
	})
	return act
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

// rmsNorm writes w * x / sqrt(mean(x^2) + eps) row by row (the mean taken in float64).
func rmsNorm(dst, x, w []float32, width int, eps float64) {
	parallelRows(len(x)/width, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
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
	})
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

// applyRope rotates each head of x (rows of heads*headDim values, row stride ld) in place the
// way transformers' rotate_half does: pairs (i, i + headDim/2).
func applyRope(x []float32, ld int, st *State, heads, headDim int) {
	half := headDim / 2
	parallelRows(st.Rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			cs := st.cos[r*half : (r+1)*half]
			sn := st.sin[r*half : (r+1)*half]
			for h := 0; h < heads; h++ {
				v := x[r*ld+h*headDim : r*ld+(h+1)*headDim]
				for i := 0; i < half; i++ {
					a, b := v[i], v[i+half]
					v[i] = a*cs[i] - b*sn[i]
					v[i+half] = b*cs[i] + a*sn[i]
				}
			}
		}
	})
}
