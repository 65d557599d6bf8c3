package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/iteris-dev/iteris/internal/embedded"
	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/pipeline"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/spec"
)

// mergeOpts are the flags of iteris merge.
type mergeOpts struct {
	force          *bool
	progress, blas *string
	workers        *int
}

func mergeFlags() (*flag.FlagSet, mergeOpts) {
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	o := mergeOpts{
		force:    fs.Bool("force", false, "replace a non-empty OUT_DIR (never one that is, contains or lies inside an input)"),
		progress: fs.String("progress", "auto", "progress display: auto (a bar on a terminal), bar, json (JSON lines on stderr) or none"),
		blas:     fs.String("blas", "auto", "BLAS backend: auto (OpenBLAS when found), openblas or gonum"),
		workers:  fs.Int("workers", 2, "in-process workers of the embedded cluster, each holding a layer shard (0: the single-process driver, no cluster)"),
	}
	return fs, o
}

const mergeHelp = `Usage: iteris merge CONFIG.yaml OUT_DIR [flags]

Merges the LoRA adapters that CONFIG.yaml lists into one PEFT adapter in OUT_DIR, on the embedded
cluster: an in-process NATS server, a single-node raft coordinator and --workers workers, each
holding a layer shard (the same code as a multi-machine cluster; the adapter is byte-identical for
any number of workers). Everything is checked before any heavy work.

  CONFIG.yaml  the merge config (YAML). Paths in it are relative to the working directory, as in
               mergekit, not to the config file's folder.
  OUT_DIR      the output directory; it must not exist or be empty unless --force is given.

A config (a complete one is examples/merge4.yaml; docs/operations.md lists every parameter):

  base_model: models/base            # config.json, model.safetensors, tokenizer.json
  method: iteris                     # regmean, cat, linear, svd, ties, dare_linear, ...
  adapters:
    - {name: rev, path: adapters/rev, calibration: data/rev/calib.jsonl}
    - {name: upc, path: adapters/upc, calibration: data/upc/calib.jsonl, weight: 1.0}
  parameters: {samples: 16, objective: full, schedule: sweep}
  output: {rank: auto, dtype: float32}

OUT_DIR receives adapter_config.json, adapter_model.safetensors, README.md (model card),
iteris_config.yaml (the config as given) and merge_report.json.

Flags:
`

func cmdMerge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := mergeFlags()
	fs.SetOutput(stderr)
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), mergeHelp+flagDefaults(fs)+"\n"+exitCodes)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	rep, err := progress.New(progress.Mode(*o.progress), stderr)
	if err != nil {
		return fmt.Errorf("%w: --progress: %v", errUsage, err)
	}
	err = merge(ctx, rep, pos, o, args, stdout, stderr)
	if err != nil && rep.Mode() == progress.JSON {
		rep.Event("error", map[string]any{"message": message(err), "exit_code": exitCode(err, io.Discard)})
		return reported{err}
	}
	return err
}

func merge(ctx context.Context, rep *progress.Reporter, pos []string, o mergeOpts, args []string, stdout, stderr io.Writer) error {
	if len(pos) != 2 {
		return fmt.Errorf("%w: merge CONFIG.yaml OUT_DIR [--force] [--progress auto|bar|json|none] (got %d arguments; see iteris merge --help)", errUsage, len(pos))
	}
	switch *o.blas {
	case linalg.ModeAuto, linalg.ModeGonum, linalg.ModeOpenBLAS:
	default:
		return fmt.Errorf("%w: --blas %q: want auto, openblas or gonum", errUsage, *o.blas)
	}
	s, err := spec.Load(pos[0])
	if err != nil {
		return err
	}
	if s.Cluster.Mode != "" && s.Cluster.Mode != spec.ClusterEmbedded {
		return fmt.Errorf("%s: cluster.mode %q: iteris merge runs the embedded cluster; submit to a running cluster with iteris submit CONFIG OUT_DIR --nats URL", pos[0], s.Cluster.Mode)
	}
	if *o.workers < 0 || *o.workers > 256 {
		return fmt.Errorf("%w: --workers %d: want 0 (single process) to 256", errUsage, *o.workers)
	}
	backend, err := linalg.Init(*o.blas)
	if err != nil {
		return err
	}
	warnings := stderr
	if rep.Mode() == progress.JSON {
		warnings = eventWriter{rep}
	}
	warnKernel(warnings, backend)
	if *o.workers > 0 {
		return mergeEmbedded(ctx, rep, s, pos[1], o, args, stdout, stderr)
	}
	report, err := pipeline.Run(ctx, pipeline.Options{Spec: s, Out: pos[1], Force: *o.force, Progress: rep, Warnings: warnings,
		EstimateMemory: mergejob.MemoryEstimator(s),
		Command:        "iteris " + strings.Join(append([]string{"merge"}, args...), " "), Version: versionString()})
	if err != nil {
		return err
	}
	if rep.Mode() == progress.JSON {
		rep.Event("done", map[string]any{"out": pos[1], "modules": report.Output.Modules, "seconds": report.Timings["total"]})
		return nil
	}
	fmt.Fprintf(stdout, "merged %d adapters with %s into %s: %d modules, rank up to %d, %.1fs\n",
		len(report.Tasks), report.Method, pos[1], report.Output.Modules, report.Output.MaxRank, report.Timings["total"])
	return nil
}

// eventWriter turns each written line into a JSON-lines "warning" event.
type eventWriter struct{ rep *progress.Reporter }

func (w eventWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if line != "" {
			w.rep.Event("warning", map[string]any{"message": strings.TrimPrefix(line, "warning: ")})
		}
	}
	return len(p), nil
}

// mergeEmbedded runs the merge through an in-process cluster of --workers workers.
func mergeEmbedded(ctx context.Context, rep *progress.Reporter, s *spec.Spec, out string, o mergeOpts, args []string, stdout, stderr io.Writer) error {
	if err := inputs.CheckOut(s, out, *o.force); err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return err
	}
	warn := func(msg string) {
		if rep.Mode() == progress.JSON {
			rep.Event("warning", map[string]any{"message": msg})
		} else {
			fmt.Fprintln(stderr, "warning:", msg)
		}
	}
	removed, err := output.CleanStale(out)
	for _, p := range removed {
		warn(fmt.Sprintf("removed %s, the staging directory of an earlier merge into %s that was killed", p, out))
	}
	if err != nil {
		warn(err.Error())
	}
	// The checks of the single-process merge, memory included, before the cluster starts (its
	// coordinator checks again, and hashes the inputs).
	if _, err := inputs.Prepare(ctx, inputs.Config{Spec: s, Warn: func(string, ...any) {}, Estimate: mergejob.MemoryEstimator(s), SkipHashes: true}); err != nil {
		return err
	}
	c, err := embedded.New(embedded.Config{Workers: *o.workers, Version: versionString()})
	if err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		c.Close()
		return err
	}
	defer c.Close()
	r := clusterRun{c: c.Client(), spec: s, out: out, force: *o.force, wait: true, workers: *o.workers,
		command: commandLine("merge", args), rep: rep}
	return r.run(ctx, stdout, stderr)
}
