package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/internal/tokenizer"
)

// Options configures Run.
type Options struct {
	// Spec is the parsed merge config.
	Spec *spec.Spec
	// Out is the output directory.
	Out string
	// Force allows replacing a non-empty Out.
	Force bool
	// Progress reports phases; nil shows nothing.
	Progress *progress.Reporter
	// Warnings receives warnings, one per line; nil discards them.
	Warnings io.Writer
	// Command is the command line, recorded in the model card.
	Command string
	// Version is the iteris version, recorded in the report.
	Version string
}

// Report is merge_report.json.
type Report struct {
	Version   string             `json:"iteris_version"`
	Method    string             `json:"method"`
	Settings  map[string]any     `json:"settings"`
	Inputs    Inputs             `json:"inputs"`
	Tasks     []TaskReport       `json:"tasks"`
	Levels    int                `json:"dependency_levels,omitempty"`
	Converged *bool              `json:"converged,omitempty"`
	Solves    []SolveRecord      `json:"solves,omitempty"`
	Output    OutputReport       `json:"output"`
	Timings   map[string]float64 `json:"timings_seconds"`
	Warnings  []string           `json:"warnings"`
}

// Inputs records the sha256 of every input file.
type Inputs struct {
	BaseModel string            `json:"base_model"`
	Files     map[string]string `json:"sha256"`
}

// TaskReport describes one adapter of the merge.
type TaskReport struct {
	Name        string  `json:"name"`
	Path        string  `json:"path"`
	Weight      float64 `json:"weight"`
	Calibration string  `json:"calibration,omitempty"`
	Sequences   int     `json:"sequences,omitempty"`
	Tokens      int     `json:"tokens,omitempty"`
	Modules     int     `json:"modules"`
}

// OutputReport describes the written adapter.
type OutputReport struct {
	Dir     string `json:"dir"`
	Modules int    `json:"modules"`
	MaxRank int    `json:"max_rank"`
	DType   string `json:"dtype"`
}

// Run performs the merge the spec describes and writes OUT_DIR. Every input is read and checked
// before any heavy work; on error the output directory is left as it was.
func Run(opt Options) (*Report, error) {
	t0 := time.Now()
	s := opt.Spec
	rep := opt.Progress
	if rep == nil {
		rep = progress.Discard()
	}
	var warnings []string
	warn := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		warnings = append(warnings, msg)
		if opt.Warnings != nil {
			fmt.Fprintln(opt.Warnings, "warning:", msg)
		}
	}
	for _, w := range s.Warnings() {
		warn("%s", w)
	}
	if err := checkOut(opt.Out, opt.Force); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	in, err := prepare(s, warn)
	if err != nil {
		return nil, err
	}
	timings := map[string]float64{"validate": time.Since(t0).Seconds()}

	report := &Report{Version: opt.Version, Method: s.Method, Settings: s.Canonical(),
		Inputs: Inputs{BaseModel: s.BaseModel, Files: in.hashes}, Timings: timings}

	// Heavy work from here on. Weight-only merges never need the base weights.
	var mods []*adapter.Module
	if s.DataAware() {
		t1 := time.Now()
		base, err := model.Load(s.BaseModel)
		if err != nil {
			return nil, err
		}
		timings["load"] = time.Since(t1).Seconds()
		t2 := time.Now()
		ph := rep.Phase("calibration", len(in.tasks))
		for i, t := range in.tasks {
			tm, err := base.WithLoRA(LoRAs(t.Adapter), false)
			if err != nil {
				return nil, err
			}
			p := s.Parameters
			t.Seqs, err = Calibrate(tm, in.tok, in.items[i], CalibOptions{Samples: p.Samples, CompletionTokens: p.CompletionTokens,
				MaxNewTokens: p.MaxNewTokens, BatchSize: p.BatchSize})
			if err != nil {
				return nil, fmt.Errorf("calibration of %s: %w", t.Name, err)
			}
			ph.Set(i + 1)
		}
		ph.Done()
		timings["calibration"] = time.Since(t2).Seconds()
		set := settingsOf(s)
		mg, err := NewMerger(base, in.tasks, set, rep)
		if err != nil {
			return nil, err
		}
		report.Levels = mg.Levels()
		if s.Method == "iteris" && set.Schedule == Jacobi && set.Iterations < mg.Levels() {
			conv := false
			report.Converged = &conv
			msg := fmt.Sprintf("jacobi with %d solves has not converged: this model has %d dependency levels, and jacobi reaches the sweep's fixed point only after that many solves", set.Iterations, mg.Levels())
			if set.Objective == merge.Full {
				warn("%s; with objective full it collapses there (use schedule: sweep)", msg)
			} else {
				warnings = append(warnings, msg)
			}
		} else if s.Method == "iteris" {
			conv := true
			report.Converged = &conv
		}
		t3 := time.Now()
		recs, err := mg.Run()
		if err != nil {
			return nil, err
		}
		report.Solves = recs
		var capture, solve float64
		for _, r := range recs {
			capture += r.CaptureSeconds
			solve += r.SolveSeconds
		}
		timings["capture"], timings["solve"] = capture, solve
		timings["merge"] = time.Since(t3).Seconds()
		mods = mg.Result()
	} else {
		t3 := time.Now()
		mods, err = weightOnly(s, in.tasks, warn)
		if err != nil {
			return nil, err
		}
		timings["merge"] = time.Since(t3).Seconds()
	}
	for i, t := range in.tasks {
		tr := TaskReport{Name: t.Name, Path: s.Adapters[i].Path, Weight: t.Weight, Calibration: s.Adapters[i].Calibration,
			Sequences: len(t.Seqs), Modules: len(t.Adapter.Modules)}
		for _, q := range t.Seqs {
			tr.Tokens += len(q)
		}
		report.Tasks = append(report.Tasks, tr)
	}
	dt, err := dtypeOf(s.Output.DType)
	if err != nil {
		return nil, err
	}
	report.Output = OutputReport{Dir: opt.Out, Modules: len(mods), DType: s.Output.DType}
	for _, m := range mods {
		report.Output.MaxRank = max(report.Output.MaxRank, m.R)
	}
	report.Warnings = append([]string{}, warnings...)
	timings["total"] = time.Since(t0).Seconds()
	t4 := time.Now()
	if err := writeOut(opt, report, mods, dt, in); err != nil {
		return nil, err
	}
	timings["write"] = time.Since(t4).Seconds()
	return report, nil
}

