// Package adapter reads, checks and writes Hugging Face PEFT LoRA adapters:
// a directory holding adapter_config.json and adapter_model.safetensors.
//
// Load accepts plain LoRA on linear modules, the form PEFT, vLLM and the
// merge methods of this project agree on, and refuses with ErrUnsupported,
// naming the file and the field or tensor key, every feature that changes
// what the weights mean (DoRA, LoRA bias, modules_to_save, embedding LoRA,
// fan_in_fan_out, layers_to_transform, ...). Write produces an adapter that
// PEFT and vLLM load as is: un-named keys, scale 1 everywhere, exact
// target_modules, written atomically.
//
// Conventions follow nn.Linear: a module's weight is Out x In, lora_A is
// R x In and lora_B is Out x R, all row-major, and the module's update is
// Scale * B * A.
package adapter

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// Sentinel errors. Returned errors wrap one of them (test with errors.Is) and
// name the file and the field, key or module concerned.
var (
	// ErrUnsupported reports an adapter feature this package does not apply
	// (DoRA, LoRA bias, embedding LoRA, another peft_type, a dtype, ...).
	ErrUnsupported = errors.New("unsupported adapter feature")
	// ErrInvalid reports a malformed or inconsistent adapter: bad JSON, a
	// lora_A without its lora_B, a module outside target_modules, NaN or
	// Inf weights, bad arguments to Write.
	ErrInvalid = errors.New("invalid adapter")
	// ErrShapeMismatch reports factor shapes that disagree with each other,
	// with the config's rank, or with the base model.
	ErrShapeMismatch = errors.New("adapter shape mismatch")
	// ErrUnknownModule reports an adapter module the base model does not
	// have. It wraps ErrShapeMismatch: an adapter of another base.
	ErrUnknownModule = fmt.Errorf("%w: module not in the base model", ErrShapeMismatch)
	// ErrNotEmpty reports a Write destination that exists and is not an
	// empty directory.
	ErrNotEmpty = errors.New("output directory exists and is not empty")
)

// File names inside an adapter directory.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
	// keyPrefix starts every weight key: PeftModel wraps the base model as
	// base_model.model.
	keyPrefix = "base_model.model."
)

// Module is the LoRA update of one linear module.
type Module struct {
	// Name is the module name in the base model, e.g.
	// "model.layers.0.self_attn.q_proj".
	Name string
	// R is the rank; In and Out are the module's input and output widths.
	R, In, Out int
	// A is lora_A, R x In row-major.
	A []float32
	// B is lora_B, Out x R row-major.
	B []float32
	// Alpha is the module's lora_alpha (alpha_pattern match or lora_alpha).
	Alpha float64
	// Scale is alpha/r, or alpha/sqrt(r) with rsLoRA.
	Scale float64
	// KeyA and KeyB are the tensor keys the factors were read from (empty
	// for modules built in memory).
	KeyA, KeyB string
}

// Adapter is a loaded LoRA adapter.
type Adapter struct {
	// Dir is the adapter directory.
	Dir string
	// Config is the parsed adapter_config.json.
	Config Config
	// Modules maps module names to their updates.
	Modules map[string]*Module
}

// Shapes is how a base model reports its linear modules: name -> (out, in).
// The model package provides it.
type Shapes interface {
	// LinearShape reports the (out, in) shape of the named linear module.
	LinearShape(name string) (out, in int, ok bool)
	// LinearNames lists the linear modules adapters may target.
	LinearNames() []string
}

// weightsPath is the adapter's safetensors file, for messages.
func (a *Adapter) weightsPath() string { return filepath.Join(a.Dir, WeightsFile) }

