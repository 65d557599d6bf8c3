package model

import (
	"fmt"
	"slices"
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
	// W is Out x In, held at the checkpoint's width.
	W Weight
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
	// Embed is Vocab x Hidden, held at the checkpoint's width (the zero Weight when the range
	// does not hold the embeddings).
	Embed Weight
	// Norm is the final RMSNorm weight.
	Norm []float32
	// LMHead maps hidden states to logits.
	LMHead *Linear
	// Layers are the decoder layers, indexed by layer number; entries outside Range are nil.
	Layers []*Layer
	// Range is the part of the checkpoint this model holds.
	Range Range
	// Read lists the tensors the load read, in order.
	Read []TensorRead

	linears map[string]*Linear
	owned   map[string]bool // linears this variant may change in place (Mutable)
	rope    *rope
}

// Range selects the part of a checkpoint a model holds: decoder layers [Lo, Hi), the token
// embeddings (the first shard of a layer-sharded model) and the final norm with lm_head (the last
// shard; a tied lm_head also needs the embeddings).
type Range struct {
	// Lo and Hi bound the decoder layers held: Lo <= l < Hi.
	Lo, Hi int
	// Embed loads model.embed_tokens.
	Embed bool
	// Head loads model.norm and lm_head.
	Head bool
}

// FullRange is the whole model of configuration c.
func FullRange(c Config) Range { return Range{Lo: 0, Hi: c.Layers, Embed: true, Head: true} }

// ShardRange is the range a shard holding layers [lo, hi) of c needs: the embeddings on the first
// shard, the final norm and lm_head on the last (calibration generation needs both ends).
func ShardRange(c Config, lo, hi int) Range {
	return Range{Lo: lo, Hi: hi, Embed: lo == 0, Head: hi == c.Layers}
}

// Validate checks the range against c.
func (r Range) Validate(c Config) error {
	if r.Lo < 0 || r.Hi > c.Layers || r.Lo > r.Hi {
		return fmt.Errorf("%w: layer range [%d, %d) is outside the model's %d layers", ErrInvalid, r.Lo, r.Hi, c.Layers)
	}
	return nil
}

// TensorRead records one tensor a Load read: its name and its size as stored.
type TensorRead struct {
	// Name is the checkpoint tensor name.
	Name string
	// Bytes is the tensor's size in the checkpoint.
	Bytes int64
}

// Load reads config.json and the safetensors checkpoint (single file or sharded) in dir. The
// weights of the linear modules and the embeddings stay at the width they are stored at (F32, BF16
// or F16; F64 is narrowed to float32), memory-mapped where the file allows; every product widens
// 16-bit weights to float32 on the way into the GEMM, so the results are those of the float32
// values. The norm weights and biases are converted to float32.
func Load(dir string) (*Model, error) {
	cfg, err := LoadConfig(configPath(dir))
	if err != nil {
		return nil, err
	}
	return LoadRange(dir, FullRange(cfg))
}

// LoadRange reads only the tensors of range r from the checkpoint in dir: a layer shard never
// reads (or converts) another shard's weights. The names of the other tensors are still checked
// against the model config.json describes.
func LoadRange(dir string, r Range) (*Model, error) {
	cfg, err := LoadConfig(configPath(dir))
	if err != nil {
		return nil, err
	}
	if err := r.Validate(cfg); err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", dir, err)
	}
	b := &builder{views: ck, closer: ck}
	m, err := b.build(cfg, dir, ck, r)
	if err != nil || b.keep == nil {
		// Nothing aliases the mapping: close it now. Otherwise the weights keep it open, and
		// a cleanup closes it once they are all unreachable.
		ck.Close()
	}
	return m, err
}

// tensorSource is what build reads weights from.
type tensorSource interface {
	Names() []string
	Info(name string) (safetensors.TensorInfo, bool)
	Float32(name string) ([]float32, error)
}

// TensorHeaders is what CheckCheckpoint reads: the names and header entries of a checkpoint's
// tensors (safetensors.Checkpoint and safetensors.File provide it).
type TensorHeaders interface {
	Names() []string
	Info(name string) (safetensors.TensorInfo, bool)
}

// tensorsPerLayer is the number of weight tensors of a decoder layer without biases: two norms
// and seven linear modules.
const tensorsPerLayer = 9

