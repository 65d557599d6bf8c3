package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/pipeline"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/tokenizer"
)

func cmdEval(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("base", "", "base model directory (config.json, safetensors, tokenizer.json)")
	adapterDir := fs.String("adapter", "", "PEFT adapter directory to apply (optional)")
	var data multiFlag
	fs.Var(&data, "data", "JSONL file of {task, prompt, answer} items (repeatable)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	prog := fs.String("progress", "auto", "progress display: auto, bar, json or none")
	batch := fs.Int("batch", 64, "prompts generated together")
	blas := fs.String("blas", "auto", "BLAS backend: auto, openblas or gonum")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: eval takes no positional arguments (got %q)", errUsage, pos)
	}
	if *base == "" || len(data) == 0 {
		return fmt.Errorf("%w: eval needs --base DIR and at least one --data FILE.jsonl", errUsage)
	}
	if _, err := linalg.Init(*blas); err != nil {
		return err
	}
	rep, err := progress.New(progress.Mode(*prog), stderr)
	if err != nil {
		return fmt.Errorf("%w: --progress: %v", errUsage, err)
	}
	// Everything is read and checked before any generation runs.
	var items []eval.Item
	for _, f := range data {
		it, err := eval.LoadJSONL(f)
		if err != nil {
			return err
		}
		items = append(items, it...)
	}
	tok, err := tokenizer.LoadDir(*base)
	if err != nil {
		return err
	}
	m, err := model.Load(*base)
	if err != nil {
		return err
	}
	if *adapterDir != "" {
		a, err := adapter.Load(*adapterDir)
		if err != nil {
			return err
		}
		if m, err = pipeline.Apply(m, a, false); err != nil {
			return err
		}
	}
	eos, ok := tok.EOS()
	if !ok {
		if len(m.Config.EOS) == 0 {
			return fmt.Errorf("%s: no EOS token in tokenizer.json, tokenizer_config.json or config.json: exact-match evaluation needs one", *base)
		}
		eos = m.Config.EOS[0]
	}
	cases, err := eval.Cases(items, tok, eos)
	if err != nil {
		return err
	}
	ph := rep.Phase("eval "+filepath.Base(firstNonEmpty(*adapterDir, *base)), len(cases))
	res, err := eval.Run(pipeline.Generator{Model: m}, cases, *batch, ph.Set)
	if err != nil {
		return err
	}
	ph.Done()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	printResult(stdout, res)
	return nil
}

func printResult(w io.Writer, res eval.Result) {
	fmt.Fprintf(w, "%-12s %9s %9s\n", "task", "accuracy", "correct")
	for _, name := range res.TaskNames() {
		tr := res.Tasks[name]
		fmt.Fprintf(w, "%-12s %9.4f %5d/%-4d\n", name, tr.Accuracy, tr.Correct, tr.N)
	}
	fmt.Fprintf(w, "%-12s %9.4f\n", "mean", res.Mean)
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
