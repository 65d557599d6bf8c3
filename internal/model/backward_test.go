package model

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// mapSource is a tensorSource over generated tensors.
type mapSource map[string]safetensors.Tensor

func (s mapSource) Names() []string {
	var n []string
	for k := range s {
		n = append(n, k)
	}
	return n
}

func (s mapSource) Info(name string) (safetensors.TensorInfo, bool) {
	t, ok := s[name]
	return safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: t.Shape}, ok
}

func (s mapSource) Float32(name string) ([]float32, error) { return s[name].Data, nil }

// randomBlockModel builds a one-layer Llama with biases on every linear module, RMSNorm weights
// away from 1, grouped-query attention (4 heads, 2 key/value heads of 8) and random weights.
func randomBlockModel(t *testing.T, seed uint64) *Model {
	t.Helper()
	const hidden, inter, heads, kv, hd, vocab = 16, 24, 4, 2, 8, 11
	cfgJSON, err := json.Marshal(map[string]any{
		"model_type": "llama", "hidden_act": "silu", "hidden_size": hidden, "num_hidden_layers": 1,
		"intermediate_size": inter, "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": hd,
		"vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true,
		"attention_bias": true, "mlp_bias": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(cfgJSON, "random block")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	src := mapSource{}
	add := func(name string, sd, mean float64, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(mean + sd*rng.NormFloat64())
		}
		src[name] = safetensors.Tensor{Name: name, Shape: shape, Data: data}
	}
	add("model.embed_tokens.weight", 1, 0, vocab, hidden)
	add("model.norm.weight", 0.1, 1, hidden)
	p := "model.layers.0."
	add(p+"input_layernorm.weight", 0.3, 1, hidden)
	add(p+"post_attention_layernorm.weight", 0.3, 1, hidden)
	for _, s := range []struct {
		name    string
		out, in int
	}{
		{"self_attn.q_proj", heads * hd, hidden}, {"self_attn.k_proj", kv * hd, hidden}, {"self_attn.v_proj", kv * hd, hidden},
		{"self_attn.o_proj", hidden, heads * hd}, {"mlp.gate_proj", inter, hidden}, {"mlp.up_proj", inter, hidden},
		{"mlp.down_proj", hidden, inter},
	} {
		add(p+s.name+".weight", 1/math.Sqrt(float64(s.in)), 0, s.out, s.in)
		add(p+s.name+".bias", 0.1, 0, s.out)
	}
	m, err := build(cfg, "random block", src, FullRange(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// randomLoRAs gives every module of layer 0 a LoRA of rank 3 and scale 1.5, and q_proj a second
// one of rank 2 and scale 0.5.
func randomLoRAs(m *Model, seed uint64) map[string][]LoRA {
	rng := rand.New(rand.NewPCG(seed, 2))
	rnd := func(n int, sd float64) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(sd * rng.NormFloat64())
		}
		return d
	}
	out := map[string][]LoRA{}
	for _, l := range m.Layers[0].Linears() {
		out[l.Name] = []LoRA{{R: 3, A: rnd(3*l.In, 0.3), B: rnd(l.Out*3, 0.3), Scale: 1.5}}
	}
	q := m.Layers[0].Q
	out[q.Name] = append(out[q.Name], LoRA{R: 2, A: rnd(2*q.In, 0.3), B: rnd(q.Out*2, 0.3), Scale: 0.5})
	return out
}

// refLinear is a linear module in float64 for the reference block.
type refLinear struct {
	out, in int
	w, bias []float64
	loras   []refLoRA
}

type refLoRA struct {
	r     int
	a, b  []float64
	scale float64
}

func to64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func newRefLinear(l *Linear) *refLinear {
	r := &refLinear{out: l.Out, in: l.In, w: to64(l.W.Float32()), bias: to64(l.Bias)}
	for _, u := range l.LoRAs {
		r.loras = append(r.loras, refLoRA{r: u.R, a: to64(u.A), b: to64(u.B), scale: float64(u.Scale)})
	}
	return r
}

// apply returns x W^T + bias + sum scale (x A^T) B^T for rows rows.
func (r *refLinear) apply(x []float64, rows int) []float64 {
	y := make([]float64, rows*r.out)
	for p := 0; p < rows; p++ {
		xr := x[p*r.in : (p+1)*r.in]
		for o := 0; o < r.out; o++ {
			s := r.bias[o]
			for i, v := range xr {
				s += v * r.w[o*r.in+i]
			}
			y[p*r.out+o] = s
		}
		for _, u := range r.loras {
			for k := 0; k < u.r; k++ {
				var t float64
				for i, v := range xr {
					t += v * u.a[k*r.in+i]
				}
				for o := 0; o < r.out; o++ {
					y[p*r.out+o] += u.scale * t * u.b[o*u.r+k]
				}
			}
		}
	}
	return y
}

// refBlock is an independent float64 decoder layer (transformers' LlamaDecoderLayer written out),
// for whole sequences packed row after row.
type refBlock struct {
	cfg          Config
	norm1, norm2 []float64
	lin          []*refLinear // q, k, v, o, gate, up, down
}

func newRefBlock(m *Model, l int) *refBlock {
	L := m.Layers[l]
	b := &refBlock{cfg: m.Config, norm1: to64(L.InputNorm), norm2: to64(L.PostNorm)}
	for _, li := range L.Linears() {
		b.lin = append(b.lin, newRefLinear(li))
	}
	return b
}

func (b *refBlock) rms(x, w []float64) []float64 {
	h := b.cfg.Hidden
	out := make([]float64, len(x))
	for p := 0; p < len(x)/h; p++ {
		var ss float64
		for _, v := range x[p*h : (p+1)*h] {
			ss += v * v
		}
		r := 1 / math.Sqrt(ss/float64(h)+b.cfg.RMSNormEps)
		for j := 0; j < h; j++ {
			out[p*h+j] = w[j] * x[p*h+j] * r
		}
	}
	return out
}

// rope rotates heads of width hd at position pos: x*cos + rotate_half(x)*sin.
func (b *refBlock) rope(x []float64, row, heads, pos int) {
	hd := b.cfg.HeadDim
	half := hd / 2
	for h := 0; h < heads; h++ {
		v := x[(row*heads+h)*hd : (row*heads+h+1)*hd]
		for i := 0; i < half; i++ {
			ang := float64(pos) / math.Pow(b.cfg.RopeTheta, float64(2*i)/float64(hd))
			c, s := math.Cos(ang), math.Sin(ang)
			a, bb := v[i], v[i+half]
			v[i], v[i+half] = a*c-bb*s, bb*c+a*s
		}
	}
}

func (b *refBlock) forward(x []float64, lens []int) []float64 {
	c := b.cfg
	H, hd := c.Hidden, c.HeadDim
	rows := len(x) / H
	xn := b.rms(x, b.norm1)
	q, k, v := b.lin[0].apply(xn, rows), b.lin[1].apply(xn, rows), b.lin[2].apply(xn, rows)
	off := 0
	for _, n := range lens {
		for i := 0; i < n; i++ {
			b.rope(q, off+i, c.Heads, i)
			b.rope(k, off+i, c.KVHeads, i)
		}
		off += n
	}
	ao := make([]float64, rows*c.Heads*hd)
	off = 0
	for _, n := range lens {
		for h := 0; h < c.Heads; h++ {
			kv := h / (c.Heads / c.KVHeads)
			for i := 0; i < n; i++ {
				s := make([]float64, i+1)
				mx := math.Inf(-1)
				for j := 0; j <= i; j++ {
					for e := 0; e < hd; e++ {
						s[j] += q[((off+i)*c.Heads+h)*hd+e] * k[((off+j)*c.KVHeads+kv)*hd+e]
					}
					s[j] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, s[j])
				}
				var sum float64
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					sum += s[j]
				}
				for j := range s {
					for e := 0; e < hd; e++ {
						ao[((off+i)*c.Heads+h)*hd+e] += s[j] / sum * v[((off+j)*c.KVHeads+kv)*hd+e]
					}
				}
			}
		}
		off += n
	}
	mid := b.lin[3].apply(ao, rows)
	for i := range mid {
		mid[i] += x[i]
	}
	xn2 := b.rms(mid, b.norm2)
	g, u := b.lin[4].apply(xn2, rows), b.lin[5].apply(xn2, rows)
	for i, gv := range g {
		g[i] = gv / (1 + math.Exp(-gv)) * u[i]
	}
	out := b.lin[6].apply(g, rows)
	for i := range out {
		out[i] += mid[i]
	}
	return out
}

