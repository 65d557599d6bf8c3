package mergejob

import (
	"fmt"
	"path/filepath"
	"sort"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/internal/tokenizer"
	"github.com/iteris-dev/iteris/layerplan"
)

// PlanInput reads what a plan needs without loading the base weights: the base model's
// config.json, the adapters (checked against its shapes) and, for the data-aware methods, the
// calibration sequences' lengths (prompt tokens plus the completion budget, or the given ids).
func PlanInput(s *spec.Spec) (layerplan.Input, error) {
	cfg, err := model.LoadConfig(filepath.Join(s.BaseModel, "config.json"))
	if err != nil {
		return layerplan.Input{}, err
	}
	// The config's sizes must be backed by the checkpoint before anything of their size is made.
	ck, err := safetensors.OpenCheckpoint(s.BaseModel)
	if err != nil {
		return layerplan.Input{}, fmt.Errorf("base_model: %w", err)
	}
	err = cfg.CheckCheckpoint(ck, s.BaseModel)
	ck.Close()
	if err != nil {
		return layerplan.Input{}, err
	}
	shapes := model.ShapesOf(cfg)
	held, err := model.CheckpointHeldBytes(s.BaseModel, cfg) // 2 for a BF16/F16 checkpoint (headers only)
	if err != nil {
		return layerplan.Input{}, err
	}
	in := layerplan.Input{Model: layerplan.Model{Layers: cfg.Layers, Hidden: cfg.Hidden, Intermediate: cfg.Intermediate,
		Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim, Vocab: cfg.Vocab, TiedEmbeddings: cfg.TieWordEmbeddings,
		QKVBias: cfg.QKVBias, OBias: cfg.OBias, MLPBias: cfg.MLPBias, WeightBytes: held}, Merge: PlanMerge(s)}
	var ads []*adapter.Adapter
	names := map[string]bool{}
	for _, a := range s.Adapters {
		ad, err := adapter.Load(a.Path)
		if err != nil {
			return in, fmt.Errorf("adapter %s: %w", a.Name, err)
		}
		if err := ad.Validate(shapes); err != nil {
			return in, fmt.Errorf("adapter %s does not fit base model %s: %w", a.Name, s.BaseModel, err)
		}
		ads = append(ads, ad)
		for n := range ad.Modules {
			names[n] = true
		}
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		out, inw, _ := shapes.LinearShape(n) // every adapter module was validated against shapes
		site := layerplan.Site{Name: n, In: inw, Out: out}
		for _, ad := range ads {
			r := 0
			if m, ok := ad.Modules[n]; ok {
				r = m.R
			}
			site.Ranks = append(site.Ranks, r)
		}
		in.Sites = append(in.Sites, site)
	}
	in.Tasks, err = planTasks(s)
	return in, err
}

// PlanMerge maps the config's method onto the plan's vocabulary.
func PlanMerge(s *spec.Spec) layerplan.Merge {
	p, rank := s.Parameters, s.Output.Rank
	switch s.Method {
	case spec.MethodIterIS:
		g := layerplan.Merge{Method: layerplan.DataAware, Schedule: layerplan.Schedule(p.Schedule), Solves: 1,
			Objective: layerplan.Objective(p.Objective), Adaptive: p.AdaptiveWeights, Rank: rank, BatchSize: p.BatchSize}
		if g.Schedule == layerplan.Jacobi {
			g.Solves = p.Iterations
		} else {
			g.RefineSteps = p.Refine.Steps
		}
		return g
	case spec.MethodRegMean:
		return layerplan.Merge{Method: layerplan.DataAware, Schedule: layerplan.Jacobi, Solves: 1, Objective: layerplan.Delta,
			Rank: rank, BatchSize: p.BatchSize}
	}
	g := layerplan.Merge{Method: layerplan.WeightOnly}
	switch s.Method {
	case spec.MethodCat:
		// cat keeps the sum of the ranks, truncated to output.rank when that is smaller: a
		// positive rank is an upper bound of the factors' size.
		g.Rank = max(rank, layerplan.RankAuto)
	case spec.MethodSVD:
		g.Rank = layerplan.RankMax
		if r := p.SVDRank; r > 0 {
			g.Rank = r
		} else if rank > 0 {
			g.Rank = rank
		}
	case spec.MethodTIESSVD, spec.MethodMagnitudePruneSVD:
		g.Dense, g.Rank = true, rank
		if p.SVDRank > 0 {
			g.Rank = p.SVDRank
		}
	default: // linear, ties, magnitude_prune, dare_*: the (equal) input rank
		g.Rank = layerplan.RankMax
	}
	return g
}

// planTasks returns each adapter's calibration sequences: given token ids as they are, a prompt
// as its tokens plus the completion budget (completion_tokens, or max_new_tokens when auto: an
// upper bound, since generation stops at EOS).
func planTasks(s *spec.Spec) ([]layerplan.Task, error) {
	var tasks []layerplan.Task
	var tok *tokenizer.Tokenizer
	budget := s.Parameters.CompletionTokens
	if budget == spec.CompletionAuto {
		budget = s.Parameters.MaxNewTokens
	}
	for _, a := range s.Adapters {
		t := layerplan.Task{Name: a.Name}
		if !s.DataAware() {
			tasks = append(tasks, t)
			continue
		}
		items, err := eval.LoadJSONL(a.Calibration)
		if err != nil {
			return nil, fmt.Errorf("adapter %s calibration: %w", a.Name, err)
		}
		n := s.Parameters.SampleCount(len(items))
		if n > len(items) {
			return nil, fmt.Errorf("adapter %s: parameters.samples is %d but %s has only %d items", a.Name, n, a.Calibration, len(items))
		}
		for _, it := range items[:n] {
			if len(it.InputIDs) > 0 {
				t.Lengths, t.Completions = append(t.Lengths, len(it.InputIDs)), append(t.Completions, 0)
				continue
			}
			if tok == nil {
				if tok, err = tokenizer.LoadDir(s.BaseModel); err != nil {
					return nil, fmt.Errorf("base_model: calibration prompts need the tokenizer: %w", err)
				}
			}
			ids := tok.Encode(it.Prompt, true)
			if len(ids) == 0 {
				return nil, fmt.Errorf("%s: the prompt has no tokens", it.Source)
			}
			t.Lengths, t.Completions = append(t.Lengths, len(ids)+budget), append(t.Completions, budget)
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}
