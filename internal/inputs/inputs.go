// Package inputs checks everything a merge reads before any heavy work: the base model's
// config.json and checkpoint headers, every adapter against the base shapes, the calibration
// files and their sample counts, the output directory, and the sha256 of every input file.
//
// The single-process driver (internal/pipeline) calls it before loading the base weights; the
// cluster's coordinator calls it when a config is submitted. It does not depend on either.
package inputs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/internal/tokenizer"
)

// ErrInput reports an input (config, adapter, calibration data, output directory) that cannot be
// merged; it is reported before any heavy work.
var ErrInput = errors.New("invalid merge input")

// Task is one adapter of the merge, loaded and checked.
type Task struct {
	// Name names the task (the adapter's name in the config).
	Name string
	// Adapter is the loaded PEFT adapter.
	Adapter *adapter.Adapter
	// Weight is the user weight m_i.
	Weight float64
	// Items are the calibration items used (the first parameters.samples of the file, or all of
	// them with samples: all); nil for weight-only methods.
	Items []eval.Item
}

// Inputs is everything read and checked before the heavy work.
type Inputs struct {
	// Config is the base model's config.json.
	Config model.Config
	// Shapes are the base model's linear modules, from Config.
	Shapes model.Shapes
	// Tasks are the adapters in the config's order.
	Tasks []*Task
	// Tokenizer is the base model's tokenizer, loaded when a calibration item is a prompt.
	Tokenizer *tokenizer.Tokenizer
	// Hashes maps every input file to its sha256 (hex).
	Hashes map[string]string
	// Ranks is the output rank of every module under the output-rank rule (merge.OutputRank);
	// nil for methods that keep the input rank (linear, ties, dare_*, magnitude_prune).
	Ranks map[string]int
	// RankClamped counts the modules whose requested output rank was above min(out, in).
	RankClamped int
	// BaseModelName is the merged adapter's base_model_name_or_path: the adapters' value when
	// they agree ("" for null), else the config's base_model.
	BaseModelName string
}

// Config configures Prepare.
type Config struct {
	// Spec is the merge config, checked by spec.Validate.
	Spec *spec.Spec
	// Warn receives warnings (printf style); nil discards them.
	Warn func(format string, args ...any)
	// Estimate, when set, estimates the merge's peak memory from the checked inputs, and
	// Prepare refuses a merge whose estimate exceeds MemoryLimit (ErrMemory). This is the hook
	// for layerplan's single-process estimate; without it memory is not checked.
	Estimate Estimator
	// MemoryLimit is the memory the merge may use, in bytes; 0 means what the machine has
	// (see Memory).
	MemoryLimit int64
	// SkipHashes leaves Inputs.Hashes empty: for a check before a cluster that hashes the inputs
	// itself (the embedded merge checks locally, then its coordinator checks again).
	SkipHashes bool
}

// Validate reports a Config that Prepare cannot use.
func (c Config) Validate() error {
	if c.Spec == nil {
		return fmt.Errorf("%w: no merge config", ErrInput)
	}
	if c.MemoryLimit < 0 {
		return fmt.Errorf("%w: memory limit %d is negative", ErrInput, c.MemoryLimit)
	}
	return nil
}

// Prepare reads the adapters and calibration files and checks them against the base model's
// config and checkpoint headers, without loading the base weights: shapes, ranks and output
// ranks, module overlap, calibration lengths, the memory estimate (when cfg.Estimate is set),
// and the sha256 of every input. ctx stops the hashing.
func Prepare(ctx context.Context, cfg Config) (*Inputs, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, warn := cfg.Spec, cfg.Warn
	if warn == nil {
		warn = func(string, ...any) {}
	}
	mc, err := model.LoadConfig(filepath.Join(s.BaseModel, "config.json"))
	if err != nil {
		return nil, err
	}
	ck, err := safetensors.OpenCheckpoint(s.BaseModel)
	if err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	err = mc.CheckCheckpoint(ck, s.BaseModel)
	if cerr := ck.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	in := &Inputs{Config: mc, Shapes: model.ShapesOf(mc), Hashes: map[string]string{}}
	if err := in.loadAdapters(s, warn); err != nil {
		return nil, err
	}
	in.checkRanks(s, warn)
	if s.DataAware() {
		if err := in.loadCalibration(s); err != nil {
			return nil, err
		}
	}
	if err := CheckMemory(in, cfg.Estimate, cfg.MemoryLimit, warn); err != nil {
		return nil, err
	}
	if cfg.SkipHashes {
		return in, nil
	}
	if err := Hash(ctx, s, in.Hashes); err != nil {
		return nil, err
	}
	return in, nil
}

