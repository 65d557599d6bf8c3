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
	"github.com/iteris-dev/iteris/internal/safetensors"
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
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: eval takes no positional arguments (got %q)", errUsage, pos)
	}
	if *o.base == "" || len(*o.data) == 0 {
		return fmt.Errorf("%w: eval needs --base DIR and at least one --data FILE.jsonl", errUsage)
	}
	backend, err := linalg.Init(*o.blas)
	if err != nil {
		return err
	}
	warnKernel(stderr, backend)
	rep, err := progress.New(progress.Mode(*o.progress), stderr)
	if err != nil {
		return fmt.Errorf("%w: --progress: %v", errUsage, err)
	}
	job, err := prepareEval(o)
	if err != nil {
		return err
	}
	for _, sk := range job.skipped {
		msg := fmt.Sprintf("%s: not scored: the prompt and answer need %d positions, more than the model's max_position_embeddings of %d", sk.Source, sk.Positions, sk.Limit)
		if rep.Mode() == progress.JSON {
			rep.Event("warning", map[string]any{"message": msg})
		} else {
			fmt.Fprintln(stderr, "warning:", msg)
		}
	}
	var res eval.Result
	err = untilDone(ctx, func() error {
		var err error
		res, err = job.run(rep, *o.batch)
		return err
	})
	if err != nil {
		return err
	}
	res.Skipped = job.skipped
	if *o.json {
		return json.NewEncoder(stdout).Encode(res)
	}
	printResult(stdout, res)
	return nil
}

// evalJob is an evaluation whose inputs are all read and checked.
type evalJob struct {
	base    string
	adapter *adapter.Adapter
	cases   []eval.Case
	skipped []eval.Skipped
}

// prepareEval reads and checks everything before the base weights load: the data, the
// tokenizer, config.json against the checkpoint headers, the adapter against the base shapes,
// and every item's length.
func prepareEval(o evalOpts) (*evalJob, error) {
	var items []eval.Item
	for _, f := range *o.data {
		it, err := eval.LoadJSONL(f)
		if err != nil {
			return nil, err
		}
		items = append(items, it...)
	}
	tok, err := tokenizer.LoadDir(*o.base)
	if err != nil {
		return nil, err
	}
	cfg, err := model.LoadConfig(filepath.Join(*o.base, "config.json"))
	if err != nil {
		return nil, err
	}
	ck, err := safetensors.OpenCheckpoint(*o.base)
	if err != nil {
		return nil, err
	}
	err = cfg.CheckCheckpoint(ck, *o.base)
	ck.Close()
	if err != nil {
		return nil, err
	}
	job := &evalJob{base: *o.base}
	if *o.adapter != "" {
		if job.adapter, err = adapter.LoadFor(*o.adapter, model.ShapesOf(cfg)); err != nil {
			return nil, err
		}
	}
	eos, ok := tok.EOS()
	if !ok {
		if len(cfg.EOS) == 0 {
			return nil, fmt.Errorf("%s: no EOS token in tokenizer.json, tokenizer_config.json or config.json: exact-match evaluation needs one", *o.base)
		}
		eos = cfg.EOS[0]
	}
	if job.cases, job.skipped, err = eval.Cases(items, tok, eos, cfg.MaxLength()); err != nil {
		return nil, err
	}
	if len(job.cases) == 0 {
		return nil, fmt.Errorf("%w: every item needs more positions than the model's max_position_embeddings of %d (%s needs %d)",
			eval.ErrData, cfg.MaxLength(), job.skipped[0].Source, job.skipped[0].Positions)
	}
	return job, nil
}

// run loads the base model, applies the adapter (when given) and scores every case.
func (j *evalJob) run(rep *progress.Reporter, batch int) (eval.Result, error) {
	m, err := model.Load(j.base)
	if err != nil {
		return eval.Result{}, err
	}
	name := j.base
	if j.adapter != nil {
		if m, err = pipeline.Apply(m, j.adapter, false); err != nil {
			return eval.Result{}, err
		}
		name = j.adapter.Dir
	}
	ph := rep.Phase("eval "+filepath.Base(name), len(j.cases))
	res, err := eval.Run(pipeline.Generator{Model: m}, j.cases, batch, ph.Set)
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
	if len(res.Skipped) > 0 {
		fmt.Fprintf(w, "%d items not scored: longer than the model's max_position_embeddings of %d\n", len(res.Skipped), res.Skipped[0].Limit)
	}
}
