package main

import (
	"context"
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

// evalOpts are the flags of iteris eval.
type evalOpts struct {
	base, adapter, progress, blas *string
	data                          *multiFlag
	json                          *bool
	batch                         *int
}

func evalFlags() (*flag.FlagSet, evalOpts) {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	o := evalOpts{data: &multiFlag{}}
	o.base = fs.String("base", "", "base model directory (config.json, safetensors, tokenizer.json)")
	o.adapter = fs.String("adapter", "", "PEFT adapter directory to apply (optional)")
	fs.Var(o.data, "data", "JSONL file of {task, prompt, answer} items (repeatable)")
	o.json = fs.Bool("json", false, "print one JSON object instead of a table")
	o.progress = fs.String("progress", "auto", "progress display: auto, bar, json or none")
	o.batch = fs.Int("batch", 64, "prompts generated together")
	o.blas = fs.String("blas", "auto", "BLAS backend: auto, openblas or gonum")
	return fs, o
}

const evalHelp = `Usage: iteris eval --base DIR [--adapter DIR] --data FILE.jsonl [--data FILE ...] [flags]

Exact-match accuracy per task (the JSONL "task" field) and the mean: greedy decoding of
len(answer tokens) + 1 tokens after the prompt must give the answer followed by EOS. Items longer
than the model's max_position_embeddings are not scored; they are listed as skipped.

Flags:
`

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := evalFlags()
	fs.SetOutput(stderr)
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), evalHelp+flagDefaults(fs)+"\n"+exitCodes)
	}
	base, adapterDir, data, asJSON, prog, batch, blas := o.base, o.adapter, *o.data, o.json, o.progress, o.batch, o.blas
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: eval takes no positional arguments (got %q)", errUsage, pos)
	}
	data = *o.data
	if *base == "" || len(data) == 0 {
		return fmt.Errorf("%w: eval needs --base DIR and at least one --data FILE.jsonl", errUsage)
	}
	backend, err := linalg.Init(*blas)
	if err != nil {
		return err
	}
	warnKernel(stderr, backend)
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
	var m *model.Model
	var res eval.Result
	err = untilDone(ctx, func() error {
		var err error
		if m, err = model.Load(*base); err != nil {
			return err
		}
		res, err = evaluate(m, *adapterDir, *base, tok, items, rep, *batch)
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	printResult(stdout, res)
	return nil
}

// evaluate applies the adapter (when given) and scores every item.
func evaluate(m *model.Model, adapterDir, base string, tok *tokenizer.Tokenizer, items []eval.Item, rep *progress.Reporter, batch int) (eval.Result, error) {
	if adapterDir != "" {
		a, err := adapter.Load(adapterDir)
		if err != nil {
			return eval.Result{}, err
		}
		if m, err = pipeline.Apply(m, a, false); err != nil {
			return eval.Result{}, err
		}
	}
	eos, ok := tok.EOS()
	if !ok {
		if len(m.Config.EOS) == 0 {
			return eval.Result{}, fmt.Errorf("%s: no EOS token in tokenizer.json, tokenizer_config.json or config.json: exact-match evaluation needs one", base)
		}
		eos = m.Config.EOS[0]
	}
	cases, err := eval.Cases(items, tok, eos)
	if err != nil {
		return eval.Result{}, err
	}
	ph := rep.Phase("eval "+filepath.Base(firstNonEmpty(adapterDir, base)), len(cases))
	res, err := eval.Run(pipeline.Generator{Model: m}, cases, batch, ph.Set)
	if err != nil {
		return eval.Result{}, err
	}
	ph.Done()
	return res, nil
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
