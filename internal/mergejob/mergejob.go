// Package mergejob is what the cluster knows about merges: it turns a submitted config into a
// job (checked exactly as `iteris merge` checks it, with the calibration prompts tokenised and
// stored), cuts a job into shards, loads a shard on a worker, checks the workers' results and
// assembles a finished job's output files. The coordinator and the worker call it through their
// own interfaces; it depends on neither's shell.
package mergejob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/layerplan"
	"github.com/iteris-dev/iteris/protocol"
)

// Handler implements coordinator.Jobs.
type Handler struct {
	// Version is the iteris version recorded in reports.
	Version string
	// Roots, when set, are the directories (absolute, symbolic links resolved) every path of a
	// submitted config must lie in: what a submitter can make the cluster read. Empty: any path.
	Roots []string
}

// Meta is what a job keeps of its validation for the report (JobSpec.Footprint holds it).
type Meta struct {
	// Hashes maps every input file to its sha256.
	Hashes map[string]string `json:"hashes"`
	// Warnings are the validation's warnings.
	Warnings []string `json:"warnings"`
	// RankClamped counts modules whose output rank was clamped.
	RankClamped int `json:"rank_clamped"`
	// Levels is the model's number of dependency levels (jacobi needs that many solves).
	Levels int `json:"levels"`
	// Modules counts each task's adapter modules.
	Modules []int `json:"modules"`
	// Plan is the input the shards are cut from when the job starts.
	Plan layerplan.Input `json:"plan"`
	// Sites are the modules of the merge (every adapter's, sorted): a result's factors must
	// hold exactly its shard's (CheckResult).
	Sites []string `json:"sites,omitempty"`
}

// Open parses a submitted config and resolves its relative paths against dir.
func Open(config []byte, path, dir string) (*spec.Spec, error) {
	if path == "" {
		path = "config.yaml"
	}
	s, err := spec.Parse(config, path)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		s = s.Resolve(dir)
	}
	return s, nil
}

// Prepare checks a submission (the config, every input it names, as `iteris merge` does before
// heavy work), stores its calibration prompts under job, and returns the job's spec. A refusal
// names the paths as the config gives them, so it reads exactly as `iteris merge` run in the
// submitter's directory.
func (h *Handler) Prepare(ctx context.Context, sub protocol.Submit, job string, store coordinator.ArtifactStore) (js coordinator.JobSpec, err error) {
	s, err := Open(sub.Config, sub.Path, sub.Dir)
	if err != nil {
		return coordinator.JobSpec{}, err
	}
	raw, err := Open(sub.Config, sub.Path, "")
	if err != nil {
		return coordinator.JobSpec{}, err
	}
	if err := checkRoots(h.Roots, raw, s); err != nil {
		return coordinator.JobSpec{}, err
	}
	defer func() { err = asSubmitted(err, raw, s) }()
	return h.prepare(ctx, sub, s, job, store)
}

func (h *Handler) prepare(ctx context.Context, sub protocol.Submit, s *spec.Spec, job string, store coordinator.ArtifactStore) (coordinator.JobSpec, error) {
	if err := s.Validate(); err != nil {
		return coordinator.JobSpec{}, err
	}
	meta := Meta{}
	warn := func(format string, a ...any) { meta.Warnings = append(meta.Warnings, fmt.Sprintf(format, a...)) }
	for _, w := range s.Warnings() {
		warn("%s", w)
	}
	in, err := inputs.Prepare(ctx, inputs.Config{Spec: s, Warn: warn})
	if err != nil {
		return coordinator.JobSpec{}, err
	}
	if s.Method == spec.MethodLinear {
		warn("method linear averages the A's and the B's separately, as PEFT does: it is not task arithmetic (use cat for the exact weighted sum of updates)")
	}
	meta.Hashes, meta.RankClamped = in.Hashes, in.RankClamped
	var tasks []shard.Task
	for _, t := range in.Tasks {
		meta.Modules = append(meta.Modules, len(t.Adapter.Modules))
		tasks = append(tasks, shard.Task{Adapter: t.Adapter})
	}
	meta.Sites = shard.ModuleNames(tasks, 0, in.Config.Layers)
	meta.Levels = levels(in)
	if meta.Plan, err = PlanInput(s); err != nil {
		return coordinator.JobSpec{}, err
	}
	js := coordinator.JobSpec{Config: sub.Config, Path: sub.Path, Dir: sub.Dir, Command: sub.Command, Method: s.Method,
		Workers: max(1, s.Cluster.Workers), Layers: in.Config.Layers}
	if sub.Workers > 0 {
		js.Workers = sub.Workers
	}
	sum := sha256.Sum256(append(append([]byte{}, sub.Config...), sub.Dir...))
	js.Hash = hex.EncodeToString(sum[:])
	if s.DataAware() {
		set := shard.SettingsOf(s)
		js.Schedule, js.Tolerance = set.Schedule, set.Tolerance
		if err := h.calibration(ctx, s, in, job, store, &js); err != nil {
			return coordinator.JobSpec{}, err
		}
		js.Steps = append(js.Steps, solveSteps(set)...)
		if s.Method == spec.MethodIterIS && set.Schedule == shard.Jacobi && set.Iterations < meta.Levels {
			msg := fmt.Sprintf("jacobi with %d solves has not converged: this model has %d dependency levels, and jacobi reaches the sweep's fixed point only after that many solves", set.Iterations, meta.Levels)
			if set.Objective == merge.Full {
				msg += "; with objective full it collapses there (use schedule: sweep)"
			}
			warn("%s", msg)
		}
	} else {
		js.Steps = []coordinator.Step{{Kind: protocol.StepWeightOnly}}
	}
	if js.Footprint, err = json.Marshal(meta); err != nil {
		return coordinator.JobSpec{}, err
	}
	return js, nil
}

