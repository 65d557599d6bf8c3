package model

import (
	"fmt"
	"sort"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// LoRA is one low-rank update of a linear module applied unmerged: y += Scale * (x A^T) B^T.
type LoRA struct {
	// R is the rank.
	R int
	// A is R x In, row-major.
	A []float32
	// B is Out x R, row-major.
	B []float32
	// Scale multiplies the update (lora_alpha / r for PEFT adapters).
	Scale float32
}

// Linear is a linear module in nn.Linear's convention: y = x W^T + bias, W is Out x In.
type Linear struct {
	// Name is the module name, e.g. "model.layers.0.self_attn.q_proj".
	Name string
	// Out and In are the output and input widths.
	Out, In int
	// W is Out x In, row-major.
	W []float32
	// Bias has Out entries, or is nil.
	Bias []float32
	// LoRAs are applied unmerged after the base product.
	LoRAs []LoRA
}

// Layer is one decoder layer.
type Layer struct {
	InputNorm, PostNorm []float32
	Q, K, V, O          *Linear
	Gate, Up, Down      *Linear
}

// Linears returns the layer's seven linear modules in dependency order.
func (l *Layer) Linears() []*Linear {
	return []*Linear{l.Q, l.K, l.V, l.O, l.Gate, l.Up, l.Down}
}

// Model is a loaded causal language model. A Model is read-only while it runs, so one Model may
// serve concurrent forward passes; variants with other weights are made with WithLoRA.
type Model struct {
	// Config is the model's configuration.
	Config Config
	// Dir is the directory the model was loaded from.
	Dir string
	// Embed is Vocab x Hidden.
	Embed []float32
	// Norm is the final RMSNorm weight.
	Norm []float32
	// LMHead maps hidden states to logits.
	LMHead *Linear
	// Layers are the decoder layers.
	Layers []*Layer

	linears map[string]*Linear
	rope    *rope
}

// Load reads config.json and the safetensors checkpoint (single file or sharded) in dir. All
// weights are converted to float32.
func Load(dir string) (*Model, error) {
	cfg, err := LoadConfig(configPath(dir))
	if err != nil {
		return nil, err
	}
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	defer ck.Close()
	return build(cfg, dir, ck)
}

// tensorSource is what build reads weights from.
type tensorSource interface {
	Names() []string
	Info(name string) (safetensors.TensorInfo, bool)
	Float32(name string) ([]float32, error)
}

func build(cfg Config, dir string, src tensorSource) (*Model, error) {
	m := &Model{Config: cfg, Dir: dir, linears: map[string]*Linear{}}
	used := map[string]bool{}
	get := func(name string, shape ...int) ([]float32, error) {
		info, ok := src.Info(name)
		if !ok {
			return nil, fmt.Errorf("model %s: %w: tensor %s is missing (expected shape %v)", dir, ErrInvalid, name, shape)
		}
		if !equalShape(info.Shape, shape) {
			return nil, fmt.Errorf("model %s: %w: tensor %s has shape %v, config.json implies %v", dir, ErrInvalid, name, info.Shape, shape)
		}
		used[name] = true
		return src.Float32(name)
	}
	linear := func(name string, out, in int, bias bool) (*Linear, error) {
		w, err := get(name+".weight", out, in)
		if err != nil {
			return nil, err
		}
		l := &Linear{Name: name, Out: out, In: in, W: w}
		if bias {
			if l.Bias, err = get(name+".bias", out); err != nil {
				return nil, err
			}
		}
		m.linears[name] = l
		return l, nil
	}
	c := cfg
	var err error
	if m.Embed, err = get("model.embed_tokens.weight", c.Vocab, c.Hidden); err != nil {
		return nil, err
	}
	if m.Norm, err = get("model.norm.weight", c.Hidden); err != nil {
		return nil, err
	}
	if c.TieWordEmbeddings {
		if _, ok := src.Info("lm_head.weight"); ok {
			used["lm_head.weight"] = true
		}
		m.LMHead = &Linear{Name: "lm_head", Out: c.Vocab, In: c.Hidden, W: m.Embed}
	} else if m.LMHead, err = linear("lm_head", c.Vocab, c.Hidden, false); err != nil {
		return nil, err
	}
	delete(m.linears, "lm_head")
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		l := &Layer{}
		if l.InputNorm, err = get(p+"input_layernorm.weight", c.Hidden); err != nil {
			return nil, err
		}
		if l.PostNorm, err = get(p+"post_attention_layernorm.weight", c.Hidden); err != nil {
			return nil, err
		}
		specs := []struct {
			dst     **Linear
			name    string
			out, in int
			bias    bool
		}{
			{&l.Q, "self_attn.q_proj", q, c.Hidden, c.QKVBias},
			{&l.K, "self_attn.k_proj", kv, c.Hidden, c.QKVBias},
			{&l.V, "self_attn.v_proj", kv, c.Hidden, c.QKVBias},
			{&l.O, "self_attn.o_proj", c.Hidden, q, c.OBias},
			{&l.Gate, "mlp.gate_proj", c.Intermediate, c.Hidden, c.MLPBias},
			{&l.Up, "mlp.up_proj", c.Intermediate, c.Hidden, c.MLPBias},
			{&l.Down, "mlp.down_proj", c.Hidden, c.Intermediate, c.MLPBias},
		}
		for _, s := range specs {
			if *s.dst, err = linear(p+s.name, s.out, s.in, s.bias); err != nil {
				return nil, err
			}
		}
		m.Layers = append(m.Layers, l)
	}
	for _, n := range src.Names() {
		if !used[n] && !ignorable(n) {
			return nil, fmt.Errorf("model %s: %w: tensor %s is not part of a %s model as config.json describes it", dir, ErrUnsupported, n, c.ModelType)
		}
	}
	m.rope = newRope(c.HeadDim, c.RopeTheta)
	return m, nil
}

