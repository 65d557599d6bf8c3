// Package inputs checks everything a merge reads before any heavy work: the base model's
// config.json and checkpoint headers, every adapter against the base shapes, the calibration
// files and their sample counts, the output directory, and the sha256 of every input file.
//
// The single-process driver (internal/pipeline) calls it before loading the base weights; the
// cluster's coordinator calls it when a config is submitted. It does not depend on either.
package inputs

import (
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
}

// Prepare reads the adapters and calibration files and checks them against the base model's
// config, without loading the base weights. warn receives warnings (printf style).
func Prepare(s *spec.Spec, warn func(string, ...any)) (*Inputs, error) {
	cfg, err := model.LoadConfig(filepath.Join(s.BaseModel, "config.json"))
	if err != nil {
		return nil, err
	}
	ck, err := safetensors.OpenCheckpoint(s.BaseModel)
	if err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	err = cfg.CheckCheckpoint(ck, s.BaseModel)
	if cerr := ck.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	in := &Inputs{Config: cfg, Shapes: model.ShapesOf(cfg), Hashes: map[string]string{}}
	for _, a := range s.Adapters {
		// Shapes and ranks are checked against the base from the header, before any tensor
		// data is read; Load also refuses NaN and Inf.
		ad, err := adapter.LoadFor(a.Path, in.Shapes)
		if errors.Is(err, adapter.ErrShapeMismatch) {
			return nil, fmt.Errorf("adapter %s does not fit base model %s: %w", a.Name, s.BaseModel, err)
		}
		if err != nil {
			return nil, fmt.Errorf("adapter %s: %w", a.Name, err)
		}
		in.Tasks = append(in.Tasks, &Task{Name: a.Name, Adapter: ad, Weight: a.Weight})
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
		return nil, fmt.Errorf("%w: the adapters' target modules do not overlap (no module is in every adapter): %s", ErrInput, strings.Join(desc, "; "))
	}
	if shared < len(common) {
		warn("%d of %d modules are not in every adapter; where an adapter lacks a module its update there is zero", len(common)-shared, len(common))
	}
	bases := map[string]bool{}
	for _, t := range in.Tasks {
		bases[t.Adapter.Config.BaseModelNameOrPath] = true
	}
	if len(bases) > 1 {
		var names []string
		for b := range bases {
			names = append(names, fmt.Sprintf("%q", b))
		}
		sort.Strings(names)
		warn("the adapters name different base models (%s); their shapes fit %s", strings.Join(names, ", "), s.BaseModel)
	}
	in.checkRanks(s, warn)
	if s.DataAware() {
		needTok := false
		for i, a := range s.Adapters {
			items, err := eval.LoadJSONL(a.Calibration)
			if err != nil {
				return nil, fmt.Errorf("adapter %s calibration: %w", a.Name, err)
			}
			n := s.Parameters.SampleCount(len(items))
			if n > len(items) {
				return nil, fmt.Errorf("%w: adapter %s: parameters.samples is %d but %s has only %d items", ErrInput, a.Name, n, a.Calibration, len(items))
			}
			items = items[:n]
			for _, it := range items {
				if len(it.InputIDs) == 0 {
					needTok = true
				}
				for _, id := range it.InputIDs {
					if id >= cfg.Vocab {
						return nil, fmt.Errorf("%s: %w: token id %d is outside the base model's vocabulary of %d", it.Source, ErrInput, id, cfg.Vocab)
					}
				}
			}
			in.Tasks[i].Items = items
		}
		if needTok {
			if in.Tokenizer, err = tokenizer.LoadDir(s.BaseModel); err != nil {
				return nil, fmt.Errorf("base_model: calibration prompts need the tokenizer: %w", err)
			}
		}
	}
	if err := Hash(s, in.Hashes); err != nil {
		return nil, err
	}
	return in, nil
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