// CheckCheckpoint checks, from the headers alone (no tensor data is read), that ck holds every
// tensor c implies with the shape it implies, and nothing else: what Load would find, before
// anything is loaded. A config whose sizes the checkpoint does not back (num_hidden_layers of a
// billion, a wider hidden_size) is refused here, without allocating anything of its size.
func (c Config) CheckCheckpoint(ck TensorHeaders, dir string) error {
	names := ck.Names()
	if c.Layers > len(names)/tensorsPerLayer {
		return fmt.Errorf("model %s: %w: config.json gives num_hidden_layers = %d, but the checkpoint holds only %d tensors (a layer has at least %d)",
			dir, ErrInvalid, c.Layers, len(names), tensorsPerLayer)
	}
	used := map[string]bool{}
	for _, w := range c.tensors() {
		info, ok := ck.Info(w.name)
		if !ok {
			return fmt.Errorf("model %s: %w: tensor %s is missing (expected shape %v)", dir, ErrInvalid, w.name, w.shape)
		}
		if !slices.Equal(info.Shape, w.shape) {
			return fmt.Errorf("model %s: %w: tensor %s has shape %v, config.json implies %v", dir, ErrInvalid, w.name, info.Shape, w.shape)
		}
		used[w.name] = true
	}
	if c.TieWordEmbeddings {
		used["lm_head.weight"] = true
	}
	for _, n := range names {
		if !used[n] && !ignorable(n) {
			return fmt.Errorf("model %s: %w: tensor %s is not part of a %s model as config.json describes it", dir, ErrUnsupported, n, c.ModelType)
		}
	}
	return nil
}

// weight is one tensor a config implies.
type weight struct {
	name  string
	shape []int
}

// tensors lists every tensor c implies, in load order.
func (c Config) tensors() []weight {
	ws := []weight{{"model.embed_tokens.weight", []int{c.Vocab, c.Hidden}}, {"model.norm.weight", []int{c.Hidden}}}
	if !c.TieWordEmbeddings {
		ws = append(ws, weight{"lm_head.weight", []int{c.Vocab, c.Hidden}})
	}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		ws = append(ws, weight{p + "input_layernorm.weight", []int{c.Hidden}}, weight{p + "post_attention_layernorm.weight", []int{c.Hidden}})
		for _, l := range c.layerLinears() {
			ws = append(ws, weight{p + l.name + ".weight", []int{l.out, l.in}})
			if l.bias {
				ws = append(ws, weight{p + l.name + ".bias", []int{l.out}})
			}
		}
	}
	return ws
}

// linearSpec is one linear module of a decoder layer.
type linearSpec struct {
	name    string
	out, in int
	bias    bool
}

// layerLinears lists a decoder layer's linear modules in dependency order.
func (c Config) layerLinears() []linearSpec {
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	return []linearSpec{
		{"self_attn.q_proj", q, c.Hidden, c.QKVBias},
		{"self_attn.k_proj", kv, c.Hidden, c.QKVBias},
		{"self_attn.v_proj", kv, c.Hidden, c.QKVBias},
		{"self_attn.o_proj", c.Hidden, q, c.OBias},
		{"mlp.gate_proj", c.Intermediate, c.Hidden, c.MLPBias},
		{"mlp.up_proj", c.Intermediate, c.Hidden, c.MLPBias},
		{"mlp.down_proj", c.Hidden, c.Intermediate, c.MLPBias},
	}
}

func build(cfg Config, dir string, src tensorSource, r Range) (*Model, error) {
	return (&builder{}).build(cfg, dir, src, r)
}

func (b *builder) build(cfg Config, dir string, src tensorSource, r Range) (*Model, error) {
	if err := cfg.CheckCheckpoint(src, dir); err != nil {
		return nil, err
	}
	m := &Model{Config: cfg, Dir: dir, Range: r, linears: map[string]*Linear{}, Layers: make([]*Layer, cfg.Layers)}
	b.m, b.src = m, src
	c := cfg
	var err error
	if r.Embed || (r.Head && c.TieWordEmbeddings) {
		if m.Embed, err = b.weight("model.embed_tokens.weight", c.Vocab, c.Hidden); err != nil {
			return nil, err
		}
	}
	if r.Head {
		if m.Norm, err = b.get("model.norm.weight"); err != nil {
			return nil, err
		}
		if c.TieWordEmbeddings {
			m.LMHead = &Linear{Name: "lm_head", Out: c.Vocab, In: c.Hidden, W: m.Embed}
		} else {
			ls, err := b.linears([]linearSpec{{"lm_head", c.Vocab, c.Hidden, false}})
			if err != nil {
				return nil, err
			}
			m.LMHead = ls[0]
		}
	}
	for i := r.Lo; i < r.Hi; i++ {
		if m.Layers[i], err = b.layer(i); err != nil {
			return nil, err
		}
	}
	m.rope = newRope(c.HeadDim, c.RopeTheta)
	return m, nil
}