// ignorable lists checkpoint tensors that carry no weights the engine needs.
func ignorable(name string) bool {
	return len(name) > len("rotary_emb.inv_freq") && name[len(name)-len("rotary_emb.inv_freq"):] == "rotary_emb.inv_freq"
}

func equalShape(a []int, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Linear returns the linear module with the given name, e.g. "model.layers.0.mlp.down_proj".
func (m *Model) Linear(name string) (*Linear, bool) {
	l, ok := m.linears[name]
	return l, ok
}

// LinearShape reports the (out, in) shape of a linear module; it lets an adapter be validated
// against the model.
func (m *Model) LinearShape(name string) (out, in int, ok bool) {
	l, ok := m.linears[name]
	if !ok {
		return 0, 0, false
	}
	return l.Out, l.In, true
}

// LinearNames returns the names of all decoder linear modules (lm_head excluded), sorted.
func (m *Model) LinearNames() []string {
	names := make([]string, 0, len(m.linears))
	for n := range m.linears {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// WithLoRA returns a variant of m in which each named linear module carries the given updates,
// either merged into a copy of its weight (merged=true: W + Scale*B*A) or applied unmerged at run
// time. Modules not named share m's weights. m itself is not changed.
func (m *Model) WithLoRA(updates map[string][]LoRA, merged bool) (*Model, error) {
	for name, ls := range updates {
		l, ok := m.linears[name]
		if !ok {
			return nil, fmt.Errorf("%w: module %s is not a linear module of the model in %s", ErrInvalid, name, m.Dir)
		}
		for _, u := range ls {
			if len(u.A) != u.R*l.In || len(u.B) != l.Out*u.R {
				return nil, fmt.Errorf("%w: module %s: LoRA of rank %d has A of %d and B of %d values, want %dx%d and %dx%d",
					ErrInvalid, name, u.R, len(u.A), len(u.B), u.R, l.In, l.Out, u.R)
			}
		}
	}
	v := *m
	v.linears = make(map[string]*Linear, len(m.linears))
	v.Layers = make([]*Layer, len(m.Layers))
	swap := func(l *Linear) *Linear {
		ls, ok := updates[l.Name]
		if !ok || len(ls) == 0 {
			v.linears[l.Name] = l
			return l
		}
		c := *l
		if merged {
			c.W = append([]float32(nil), l.W...)
			for _, u := range ls {
				addLowRank(c.W, u, l.Out, l.In)
			}
			c.LoRAs = append([]LoRA(nil), l.LoRAs...)
		} else {
			c.LoRAs = append(append([]LoRA(nil), l.LoRAs...), ls...)
		}
		v.linears[l.Name] = &c
		return &c
	}
	for i, l := range m.Layers {
		nl := *l
		nl.Q, nl.K, nl.V, nl.O = swap(l.Q), swap(l.K), swap(l.V), swap(l.O)
		nl.Gate, nl.Up, nl.Down = swap(l.Gate), swap(l.Up), swap(l.Down)
		v.Layers[i] = &nl
	}
	return &v, nil
}

// addLowRank adds Scale*B*A (out x in) to w, accumulating each entry in float64.
func addLowRank(w []float32, u LoRA, out, in int) {
	row := make([]float64, in)
	for o := 0; o < out; o++ {
		for j := range row {
			row[j] = 0
		}
		for k := 0; k < u.R; k++ {
			b := float64(u.B[o*u.R+k]) * float64(u.Scale)
			if b == 0 {
				continue
			}
			a := u.A[k*in : (k+1)*in]
			for j, av := range a {
				row[j] += b * float64(av)
			}
		}
		wr := w[o*in : (o+1)*in]
		for j := range wr {
			wr[j] = float32(float64(wr[j]) + row[j])
		}
	}
}

// Shapes lists the linear modules a configuration implies, without loading any weights: it lets
// adapters be checked against a base model before the heavy load.
type Shapes struct {
	shapes map[string][2]int
}

// ShapesOf returns the linear-module shapes of a model with configuration c.
func ShapesOf(c Config) Shapes {
	s := Shapes{shapes: map[string][2]int{}}
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		s.shapes[p+"self_attn.q_proj"] = [2]int{q, c.Hidden}
		s.shapes[p+"self_attn.k_proj"] = [2]int{kv, c.Hidden}
		s.shapes[p+"self_attn.v_proj"] = [2]int{kv, c.Hidden}
		s.shapes[p+"self_attn.o_proj"] = [2]int{c.Hidden, q}
		s.shapes[p+"mlp.gate_proj"] = [2]int{c.Intermediate, c.Hidden}
		s.shapes[p+"mlp.up_proj"] = [2]int{c.Intermediate, c.Hidden}
		s.shapes[p+"mlp.down_proj"] = [2]int{c.Hidden, c.Intermediate}
	}
	return s
}

// LinearShape reports the (out, in) shape of a linear module.
func (s Shapes) LinearShape(name string) (out, in int, ok bool) {
	sh, ok := s.shapes[name]
	return sh[0], sh[1], ok
}

// LinearNames returns the names of all decoder linear modules, sorted.
func (s Shapes) LinearNames() []string {
	names := make([]string, 0, len(s.shapes))
	for n := range s.shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
