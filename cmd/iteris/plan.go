package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/spec"
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
	in, err := mergejob.PlanInput(s)
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