// Names returns the module names, sorted.
func (a *Adapter) Names() []string {
	names := make([]string, 0, len(a.Modules))
	for n := range a.Modules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Load reads the adapter in dir and checks it completely: the config (see
// parseConfig), every tensor key, the pairing of lora_A and lora_B, their
// shapes against each other and against r / rank_pattern, target_modules,
// dtypes and finiteness. A rank above min(out, in) of its module is refused
// (ErrShapeMismatch): such a factor pair is larger than the weight it adapts
// and no more expressive than rank min(out, in). Every check of the header
// comes before any tensor data is read or converted.
//
// Keys are base_model.model.<module>.lora_A.weight and .lora_B.weight.
// Keys that carry an adapter name, base_model.model.<module>.lora_A.<name>.weight
// (as written by some older PEFT versions and third-party tools), are
// accepted too: the adapter name is stripped, and a file mixing several
// adapter names is refused. Any other key, including lora_embedding_A/B,
// lora_magnitude_vector (DoRA) and lora bias vectors, gives ErrUnsupported.
func Load(dir string) (*Adapter, error) { return LoadFor(dir, nil) }

// LoadFor is Load that also checks every module against base (as Validate
// does) from the file's header, before any tensor data is read or converted,
// so an adapter of another model, or one whose header claims absurd shapes,
// costs no memory. base may be nil.
func LoadFor(dir string, base Shapes) (*Adapter, error) {
	cfgPath := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	cfg, err := parseConfig(data, cfgPath)
	if err != nil {
		return nil, err
	}
	wpath := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(wpath); errors.Is(err, os.ErrNotExist) {
		if _, berr := os.Stat(filepath.Join(dir, "adapter_model.bin")); berr == nil {
			return nil, fmt.Errorf("adapter: %s: %w: adapter_model.bin (a pickle) is not read; convert the adapter to %s", dir, ErrUnsupported, WeightsFile)
		}
	}
	f, err := safetensors.Open(wpath)
	if err != nil {
		if errors.Is(err, safetensors.ErrUnsupportedDType) {
			return nil, fmt.Errorf("adapter: %w: %w", ErrUnsupported, err)
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("adapter: %w", err)
		}
		return nil, fmt.Errorf("adapter: %w: %w", ErrInvalid, err)
	}
	defer f.Close()
	pairs, err := pairKeys(f, wpath)
	if err != nil {
		return nil, err
	}
	a := &Adapter{Dir: dir, Config: cfg, Modules: make(map[string]*Module, len(pairs))}
	mods := make([]string, 0, len(pairs))
	for m := range pairs {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	// Every header check first, then the data.
	for _, name := range mods {
		m, err := checkHeader(f, &cfg, wpath, cfgPath, name, pairs[name])
		if err != nil {
			return nil, err
		}
		if base != nil {
			if err := checkModule(wpath, m, base); err != nil {
				return nil, err
			}
		}
		a.Modules[name] = m
	}
	if len(a.Modules) == 0 {
		return nil, fmt.Errorf("adapter: %s: %w: no LoRA tensors", wpath, ErrInvalid)
	}
	for _, name := range mods {
		if err := readFactors(f, wpath, a.Modules[name]); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// pair holds the keys of one module's lora_A and lora_B.
type pair struct{ a, b string }

// pairKeys groups the tensor keys of f by module.
func pairKeys(f *safetensors.File, wpath string) (map[string]*pair, error) {
	pairs := map[string]*pair{}
	adapterNames := map[string]string{} // adapter name -> first key carrying it
	for _, key := range f.Names() {
		mod, isA, name, err := parseKey(wpath, key)
		if err != nil {
			return nil, err
		}
		if _, seen := adapterNames[name]; !seen {
			adapterNames[name] = key
		}
		if len(adapterNames) > 1 {
			var ks []string
			for _, k := range adapterNames {
				ks = append(ks, k)
			}
			sort.Strings(ks)
			return nil, fmt.Errorf("adapter: %s: %w: keys of several adapters in one file (%s)", wpath, ErrUnsupported, strings.Join(ks, ", "))
		}
		p := pairs[mod]
		if p == nil {
			p = &pair{}
			pairs[mod] = p
		}
		slot := &p.b
		if isA {
			slot = &p.a
		}
		if *slot != "" {
			return nil, fmt.Errorf("adapter: %s: %w: tensors %q and %q are the same factor of module %q", wpath, ErrInvalid, *slot, key, mod)
		}
		*slot = key
	}
	return pairs, nil
}

// checkHeader checks one module's factors from the header alone and returns the module without
// its data.
func checkHeader(f *safetensors.File, cfg *Config, wpath, cfgPath, name string, p *pair) (*Module, error) {
	if p.a == "" {
		return nil, fmt.Errorf("adapter: %s: %w: tensor %q has no matching lora_A", wpath, ErrInvalid, p.b)
	}
	if p.b == "" {
		return nil, fmt.Errorf("adapter: %s: %w: tensor %q has no matching lora_B", wpath, ErrInvalid, p.a)
	}
	infoA, err := factorInfo(f, wpath, p.a)
	if err != nil {
		return nil, err
	}
	infoB, err := factorInfo(f, wpath, p.b)
	if err != nil {
		return nil, err
	}
	r, in := infoA.Shape[0], infoA.Shape[1]
	out, rb := infoB.Shape[0], infoB.Shape[1]
	if r != rb {
		return nil, fmt.Errorf("adapter: %s: %w: module %q: %q is %v (rank %d) but %q is %v (rank %d)",
			wpath, ErrShapeMismatch, name, p.a, infoA.Shape, r, p.b, infoB.Shape, rb)
	}
	if r == 0 || in == 0 || out == 0 {
		return nil, fmt.Errorf("adapter: %s: %w: module %q: empty factors %q %v and %q %v", wpath, ErrInvalid, name, p.a, infoA.Shape, p.b, infoB.Shape)
	}
	if r > min(out, in) {
		return nil, fmt.Errorf("adapter: %s: %w: module %q: tensor %q has rank %d (shape %v), above min(out, in) = %d of the module (%q is %v): a LoRA of that rank is larger than the weight it adapts and no more expressive than rank %d",
			wpath, ErrShapeMismatch, name, p.a, r, infoA.Shape, min(out, in), p.b, infoB.Shape, min(out, in))
	}
	if !cfg.Targets(name) {
		return nil, fmt.Errorf("adapter: %s: %w: module %q (tensor %q) is not selected by target_modules %s of %s",
			wpath, ErrInvalid, name, p.a, cfg.targetString(), cfgPath)
	}
	if want := cfg.RankFor(name); want != r {
		src := fmt.Sprintf("r = %d", cfg.R)
		if k, ok := cfg.RankPatternKey(name); ok {
			src = fmt.Sprintf("rank_pattern[%q] = %d", k, want)
		}
		return nil, fmt.Errorf("adapter: %s: %w: tensor %q has rank %d (shape %v) but %s gives %s",
			wpath, ErrShapeMismatch, p.a, r, infoA.Shape, cfgPath, src)
	}
	alpha := cfg.AlphaFor(name)
	return &Module{Name: name, R: r, In: in, Out: out, Alpha: alpha, Scale: scale(alpha, r, cfg.UseRSLoRA), KeyA: p.a, KeyB: p.b}, nil
}

// readFactors converts a checked module's factors to float32 and checks they are finite.
func readFactors(f *safetensors.File, wpath string, m *Module) error {
	var err error
	if m.A, err = f.Float32(m.KeyA); err != nil {
		return fmt.Errorf("adapter: %w: %w", ErrInvalid, err)
	}
	if m.B, err = f.Float32(m.KeyB); err != nil {
		return fmt.Errorf("adapter: %w: %w", ErrInvalid, err)
	}
	if err := checkFinite(wpath, m.KeyA, m.A); err != nil {
		return err
	}
	return checkFinite(wpath, m.KeyB, m.B)
}

// parseKey splits a tensor key into the module name, which factor it is and
// the adapter name it carries ("" for none), refusing keys that are not a
// lora_A/lora_B weight of a linear module.
func parseKey(file, key string) (module string, isA bool, adapterName string, err error) {
	refuse := func(what string) error {
		return fmt.Errorf("adapter: %s: %w: tensor %q: %s", file, ErrUnsupported, key, what)
	}
	switch {
	case strings.Contains(key, "lora_embedding_A") || strings.Contains(key, "lora_embedding_B"):
		return "", false, "", refuse("LoRA on an embedding layer (lora_embedding_A/B) is not supported")
	case strings.Contains(key, "lora_magnitude_vector"):
		return "", false, "", refuse("DoRA (lora_magnitude_vector) is not supported")
	case !strings.HasPrefix(key, keyPrefix):
		return "", false, "", refuse("not a LoRA weight: keys must read " + keyPrefix + "<module>.lora_A.weight or .lora_B.weight")
	}
	rest := key[len(keyPrefix):]
	ia, ib := strings.LastIndex(rest, ".lora_A."), strings.LastIndex(rest, ".lora_B.")
	i := max(ia, ib)
	if i <= 0 {
		return "", false, "", refuse("not a lora_A/lora_B weight of a linear module")
	}
	module, isA, tail := rest[:i], ia > ib, rest[i+len(".lora_A."):]
	switch {
	case tail == "weight":
	case tail == "bias" || strings.HasSuffix(tail, ".bias"):
		return "", false, "", refuse("LoRA bias (lora_bias) is not supported")
	case strings.HasSuffix(tail, ".weight") && !strings.Contains(strings.TrimSuffix(tail, ".weight"), ".") && tail != ".weight":
		adapterName = strings.TrimSuffix(tail, ".weight")
	default:
		return "", false, "", refuse("not a lora_A/lora_B weight of a linear module")
	}
	if strings.HasPrefix(module, ".") || strings.HasSuffix(module, ".") || strings.Contains(module, "..") {
		return "", false, "", refuse("malformed module name")
	}
	return module, isA, adapterName, nil
}

// factorInfo returns a factor's header entry after checking that it is a
// 2-D float tensor of a supported dtype.
func factorInfo(f *safetensors.File, file, key string) (safetensors.TensorInfo, error) {
	info, ok := f.Info(key)
	if !ok {
		return info, fmt.Errorf("adapter: %s: %w: tensor %q vanished", file, ErrInvalid, key)
	}
	switch info.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		return info, fmt.Errorf("adapter: %s: %w: tensor %q has dtype %s, want F32, F16 or BF16", file, ErrUnsupported, key, info.DType)
	}
	if len(info.Shape) != 2 {
		return info, fmt.Errorf("adapter: %s: %w: tensor %q has shape %v: only LoRA of linear modules (2-D factors) is supported", file, ErrUnsupported, key, info.Shape)
	}
	return info, nil
}

// checkFinite reports the first NaN or Inf in x.
func checkFinite(file, key string, x []float32) error {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("adapter: %s: %w: tensor %q holds %v at flat index %d", file, ErrInvalid, key, v, i)
		}
	}
	return nil
}

// targetString formats target_modules (and exclude_modules) for messages.
func (c *Config) targetString() string {
	var s string
	if c.TargetModulesRegex != "" {
		s = fmt.Sprintf("%q", c.TargetModulesRegex)
	} else {
		s = fmt.Sprintf("%q", c.TargetModules)
	}
	if c.ExcludeModulesRegex != "" {
		s += fmt.Sprintf(" (exclude_modules %q)", c.ExcludeModulesRegex)
	} else if len(c.ExcludeModules) > 0 {
		s += fmt.Sprintf(" (exclude_modules %q)", c.ExcludeModules)
	}
	return s
}

// keyOf returns the tensor key of a module's factor, for messages.
func (m *Module) keyOf(isA bool) string {
	if isA {
		if m.KeyA != "" {
			return m.KeyA
		}
		return keyPrefix + m.Name + ".lora_A.weight"
	}
	if m.KeyB != "" {
		return m.KeyB
	}
	return keyPrefix + m.Name + ".lora_B.weight"
}

// HasNaN returns nil if every factor is finite, else an ErrInvalid error
// naming the adapter file, the tensor and the flat index of the first NaN or
// Inf (modules in sorted order, lora_A before lora_B).
func (a *Adapter) HasNaN() error {
	for _, name := range a.Names() {
		m := a.Modules[name]
		if err := checkFinite(a.weightsPath(), m.keyOf(true), m.A); err != nil {
			return err
		}
		if err := checkFinite(a.weightsPath(), m.keyOf(false), m.B); err != nil {
			return err
		}
	}
	return nil
}

// Delta returns the module's dense update Scale * B * A, Out x In row-major,
// or nil if the adapter has no such module. It costs Out*In*R operations and
// Out*In floats: meant for tests and small uses.
func (a *Adapter) Delta(name string) []float32 {
	m := a.Modules[name]
	if m == nil {
		return nil
	}
	return m.Delta()
}

// Delta returns Scale * B * A, Out x In row-major, accumulated in float64.
func (m *Module) Delta() []float32 {
	d := make([]float32, m.Out*m.In)
	row := make([]float64, m.In)
	for o := 0; o < m.Out; o++ {
		clear(row)
		for k := 0; k < m.R; k++ {
			b := float64(m.B[o*m.R+k])
			if b == 0 {
				continue
			}
			ak := m.A[k*m.In : (k+1)*m.In]
			for i, v := range ak {
				row[i] += b * float64(v)
			}
		}
		for i, v := range row {
			d[o*m.In+i] = float32(m.Scale * v)
		}
	}
	return d
}

// Validate checks the adapter against a base model: every module must exist
// in base with lora_A [r, in] and lora_B [out, r] agreeing with the base
// weight [out, in]. The error (ErrUnknownModule or ErrShapeMismatch) names the
// adapter file, the first offending module in sorted order and both shapes,
// and counts any further offending modules.
func (a *Adapter) Validate(base Shapes) error {
	if base == nil {
		return fmt.Errorf("adapter: %s: %w: no base model to validate against", a.Dir, ErrInvalid)
	}
	var first error
	more := 0
	for _, name := range a.Names() {
		err := checkModule(a.weightsPath(), a.Modules[name], base)
		if err == nil {
			continue
		}
		if first == nil {
			first = err
		} else {
			more++
		}
	}
	if first != nil && more > 0 {
		return fmt.Errorf("%w (and %d more modules)", first, more)
	}
	return first
}

// checkModule checks one module against the base model.
func checkModule(file string, m *Module, base Shapes) error {
	out, in, ok := base.LinearShape(m.Name)
	if !ok {
		return fmt.Errorf("adapter: %s: %w: module %q (lora_A %v, lora_B %v) is not a linear module of the base model",
			file, ErrUnknownModule, m.Name, []int{m.R, m.In}, []int{m.Out, m.R})
	}
	if out != m.Out || in != m.In {
		return fmt.Errorf("adapter: %s: %w: module %q: lora_A %v and lora_B %v need a weight [%d %d] (out, in), the base model's is [%d %d]",
			file, ErrShapeMismatch, m.Name, []int{m.R, m.In}, []int{m.Out, m.R}, m.Out, m.In, out, in)
	}
	return nil
}
