package adapter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// WriteOptions configures Write.
type WriteOptions struct {
	// BaseModel becomes base_model_name_or_path (null when empty).
	BaseModel string
	// DType is the stored dtype of the factors: F32 (the default when
	// empty), F16 or BF16.
	DType safetensors.DType
	// Metadata goes into the safetensors __metadata__; "format": "pt" is
	// added unless set, as transformers and PEFT write it.
	Metadata map[string]string
	// Base, when set, is checked against every module's shape before
	// anything is written, and lets target_modules be written as the short
	// list of leaf names (["q_proj", ...]) whenever that list selects no base
	// module outside the adapter. Without Base, or when a leaf name would
	// also select an uncovered base module, target_modules is written as a
	// regular expression that matches exactly the written module names.
	Base Shapes
	// Files are extra files (for example README.md, merge_report.json)
	// written into the directory too. Names must be plain file names other
	// than the two adapter files.
	Files map[string][]byte
}

// writtenConfig is the adapter_config.json that Write produces, fields in
// PEFT's (alphabetical) order.
type writtenConfig struct {
	AlphaPattern        map[string]int `json:"alpha_pattern"`
	BaseModelNameOrPath *string        `json:"base_model_name_or_path"`
	Bias                string         `json:"bias"`
	FanInFanOut         bool           `json:"fan_in_fan_out"`
	InferenceMode       bool           `json:"inference_mode"`
	InitLoraWeights     bool           `json:"init_lora_weights"`
	LayerReplication    any            `json:"layer_replication"`
	LayersPattern       any            `json:"layers_pattern"`
	LayersToTransform   any            `json:"layers_to_transform"`
	LoraAlpha           int            `json:"lora_alpha"`
	LoraBias            bool           `json:"lora_bias"`
	LoraDropout         float64        `json:"lora_dropout"`
	ModulesToSave       any            `json:"modules_to_save"`
	PeftType            string         `json:"peft_type"`
	R                   int            `json:"r"`
	RankPattern         map[string]int `json:"rank_pattern"`
	Revision            any            `json:"revision"`
	TargetModules       any            `json:"target_modules"`
	TaskType            string         `json:"task_type"`
	UseDora             bool           `json:"use_dora"`
	UseRslora           bool           `json:"use_rslora"`
}