// submittedError is a refusal whose message names the paths as the config gives them.
type submittedError struct {
	msg string
	err error
}

func (e *submittedError) Error() string { return e.msg }
func (e *submittedError) Unwrap() error { return e.err }

// asSubmitted rewrites the resolved paths of resolved in err's message back to raw's (the longest
// first, so a path inside another is rewritten whole).
func asSubmitted(err error, raw, resolved *spec.Spec) error {
	if err == nil {
		return nil
	}
	type pair struct{ from, to string }
	pairs := []pair{{resolved.BaseModel, raw.BaseModel}}
	for i := range resolved.Adapters {
		pairs = append(pairs, pair{resolved.Adapters[i].Path, raw.Adapters[i].Path}, pair{resolved.Adapters[i].Calibration, raw.Adapters[i].Calibration})
	}
	sort.SliceStable(pairs, func(i, j int) bool { return len(pairs[i].from) > len(pairs[j].from) })
	msg := err.Error()
	for _, p := range pairs {
		if p.from != p.to && p.from != "" {
			msg = strings.ReplaceAll(msg, p.from, p.to)
		}
	}
	if msg == err.Error() {
		return err
	}
	return &submittedError{msg: msg, err: err}
}

// levels counts the dependency levels: the (layer, point) pairs that carry a site.
func levels(in *inputs.Inputs) int {
	seen := map[[2]int]bool{}
	for _, t := range in.Tasks {
		for n := range t.Adapter.Modules {
			if l, p, ok := pointOf(n); ok {
				seen[[2]int{l, int(p)}] = true
			}
		}
	}
	return len(seen)
}

// solveSteps returns the solve steps of a data-aware merge.
func solveSteps(set shard.Settings) []coordinator.Step {
	if set.Method == shard.MethodIterIS && set.Schedule == shard.Sweep {
		return []coordinator.Step{{Kind: protocol.StepSweep}}
	}
	iters := set.Iterations
	if set.Method == shard.MethodRegMean {
		iters = 1
	}
	var out []coordinator.Step
	for k := 1; k <= iters; k++ {
		out = append(out, coordinator.Step{Kind: protocol.StepJacobi, Solve: k})
	}
	return out
}

// calibration tokenises every calibration item and stores the prompts (a calibrate step
// completes them) or, when every item is a complete sequence, the sequences themselves.
func (h *Handler) calibration(ctx context.Context, s *spec.Spec, in *inputs.Inputs, job string, store coordinator.ArtifactStore, js *coordinator.JobSpec) error {
	p := s.Parameters
	maxNew := p.CompletionTokens
	if maxNew <= 0 {
		maxNew = p.MaxNewTokens
	}
	prompts := make([][]protocol.Prompt, len(in.Tasks))
	seqs := make([][][]int, len(in.Tasks))
	complete := false
	for i, t := range in.Tasks {
		for _, it := range t.Items {
			if len(it.InputIDs) > 0 {
				prompts[i] = append(prompts[i], protocol.Prompt{Tokens: it.InputIDs})
				seqs[i] = append(seqs[i], it.InputIDs)
				continue
			}
			if in.Tokenizer == nil {
				return fmt.Errorf("%s: %w: item has a prompt but the base model has no tokenizer.json", it.Source, inputs.ErrInput)
			}
			tok := in.Tokenizer.Encode(it.Prompt, true)
			prompts[i] = append(prompts[i], protocol.Prompt{Tokens: tok, MaxNew: maxNew})
			complete = complete || maxNew > 0
		}
	}
	var err error
	if complete {
		content, cerr := protocol.EncodePrompts(prompts)
		if cerr != nil {
			return cerr
		}
		js.Prompts, err = store.Put(ctx, job, protocol.KindPrompts, content)
		js.Steps = append(js.Steps, coordinator.Step{Kind: protocol.StepCalibrate})
	} else {
		for i := range prompts {
			seqs[i] = nil
			for _, pr := range prompts[i] {
				seqs[i] = append(seqs[i], pr.Tokens)
			}
		}
		content, cerr := protocol.EncodeSequences(seqs)
		if cerr != nil {
			return cerr
		}
		js.Sequences, err = store.Put(ctx, job, protocol.KindSequences, content)
	}
	return err
}