// TestLayerBackwardFiniteDifferences checks the float32 backward pass of a random block (biases,
// non-unit norms, GQA, two packed sequences, two LoRAs on q_proj, scales != 1) against central
// finite differences of an independent float64 forward, for every LoRA factor entry, with the
// linear loss sum(C * out) (so dOut = C). It first checks the engine's forward against the same
// float64 forward.
func TestLayerBackwardFiniteDifferences(t *testing.T) {
	base := randomBlockModel(t, 3)
	m, err := base.WithLoRA(randomLoRAs(base, 4), false)
	if err != nil {
		t.Fatal(err)
	}
	lens := []int{5, 3}
	seqs := [][]int{{1, 4, 2, 9, 0}, {7, 7, 3}}
	st, err := m.Start(seqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range st.H { // an input away from the embedding table, as a deeper layer sees
		st.H[i] += float32(0.5 * math.Sin(float64(i)))
	}
	tp, err := m.ForwardLayer(0, st)
	if err != nil {
		t.Fatal(err)
	}
	ref := newRefBlock(m, 0)
	x := to64(st.H)
	want := ref.forward(x, lens)
	if e := relDiff(to64(tp.Out), want); e > 1e-6 {
		t.Fatalf("ForwardLayer output differs from the float64 block by %.3g", e)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	cw := make([]float64, len(want))
	dOut := make([]float32, len(want))
	for i := range cw {
		dOut[i] = float32(rng.NormFloat64())
		cw[i] = float64(dOut[i])
	}
	grads, err := tp.Backward(dOut)
	if err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		var s float64
		for i, v := range ref.forward(x, lens) {
			s += cw[i] * v
		}
		return s
	}
	names := []string{"q", "k", "v", "o", "gate", "up", "down"}
	for i, rl := range ref.lin {
		if len(grads[i]) != len(rl.loras) {
			t.Fatalf("%s: %d gradients for %d LoRAs", names[i], len(grads[i]), len(rl.loras))
		}
		for j := range rl.loras {
			for _, f := range []struct {
				what string
				got  []float32
				p    []float64
			}{{"A", grads[i][j].A, rl.loras[j].a}, {"B", grads[i][j].B, rl.loras[j].b}} {
				e := relDiff(to64(f.got), centralDiff(loss, f.p, 1e-5))
				t.Logf("%s LoRA %d d%s: rel err %.2e vs finite differences", names[i], j, f.what, e)
				if !(e <= 5e-6) {
					t.Errorf("%s LoRA %d: gradient of %s differs from finite differences by %.3g", names[i], j, f.what, e)
				}
			}
		}
	}
}

// centralDiff returns (loss(p + h e_i) - loss(p - h e_i)) / 2h for every entry i of p, which loss
// reads.
func centralDiff(loss func() float64, p []float64, h float64) []float64 {
	g := make([]float64, len(p))
	for i := range p {
		v := p[i]
		p[i] = v + h
		lp := loss()
		p[i] = v - h
		lm := loss()
		p[i] = v
		g[i] = (lp - lm) / (2 * h)
	}
	return g
}

// relDiff is ||got - want|| / ||want||.
func relDiff(got, want []float64) float64 {
	var d, n float64
	for i := range want {
		d += (got[i] - want[i]) * (got[i] - want[i])
		n += want[i] * want[i]
	}
	return math.Sqrt(d / n)
}

func TestForwardLayerMatchesRunLayer(t *testing.T) {
	base := randomBlockModel(t, 8)
	m, err := base.WithLoRA(randomLoRAs(base, 9), false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Start([][]int{{1, 2, 3, 4}, {5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := m.ForwardLayer(0, st)
	if err != nil {
		t.Fatal(err)
	}
	mid, out := m.ObserveResiduals(0, st, nil)
	run := st.Clone()
	m.RunLayer(0, run, nil)
	for i := range run.H {
		if tp.Out[i] != run.H[i] || out[i] != run.H[i] {
			t.Fatalf("row value %d: ForwardLayer %v, ObserveResiduals %v, RunLayer %v (want bit-identical)", i, tp.Out[i], out[i], run.H[i])
		}
	}
	// mid = h + o_proj(attention output), with the attention output as ObserveLayer reports it.
	var ao []float32
	m.ObserveLayer(0, st, func(_ int, p Point, x []float32, _ int) {
		if p == PointO {
			ao = append([]float32(nil), x...)
		}
	}, PointO)
	wantMid := append([]float32(nil), st.H...)
	linearInto(m.Layers[0].O, ao, st.Rows, wantMid, 1)
	for i := range wantMid {
		if mid[i] != wantMid[i] {
			t.Fatalf("mid residual value %d: %v, want %v", i, mid[i], wantMid[i])
		}
	}
}

func TestForwardLayerRefusesPartialSequences(t *testing.T) {
	m := randomBlockModel(t, 10)
	st, err := m.Start([][]int{{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		st   *State
		l    int
	}{
		{"layer", st, 1},
		{"start position", func() *State { c := st.Clone(); c.Start = []int{2}; return c }(), 0},
		{"cache", func() *State { c := st.Clone(); c.cache, c.slots = NewCache(1, 1), []int{0}; return c }(), 0},
		{"rows", func() *State { c := st.Clone(); c.H = c.H[:5]; return c }(), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := m.ForwardLayer(tc.l, tc.st); err == nil {
				t.Fatal("ForwardLayer accepted it")
			}
		})
	}
	tp, err := m.ForwardLayer(0, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Backward(make([]float32, 3)); err == nil {
		t.Fatal("Backward accepted a dOut of the wrong length")
	}

}
