package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/internal/tokenizer"
	"github.com/iteris-dev/iteris/layerplan"
)

const planUsage = "plan CONFIG.yaml --workers N --memory SIZE [--json]"

// cmdPlan is `iteris plan`: a dry run that cuts the merge into shards for N workers of SIZE
// memory each and prints the shards, each worker's estimated peak, the steps and the bytes
// they move. Nothing heavy is loaded: config.json, the adapters and the calibration prompts.
func cmdPlan(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workers := fs.Int("workers", 0, "number of workers (default: the config's cluster.workers)")
	memory := fs.String("memory", "", "memory of each worker: 512MiB, 8GiB, 8G, 1.5TiB or bytes")
	asJSON := fs.Bool("json", false, "print the plan as its canonical JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *memory == "" || *workers < 0 {
		return fmt.Errorf("%w: %s", errUsage, planUsage)
	}
	mem, err := layerplan.ParseSize(*memory)
	if err != nil {
		return fmt.Errorf("%w: --memory: %v", errUsage, err)
	}
	s, err := spec.Load(pos[0])
	if err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return err
	}
	n := *workers
	if n == 0 {
		n = s.Cluster.Workers
	}
	if n > layerplan.MaxWorkers {
		return fmt.Errorf("%w: --workers %d: at most %d", errUsage, n, layerplan.MaxWorkers)
	}
	in, err := planInput(s)
	if err != nil {
		return err
	}
	ws := make([]layerplan.Worker, n)
	for i := range ws {
		ws[i] = layerplan.Worker{ID: fmt.Sprintf("worker-%d", i), Memory: mem}
	}
	plan, err := layerplan.Build(in, ws)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	if *asJSON {
		b, err := plan.Encode()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return printPlan(stdout, pos[0], s, plan)
}

// planInput reads what a plan needs without loading the base weights: the base model's
// config.json, the adapters (checked against its shapes) and, for the data-aware methods, the
// calibration sequences' lengths (prompt tokens plus the completion budget, or the given ids).
func planInput(s *spec.Spec) (layerplan.Input, error) {
	cfg, err := model.LoadConfig(filepath.Join(s.BaseModel, "config.json"))
	if err != nil {
		return layerplan.Input{}, err
	}
	shapes := model.ShapesOf(cfg)
	in := layerplan.Input{Model: layerplan.Model{Layers: cfg.Layers, Hidden: cfg.Hidden, Intermediate: cfg.Intermediate,
		Heads: cfg.Heads, KVHeads: cfg.KVHeads, HeadDim: cfg.HeadDim, Vocab: cfg.Vocab, TiedEmbeddings: cfg.TieWordEmbeddings,
		QKVBias: cfg.QKVBias, OBias: cfg.OBias, MLPBias: cfg.MLPBias, WeightBytes: 4}, Merge: planMerge(s)}
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

// planMerge maps the config's method onto the plan's vocabulary.
func planMerge(s *spec.Spec) layerplan.Merge {
	p, rank := s.Parameters, s.Output.Rank
	switch s.Method {
	case spec.MethodIterIS:
		g := layerplan.Merge{Method: layerplan.DataAware, Schedule: layerplan.Schedule(p.Schedule), Solves: 1,
			Objective: layerplan.Objective(p.Objective), Adaptive: p.AdaptiveWeights, Rank: rank, BatchSize: p.BatchSize}
		if g.Schedule == layerplan.Jacobi {
			g.Solves = p.Iterations
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
		if s.Parameters.Samples > len(items) {
			return nil, fmt.Errorf("adapter %s: parameters.samples is %d but %s has only %d items", a.Name, s.Parameters.Samples, a.Calibration, len(items))
		}
		for _, it := range items[:s.Parameters.Samples] {
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

// printPlan writes the plan for a terminal: the merge, the single-process estimate, the shards
// and the steps by stage.
func printPlan(w io.Writer, path string, s *spec.Spec, p *layerplan.Plan) error {
	in := p.Input
	md := in.Model
	fmt.Fprintf(w, "plan for %s: %s, %d adapters, %d workers of %s\n", path, describeMerge(s, in.Merge), len(in.Tasks),
		len(p.Workers), layerplan.FormatSize(p.Workers[0].Memory))
	fmt.Fprintf(w, "model: %d layers, hidden %d, intermediate %d, %d heads (%d kv) of %d, vocab %d; %d sites in %d levels\n",
		md.Layers, md.Hidden, md.Intermediate, md.Heads, md.KVHeads, md.HeadDim, md.Vocab, len(in.Sites), len(p.Levels))
	if in.Merge.Method == layerplan.DataAware {
		var rows int64
		seqs := 0
		for _, t := range in.Tasks {
			rows += t.Rows()
			seqs += len(t.Lengths)
		}
		fmt.Fprintf(w, "calibration: %d sequences, %d rows\n", seqs, rows)
	}
	sp := p.SingleProcess.PeakUsage()
	fmt.Fprintf(w, "single process: %s (%s)\n\nshards:\n", layerplan.FormatSize(p.SingleProcess.Peak), sp.Describe(3))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  shard\tlayers\tworker\tpeak\tmemory\twork\tlargest parts")
	for _, sh := range p.Shards {
		wk := p.Workers[sh.Worker]
		fmt.Fprintf(tw, "  %d\t%d-%d\t%s\t%s\t%s\t%s\t%s\n", sh.Index, sh.Lo, sh.Hi-1, wk.ID, layerplan.FormatSize(sh.Footprint.Peak),
			layerplan.FormatSize(wk.Memory), formatFLOPs(sh.Work), sh.Footprint.PeakUsage().Describe(3))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nsteps: %d in %d stages, %s moved\n", len(p.Steps), p.Stages, layerplan.FormatSize(p.BytesMoved))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, st := range p.Steps {
		stage := ""
		if i == 0 || p.Steps[i-1].Stage != st.Stage {
			stage = "stage " + strconv.Itoa(st.Stage)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", stage, st.Name(), layerplan.FormatSize(st.Bytes), describeSends(st.Sends))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range p.Notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	return nil
}

func describeMerge(s *spec.Spec, g layerplan.Merge) string {
	if g.Method == layerplan.WeightOnly {
		return s.Method + " (weight-only)"
	}
	sched := string(g.Schedule)
	if g.Schedule == layerplan.Jacobi {
		sched = fmt.Sprintf("jacobi, %d solves", g.Solves)
		if g.Solves == 1 {
			sched = "jacobi, 1 solve"
		}
	}
	return fmt.Sprintf("%s (%s, objective %s)", s.Method, sched, g.Objective)
}

func describeSends(ts []layerplan.Transfer) string {
	var parts []string
	for _, t := range ts {
		what := string(t.Artifact)
		if t.Stream != "" {
			what = string(t.Stream) + " " + what
		}
		to := "coordinator"
		if t.To != layerplan.Coordinator {
			to = "shard " + strconv.Itoa(t.To)
		}
		parts = append(parts, fmt.Sprintf("%s %s -> %s", what, layerplan.FormatSize(t.Bytes), to))
	}
	return strings.Join(parts, ", ")
}

// formatFLOPs prints a FLOP count in decimal units: "820.1 MFLOP", "181.6 TFLOP".
func formatFLOPs(f int64) string {
	units := []string{"FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP"}
	v, u := float64(f), 0
	for v >= 999.95 && u < len(units)-1 {
		v /= 1000
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d FLOP", f)
	}
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + " " + units[u]
}
