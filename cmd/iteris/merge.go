package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/pipeline"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/spec"
)

func cmdMerge(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	force := fs.Bool("force", false, "replace a non-empty OUT_DIR")
	prog := fs.String("progress", "auto", "progress display: auto, bar, json or none")
	blas := fs.String("blas", "auto", "BLAS backend: auto, openblas or gonum")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: merge CONFIG.yaml OUT_DIR [--force] [--progress auto|bar|json|none]", errUsage)
	}
	rep, err := progress.New(progress.Mode(*prog), stderr)
	if err != nil {
		return fmt.Errorf("%w: --progress: %v", errUsage, err)
	}
	s, err := spec.Load(pos[0])
	if err != nil {
		return err
	}
	if s.Cluster.Mode != "" && s.Cluster.Mode != "embedded" {
		return fmt.Errorf("%s: cluster.mode %q: only the embedded (single-process) mode is available in this build", pos[0], s.Cluster.Mode)
	}
	if _, err := linalg.Init(*blas); err != nil {
		return err
	}
	warnings := stderr
	if rep.Mode() == progress.JSON {
		warnings = eventWriter{rep}
	}
	report, err := pipeline.Run(context.Background(), pipeline.Options{Spec: s, Out: pos[1], Force: *force, Progress: rep, Warnings: warnings,
		Command: "iteris " + strings.Join(append([]string{"merge"}, args...), " "), Version: version})
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