// layer reads decoder layer i.
func (b *builder) layer(i int) (*Layer, error) {
	c := b.m.Config
	p := fmt.Sprintf("model.layers.%d.", i)
	l := &Layer{}
	var err error
	if l.InputNorm, err = b.get(p + "input_layernorm.weight"); err != nil {
		return nil, err
	}
	if l.PostNorm, err = b.get(p + "post_attention_layernorm.weight"); err != nil {
		return nil, err
	}
	dst := []**Linear{&l.Q, &l.K, &l.V, &l.O, &l.Gate, &l.Up, &l.Down}
	specs := c.layerLinears()
	// q|k|v and gate|up read one input each and run as one product where they can: float32
	// weights are laid out one after another for that (fused), 16-bit ones are fused tile by tile.
	for _, g := range [][]int{{0, 1, 2}, {3}, {4, 5}, {6}} {
		var group []linearSpec
		for _, k := range g {
			group = append(group, linearSpec{p + specs[k].name, specs[k].out, specs[k].in, specs[k].bias})
		}
		ls, err := b.linears(group)
		if err != nil {
			return nil, err
		}
		for i, k := range g {
			*dst[k] = ls[i]
			b.m.linears[ls[i].Name] = ls[i]
		}
	}
	return l, nil
}

// ignorable lists checkpoint tensors that carry no weights the engine needs.
func ignorable(name string) bool {
	return len(name) > len("rotary_emb.inv_freq") && name[len(name)-len("rotary_emb.inv_freq"):] == "rotary_emb.inv_freq"
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
// either merged into a float32 copy of its weight (merged=true: W + Scale*B*A) or applied unmerged
// at run time. Modules not named share m's weights. m itself is not changed.
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
	v.owned = nil
	swap := func(l *Linear) *Linear {
		ls, ok := updates[l.Name]
		if !ok || len(ls) == 0 {
			v.linears[l.Name] = l
			return l
		}
		c := *l
		if merged {
			w := l.W.float32Copy()
			for _, u := range ls {
				addLowRank(w, u, l.Out, l.In)
			}
			c.W = Float32Weight(l.Out, l.In, w)
			c.LoRAs = append([]LoRA(nil), l.LoRAs...)
		} else {
			c.LoRAs = append(append([]LoRA(nil), l.LoRAs...), ls...)
		}
		v.linears[l.Name] = &c
		return &c
	}
	for i, l := range m.Layers {
		if l == nil {
			continue
		}
		nl := *l
		nl.Q, nl.K, nl.V, nl.O = swap(l.Q), swap(l.K), swap(l.V), swap(l.O)
		nl.Gate, nl.Up, nl.Down = swap(l.Gate), swap(l.Up), swap(l.Down)
		v.Layers[i] = &nl
	}
	return &v, nil
}

// Mutable returns a variant of m in which the named linear modules are private copies whose
// unmerged updates SetLoRA may replace in place; the other modules share m's. This is how a merged
// model is updated site by site without rebuilding it.
func (m *Model) Mutable(names []string) *Model {
	up := make(map[string][]LoRA, len(names))
	for _, n := range names {
		up[n] = nil
	}
	v := *m
	v.linears = make(map[string]*Linear, len(m.linears))
	v.Layers = make([]*Layer, len(m.Layers))
	v.owned = map[string]bool{}
	swap := func(l *Linear) *Linear {
		if _, ok := up[l.Name]; !ok {
			v.linears[l.Name] = l
			return l
		}
		c := *l
		c.LoRAs = append([]LoRA(nil), l.LoRAs...)
		v.linears[l.Name] = &c
		v.owned[l.Name] = true
		return &c
	}
	for i, l := range m.Layers {
		if l == nil {
			continue
		}
		nl := *l
		nl.Q, nl.K, nl.V, nl.O = swap(l.Q), swap(l.K), swap(l.V), swap(l.O)
		nl.Gate, nl.Up, nl.Down = swap(l.Gate), swap(l.Up), swap(l.Down)
		v.Layers[i] = &nl
	}
	return &v
}

// SetLoRA replaces the unmerged updates of a module of a Mutable variant. It must not be called
// while the model runs.
func (m *Model) SetLoRA(name string, ls []LoRA) error {
	l, ok := m.linears[name]
	if !ok || !m.owned[name] {
		return fmt.Errorf("%w: module %s is not a mutable module of this model variant", ErrInvalid, name)
	}
	for _, u := range ls {
		if len(u.A) != u.R*l.In || len(u.B) != l.Out*u.R {
			return fmt.Errorf("%w: module %s: LoRA of rank %d has A of %d and B of %d values, want %dx%d and %dx%d",
				ErrInvalid, name, u.R, len(u.A), len(u.B), u.R, l.In, l.Out, u.R)
		}
	}
	l.LoRAs = append([]LoRA(nil), ls...)
	return nil
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

// ShapesOf returns the linear-module shapes of a model with configuration c. Check c against
// the checkpoint first (CheckCheckpoint): the map has 7 entries per layer config.json claims.
func ShapesOf(c Config) Shapes {
	s := Shapes{shapes: map[string][2]int{}}
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		for _, ls := range c.layerLinears() {
			s.shapes[p+ls.name] = [2]int{ls.out, ls.in}
		}
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