func dtypeOf(s string) (safetensors.DType, error) {
	switch s {
	case "", "float32":
		return safetensors.F32, nil
	case "float16":
		return safetensors.F16, nil
	case "bfloat16":
		return safetensors.BF16, nil
	}
	return "", fmt.Errorf("%w: output.dtype %q (want float32, float16 or bfloat16)", ErrInput, s)
}

func settingsOf(s *spec.Spec) SolveSettings {
	p := s.Parameters
	set := SolveSettings{Method: s.Method, Objective: merge.Objective(p.Objective), Schedule: p.Schedule, Iterations: p.Iterations,
		Tolerance: p.Tolerance, Alpha1: p.Alpha1, Alpha2: p.Alpha2, Adaptive: p.AdaptiveWeights, Rank: s.Output.Rank,
		Reduce: p.Reduce, Seed: p.Seed, BatchSize: p.BatchSize}
	if s.Method == "regmean" {
		set.Objective, set.Schedule, set.Iterations = merge.Delta, Jacobi, 1
		set.Adaptive, set.Alpha1, set.Alpha2 = false, 0, 0
	}
	return set
}

// inputs is everything read and checked before the heavy work.
type inputs struct {
	tasks  []*Task
	items  [][]eval.Item
	tok    *tokenizer.Tokenizer
	shapes model.Shapes
	hashes map[string]string
}