// Write writes mods as a PEFT LoRA adapter into dir, in the form PEFT and
// vLLM load as is: keys base_model.model.<module>.lora_A.weight and
// .lora_B.weight (no adapter name), peft_type LORA, task_type CAUSAL_LM,
// bias "none", no DoRA, no rsLoRA, no fan_in_fan_out, inference_mode true.
//
// Scale: Write folds each module's Scale into its B (the written lora_B is
// Scale * B, computed in float64 and rounded once) and writes a config whose
// scale is 1 for every module: r is the most common rank (the smallest on a
// tie), lora_alpha = r, and every module of another rank gets rank_pattern
// and alpha_pattern entries equal to its rank, keyed by its full module name
// (PEFT matches a key k as `(.*\.)?(k)$`, so a full name selects exactly
// that module: model.layers.1.x never selects model.layers.11.x). vLLM,
// which applies the top-level lora_alpha / r to every module, therefore sees
// scale 1 too. The effective update Scale * B * A is what is written; A is
// written unchanged. A Scale of 0, NaN or Inf is refused as ErrInvalid
// (almost always an unset field).
//
// target_modules lists the distinct leaf names of the written modules when
// opt.Base shows that list selects nothing else, else it is a regular
// expression naming every written module exactly (see WriteOptions.Base).
//
// dir must not exist or be an empty directory (else ErrNotEmpty); it and
// missing parents are created. Bad input (ErrInvalid, ErrShapeMismatch,
// ErrUnsupported for a dtype) is reported before anything touches the disk;
// after an I/O error the files written (and dir, when Write created it) are
// removed. Write is not atomic by itself: internal/output writes OUT_DIR in a
// staging directory that it renames into place.
func Write(dir string, mods []*Module, opt WriteOptions) error {
	dt := opt.DType
	if dt == "" {
		dt = safetensors.F32
	}
	if dt != safetensors.F32 && dt != safetensors.F16 && dt != safetensors.BF16 {
		return fmt.Errorf("adapter: write %s: %w: dtype %q, want F32, F16 or BF16", dir, ErrUnsupported, dt)
	}
	tensors, ranks, err := prepareTensors(dir, mods, dt, opt.Base)
	if err != nil {
		return err
	}
	cfgJSON, err := buildConfig(dir, mods, ranks, opt)
	if err != nil {
		return err
	}
	for name := range opt.Files {
		if name == "" || name == "." || name == ".." || name == ConfigFile || name == WeightsFile ||
			strings.ContainsAny(name, `/\`) || name != filepath.Base(name) {
			return fmt.Errorf("adapter: write %s: %w: extra file name %q", dir, ErrInvalid, name)
		}
	}
	meta := map[string]string{"format": "pt"}
	for k, v := range opt.Metadata {
		meta[k] = v
	}
	names := make([]string, 0, len(opt.Files))
	for n := range opt.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	return fillDir(dir, append([]string{WeightsFile, ConfigFile}, names...), func() error {
		if err := safetensors.WriteFile(filepath.Join(dir, WeightsFile), tensors, meta); err != nil {
			return fmt.Errorf("adapter: write %s: %w", dir, err)
		}
		if err := writeFileSync(filepath.Join(dir, ConfigFile), cfgJSON); err != nil {
			return fmt.Errorf("adapter: write %s: %w", dir, err)
		}
		for _, n := range names {
			if err := writeFileSync(filepath.Join(dir, n), opt.Files[n]); err != nil {
				return fmt.Errorf("adapter: write %s: %w", dir, err)
			}
		}
		return syncDir(dir)
	})
}

// prepareTensors checks mods and returns the tensors to write (B scaled) and
// each module's rank by name.
func prepareTensors(dir string, mods []*Module, dt safetensors.DType, base Shapes) ([]safetensors.Tensor, map[string]int, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("adapter: write %s: %w: %s", dir, ErrInvalid, fmt.Sprintf(format, args...))
	}
	if len(mods) == 0 {
		return nil, nil, invalid("no modules")
	}
	limit := math.Inf(1)
	switch dt {
	case safetensors.F16:
		limit = 65504 // largest finite float16
	case safetensors.BF16:
		limit = float64(math.MaxFloat32) // BF16 rounds values near the float32 limit up to Inf
	}
	ranks := make(map[string]int, len(mods))
	tensors := make([]safetensors.Tensor, 0, 2*len(mods))
	for i, m := range mods {
		if m == nil {
			return nil, nil, invalid("module %d is nil", i)
		}
		if err := checkName(m.Name); err != nil {
			return nil, nil, invalid("module %d: %v", i, err)
		}
		if _, dup := ranks[m.Name]; dup {
			return nil, nil, invalid("module %q given twice", m.Name)
		}
		if m.R <= 0 || m.In <= 0 || m.Out <= 0 {
			return nil, nil, fmt.Errorf("adapter: write %s: %w: module %q: r %d, in %d, out %d must be positive", dir, ErrShapeMismatch, m.Name, m.R, m.In, m.Out)
		}
		if m.R > min(m.In, m.Out) {
			return nil, nil, fmt.Errorf("adapter: write %s: %w: module %q: rank %d is above min(out, in) = %d (Load refuses such adapters)", dir, ErrShapeMismatch, m.Name, m.R, min(m.In, m.Out))
		}
		if len(m.A) != m.R*m.In || len(m.B) != m.Out*m.R {
			return nil, nil, fmt.Errorf("adapter: write %s: %w: module %q: A has %d values, want r*in = %d*%d; B has %d, want out*r = %d*%d",
				dir, ErrShapeMismatch, m.Name, len(m.A), m.R, m.In, len(m.B), m.Out, m.R)
		}
		if m.Scale == 0 || math.IsNaN(m.Scale) || math.IsInf(m.Scale, 0) {
			return nil, nil, invalid("module %q: Scale %v (Write folds Scale into lora_B; set 1 for factors that are already scaled)", m.Name, m.Scale)
		}
		if base != nil {
			if err := checkModule(dir, m, base); err != nil {
				return nil, nil, err
			}
		}
		keyA, keyB := keyPrefix+m.Name+".lora_A.weight", keyPrefix+m.Name+".lora_B.weight"
		if err := checkRange(dir, keyA, m.A, limit, dt); err != nil {
			return nil, nil, err
		}
		B := m.B
		if m.Scale != 1 {
			B = make([]float32, len(m.B))
			for j, v := range m.B {
				B[j] = float32(m.Scale * float64(v))
			}
		}
		if err := checkRange(dir, keyB, B, limit, dt); err != nil {
			return nil, nil, err
		}
		ranks[m.Name] = m.R
		tensors = append(tensors,
			safetensors.Tensor{Name: keyA, DType: dt, Shape: []int{m.R, m.In}, Data: m.A},
			safetensors.Tensor{Name: keyB, DType: dt, Shape: []int{m.Out, m.R}, Data: B})
	}
	return tensors, ranks, nil
}

// checkName refuses module names that would not survive a round trip
// through a tensor key.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty module name")
	case strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, ".."):
		return fmt.Errorf("malformed module name %q", name)
	case strings.Contains(name, ".lora_A.") || strings.Contains(name, ".lora_B.") ||
		strings.HasSuffix(name, ".lora_A") || strings.HasSuffix(name, ".lora_B") ||
		strings.Contains(name, "lora_embedding_") || strings.Contains(name, "lora_magnitude_vector"):
		return fmt.Errorf("module name %q contains a LoRA key part", name)
	case strings.ContainsAny(name, " \t\n\r\"\\"):
		return fmt.Errorf("module name %q contains white space, a quote or a backslash", name)
	}
	return nil
}

// checkRange reports the first value that is not finite or that the stored
// dtype cannot represent.
func checkRange(dir, key string, x []float32, limit float64, dt safetensors.DType) error {
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("adapter: write %s: %w: tensor %q holds %v at flat index %d", dir, ErrInvalid, key, v, i)
		}
		if math.Abs(f) > limit {
			return fmt.Errorf("adapter: write %s: %w: tensor %q holds %v at flat index %d, beyond the range of %s", dir, ErrInvalid, key, v, i, dt)
		}
	}
	if dt == safetensors.BF16 {
		for i, v := range x {
			if h := safetensors.Float32ToBFloat16(v); math.IsInf(float64(safetensors.BFloat16ToFloat32(h)), 0) {
				return fmt.Errorf("adapter: write %s: %w: tensor %q holds %v at flat index %d, beyond the range of BF16", dir, ErrInvalid, key, v, i)
			}
		}
	}
	return nil
}

// buildConfig produces adapter_config.json for the modules and checks, by
// reading it back, that every module resolves to its own rank with scale 1
// and is targeted, and that no other base module is.
func buildConfig(dir string, mods []*Module, ranks map[string]int, opt WriteOptions) ([]byte, error) {
	// r: the most common rank, the smallest on a tie.
	count := map[int]int{}
	for _, m := range mods {
		count[m.R]++
	}
	r := 0
	for rank, n := range count {
		if r == 0 || n > count[r] || (n == count[r] && rank < r) {
			r = rank
		}
	}
	names := make([]string, 0, len(ranks))
	for n := range ranks {
		names = append(names, n)
	}
	sort.Strings(names)

	// target_modules: leaf names when they select exactly the written
	// modules among the base's, else an exact regular expression.
	leaves := map[string]bool{}
	for _, n := range names {
		leaves[leaf(n)] = true
	}
	var target any = exactRegexp(names)
	if opt.Base != nil {
		list, safe := keys(leaves), true
		for _, bn := range opt.Base.LinearNames() {
			if _, ours := ranks[bn]; !ours && matchList(list, bn) {
				safe = false
				break
			}
		}
		if safe {
			target = list
		}
	}

	build := func(quote bool) ([]byte, error) {
		wc := writtenConfig{
			AlphaPattern: map[string]int{}, RankPattern: map[string]int{},
			Bias: "none", InferenceMode: true, InitLoraWeights: true,
			LoraAlpha: r, PeftType: "LORA", R: r, TargetModules: target, TaskType: "CAUSAL_LM",
		}
		if opt.BaseModel != "" {
			b := opt.BaseModel
			wc.BaseModelNameOrPath = &b
		}
		for _, n := range names {
			if ranks[n] == r {
				continue
			}
			k := n
			if quote {
				k = regexp.QuoteMeta(n)
			}
			wc.RankPattern[k] = ranks[n]
			wc.AlphaPattern[k] = ranks[n]
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(wc); err != nil {
			return nil, fmt.Errorf("adapter: write %s: %w: encode config: %v", dir, ErrInvalid, err)
		}
		return buf.Bytes(), nil
	}
	check := func(data []byte) error {
		cfg, err := parseConfig(data, filepath.Join(dir, ConfigFile))
		if err != nil {
			return err
		}
		for _, n := range names {
			if !cfg.Targets(n) {
				return fmt.Errorf("module %q not targeted", n)
			}
			if got := cfg.RankFor(n); got != ranks[n] {
				return fmt.Errorf("module %q resolves to rank %d, want %d", n, got, ranks[n])
			}
			if s := cfg.ScaleFor(n); s != 1 {
				return fmt.Errorf("module %q resolves to scale %v, want 1", n, s)
			}
		}
		if opt.Base != nil {
			for _, bn := range opt.Base.LinearNames() {
				if _, ours := ranks[bn]; !ours && cfg.Targets(bn) {
					return fmt.Errorf("base module %q would be targeted", bn)
				}
			}
		}
		return nil
	}
	data, err := build(false)
	if err != nil {
		return nil, err
	}
	if check(data) == nil {
		return data, nil
	}
	// Module names with regular-expression characters: quote the pattern keys.
	if data, err = build(true); err != nil {
		return nil, err
	}
	if err := check(data); err != nil {
		return nil, fmt.Errorf("adapter: write %s: %w: the config would not reproduce the modules: %v", dir, ErrInvalid, err)
	}
	return data, nil
}

// leaf returns the last dot-separated part of a module name.
func leaf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// keys returns the sorted keys of a set.
func keys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// exactRegexp is a regular expression (Python and Go syntax) that fully
// matches exactly the given names.
func exactRegexp(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = regexp.QuoteMeta(n)
	}
	return strings.Join(q, "|")
}

// fillDir creates dir when missing (it must otherwise be empty) and runs
// fill, which writes the named files into it. On an error of fill the named
// files are removed, and dir too when fillDir created it; an error of that
// cleanup is reported along with fill's.
func fillDir(dir string, files []string, fill func() error) error {
	dir = filepath.Clean(dir)
	if err := checkDest(dir); err != nil {
		return err
	}
	_, serr := os.Lstat(dir)
	created := errors.Is(serr, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("adapter: write %s: %w", dir, err)
	}
	err := fill()
	if err == nil {
		return nil
	}
	var cleanup []error
	for _, f := range files {
		if rerr := os.Remove(filepath.Join(dir, f)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			cleanup = append(cleanup, rerr)
		}
	}
	if created {
		if rerr := os.Remove(dir); rerr != nil {
			cleanup = append(cleanup, rerr)
		}
	}
	if len(cleanup) > 0 {
		return fmt.Errorf("%w (and removing what was written failed: %w)", err, errors.Join(cleanup...))
	}
	return err
}

// checkDest returns nil if dir does not exist or is an empty directory.
func checkDest(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("adapter: write %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("adapter: write %s: %w: it is not a directory", dir, ErrNotEmpty)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("adapter: write %s: %w", dir, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(1)
	if err != nil && err != io.EOF {
		return fmt.Errorf("adapter: write %s: %w", dir, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("adapter: write %s: %w: it holds %q", dir, ErrNotEmpty, names[0])
	}
	return nil
}

// writeFileSync writes data to a new file and syncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir fsyncs a directory so that entries created in it persist.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