// loadAdapters loads every adapter, checked against the base shapes from its header, and
// checks that they share modules and name the same base model.
func (in *Inputs) loadAdapters(s *spec.Spec, warn func(string, ...any)) error {
	for _, a := range s.Adapters {
		// Shapes and ranks are checked against the base from the header, before any tensor
		// data is read; Load also refuses NaN and Inf.
		ad, err := adapter.LoadFor(a.Path, in.Shapes)
		if errors.Is(err, adapter.ErrShapeMismatch) {
			return fmt.Errorf("adapter %s does not fit base model %s: %w", a.Name, s.BaseModel, err)
		}
		if err != nil {
			return fmt.Errorf("adapter %s: %w", a.Name, err)
		}
		in.Tasks = append(in.Tasks, &Task{Name: a.Name, Adapter: ad, Weight: a.Weight})
	}
	if len(in.Tasks) == 1 {
		warn("only one adapter (%s): the merge returns that adapter, re-expressed at scale 1 (exactly for cat; through the solve for %s)", in.Tasks[0].Name, s.Method)
	}
	// Adapters of one merge should share modules.
	common := map[string]int{}
	for _, t := range in.Tasks {
		for n := range t.Adapter.Modules {
			common[n]++
		}
	}
	shared := 0
	for _, c := range common {
		if c == len(in.Tasks) {
			shared++
		}
	}
	if shared == 0 && len(in.Tasks) > 1 {
		var desc []string
		for _, t := range in.Tasks {
			desc = append(desc, fmt.Sprintf("%s targets %s", t.Name, strings.Join(leafNames(t.Adapter), ",")))
		}
		return fmt.Errorf("%w: the adapters' target modules do not overlap (no module is in every adapter): %s", ErrInput, strings.Join(desc, "; "))
	}
	if shared < len(common) {
		warn("%d of %d modules are not in every adapter; where an adapter lacks a module its update there is zero", len(common)-shared, len(common))
	}
	in.baseModelName(s, warn)
	return nil
}

// baseModelName chooses the merged adapter's base_model_name_or_path: the adapters' own value
// when they agree (null stays null), else the config's base_model as given, with a warning.
func (in *Inputs) baseModelName(s *spec.Spec, warn func(string, ...any)) {
	bases := map[string]bool{}
	for _, t := range in.Tasks {
		bases[t.Adapter.Config.BaseModelNameOrPath] = true
	}
	if len(bases) == 1 {
		in.BaseModelName = in.Tasks[0].Adapter.Config.BaseModelNameOrPath
		return
	}
	var names []string
	for b := range bases {
		if b == "" {
			names = append(names, "null")
		} else {
			names = append(names, fmt.Sprintf("%q", b))
		}
	}
	sort.Strings(names)
	in.BaseModelName = s.BaseModel
	warn("the adapters name different base models (%s); their shapes fit %s, which the merged adapter names as base_model_name_or_path", strings.Join(names, ", "), s.BaseModel)
}

func leafNames(a *adapter.Adapter) []string {
	set := map[string]bool{}
	for n := range a.Modules {
		set[n[strings.LastIndex(n, ".")+1:]] = true
	}
	var out []string
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// loadCalibration reads the first parameters.samples items of every calibration file and checks
// their token ids and lengths against the base model, loading the tokenizer when an item is a
// prompt.
func (in *Inputs) loadCalibration(s *spec.Spec) error {
	needTok := false
	for i, a := range s.Adapters {
		items, err := eval.LoadJSONL(a.Calibration)
		if err != nil {
			return fmt.Errorf("adapter %s calibration: %w", a.Name, err)
		}
		n := s.Parameters.SampleCount(len(items))
		if n > len(items) {
			return fmt.Errorf("%w: adapter %s: parameters.samples is %d but %s has only %d items", ErrInput, a.Name, n, a.Calibration, len(items))
		}
		items = items[:n]
		for _, it := range items {
			if len(it.InputIDs) == 0 {
				needTok = true
			}
			for _, id := range it.InputIDs {
				if id >= in.Config.Vocab {
					return fmt.Errorf("%s: %w: token id %d is outside the base model's vocabulary of %d", it.Source, ErrInput, id, in.Config.Vocab)
				}
			}
		}
		in.Tasks[i].Items = items
	}
	if needTok {
		var err error
		if in.Tokenizer, err = tokenizer.LoadDir(s.BaseModel); err != nil {
			return fmt.Errorf("base_model: calibration prompts need the tokenizer: %w", err)
		}
	}
	return in.checkLengths(s.BaseModel)
}

// checkLengths refuses calibration sequences the base model cannot take: input_ids longer than
// its max_position_embeddings, or a prompt that leaves no position for a completion token.
func (in *Inputs) checkLengths(base string) error {
	limit := in.Config.MaxLength()
	from := fmt.Sprintf("max_position_embeddings in %s", filepath.Join(base, "config.json"))
	if in.Config.MaxPositions == 0 {
		from = fmt.Sprintf("%s/config.json has no max_position_embeddings; transformers' default for %s", base, in.Config.ModelType)
	}
	for _, t := range in.Tasks {
		for _, it := range t.Items {
			if len(it.InputIDs) > 0 {
				if len(it.InputIDs) > limit {
					return fmt.Errorf("%s: %w: input_ids hold %d tokens, more than the base model takes: %d positions (%s)", it.Source, ErrInput, len(it.InputIDs), limit, from)
				}
				continue
			}
			if n := len(in.Tokenizer.Encode(it.Prompt, true)); n >= limit {
				return fmt.Errorf("%s: %w: the prompt is %d tokens (%d bytes), and the base model takes %d positions (%s): no room for a completion",
					it.Source, ErrInput, n, len(it.Prompt), limit, from)
			}
		}
	}
	return nil
}