// prepare reads the adapters and calibration files and checks them against the base model's
// config, without loading the base weights.
func prepare(s *spec.Spec, warn func(string, ...any)) (*inputs, error) {
	cfg, err := model.LoadConfig(filepath.Join(s.BaseModel, "config.json"))
	if err != nil {
		return nil, err
	}
	if _, err := safetensors.OpenCheckpoint(s.BaseModel); err != nil {
		return nil, fmt.Errorf("base_model: %w", err)
	}
	in := &inputs{shapes: model.ShapesOf(cfg), hashes: map[string]string{}}
	for _, a := range s.Adapters {
		ad, err := adapter.Load(a.Path)
		if err != nil {
			return nil, fmt.Errorf("adapter %s: %w", a.Name, err)
		}
		if err := ad.Validate(in.shapes); err != nil {
			return nil, fmt.Errorf("adapter %s does not fit base model %s: %w", a.Name, s.BaseModel, err)
		}
		if err := ad.HasNaN(); err != nil {
			return nil, fmt.Errorf("adapter %s: %w", a.Name, err)
		}
		in.tasks = append(in.tasks, &Task{Name: a.Name, Adapter: ad, Weight: a.Weight})
	}
	// Adapters of one merge should share modules.
	common := map[string]int{}
	for _, t := range in.tasks {
		for n := range t.Adapter.Modules {
			common[n]++
		}
	}
	shared := 0
	for _, c := range common {
		if c == len(in.tasks) {
			shared++
		}
	}
	if shared == 0 && len(in.tasks) > 1 {
		var desc []string
		for _, t := range in.tasks {
			desc = append(desc, fmt.Sprintf("%s targets %s", t.Name, strings.Join(leafNames(t.Adapter), ",")))
		}
		return nil, fmt.Errorf("%w: the adapters' target modules do not overlap (no module is in every adapter): %s", ErrInput, strings.Join(desc, "; "))
	}
	if shared < len(common) {
		warn("%d of %d modules are not in every adapter; where an adapter lacks a module its update there is zero", len(common)-shared, len(common))
	}
	bases := map[string]bool{}
	for _, t := range in.tasks {
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
	if s.DataAware() {
		needTok := false
		for _, a := range s.Adapters {
			items, err := eval.LoadJSONL(a.Calibration)
			if err != nil {
				return nil, fmt.Errorf("adapter %s calibration: %w", a.Name, err)
			}
			if s.Parameters.Samples > len(items) {
				return nil, fmt.Errorf("%w: adapter %s: parameters.samples is %d but %s has only %d items", ErrInput, a.Name, s.Parameters.Samples, a.Calibration, len(items))
			}
			items = items[:s.Parameters.Samples]
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
			in.items = append(in.items, items)
		}
		if needTok {
			if in.tok, err = tokenizer.LoadDir(s.BaseModel); err != nil {
				return nil, fmt.Errorf("base_model: calibration prompts need the tokenizer: %w", err)
			}
		}
	}
	if err := hashInputs(s, in.hashes); err != nil {
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

// hashInputs records the sha256 of the base model's files, the adapters' files and the
// calibration files.
func hashInputs(s *spec.Spec, out map[string]string) error {
	var files []string
	entries, err := os.ReadDir(s.BaseModel)
	if err != nil {
		return fmt.Errorf("base_model: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && (strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".safetensors")) {
			files = append(files, filepath.Join(s.BaseModel, n))
		}
	}
	for _, a := range s.Adapters {
		files = append(files, filepath.Join(a.Path, "adapter_config.json"), filepath.Join(a.Path, "adapter_model.safetensors"))
		if a.Calibration != "" && s.DataAware() {
			files = append(files, a.Calibration)
		}
	}
	for _, f := range files {
		h, err := sha256File(f)
		if err != nil {
			return err
		}
		out[f] = h
	}
	return nil
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkOut refuses a non-empty output directory unless force is set.
func checkOut(out string, force bool) error {
	if out == "" {
		return fmt.Errorf("%w: no output directory", ErrInput)
	}
	fi, err := os.Stat(out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: output %s: %v", ErrInput, out, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: output %s exists and is not a directory", ErrInput, out)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return fmt.Errorf("%w: output %s: %v", ErrInput, out, err)
	}
	if len(entries) > 0 && !force {
		return fmt.Errorf("%w: output directory %s is not empty (use --force to replace it)", ErrInput, out)
	}
	return nil
}

// writeOut writes the adapter, model card, config copy and report into a temporary directory next
// to OUT_DIR and renames it into place.
func writeOut(opt Options, report *Report, mods []*adapter.Module, dt safetensors.DType, in *inputs) error {
	rj, err := json.MarshalIndent(sanitize(report), "", "  ")
	if err != nil {
		return fmt.Errorf("merge report: %w", err)
	}
	files := map[string][]byte{
		"README.md":          []byte(modelCard(opt, report)),
		"merge_report.json":  append(rj, '\n'),
		"iteris_config.yaml": opt.Spec.Raw,
	}
	parent := filepath.Dir(filepath.Clean(opt.Out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(opt.Out)+".tmp-")
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	defer os.RemoveAll(tmp)
	stage := filepath.Join(tmp, "adapter")
	if err := adapter.Write(stage, mods, adapter.WriteOptions{BaseModel: opt.Spec.BaseModel, DType: dt, Base: in.shapes, Files: files,
		Metadata: map[string]string{"iteris_method": report.Method}}); err != nil {
		return err
	}
	if _, err := os.Stat(opt.Out); err == nil {
		// Checked empty (or --force) before any work: move the old directory aside, then drop it.
		old := filepath.Join(tmp, "old")
		if err := os.Rename(opt.Out, old); err != nil {
			return fmt.Errorf("output: replace %s: %w", opt.Out, err)
		}
		if err := os.Rename(stage, opt.Out); err != nil {
			os.Rename(old, opt.Out)
			return fmt.Errorf("output: %w", err)
		}
		return nil
	}
	if err := os.Rename(stage, opt.Out); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	return nil
}

// sanitize replaces non-finite numbers (JSON cannot hold them) by nulls via a round trip.
func sanitize(r *Report) *Report {
	for i := range r.Solves {
		for n, s := range r.Solves[i].Sites {
			if math.IsNaN(s.Residual) || math.IsInf(s.Residual, 0) {
				s.Residual = -1
			}
			r.Solves[i].Sites[n] = s
		}
	}
	return r
}
