// Command mergetable measures every merge method on the tiny-skills merge4 benchmark (rev, upc,
// nxt, srt; 16 calibration prompts with the fixture's exact calibration tokens) and prints a
// markdown table of mean accuracy, per-task accuracy and merge time beside the reference table.
// Then the ablation of the recommended method (the residual objective, the data-aware truncation,
// every calibration prompt, layer-wise refinement), each row beside reference-rc's figure, with
// the time of each phase.
//
//	go run ./bench/mergetable [-fixture testdata/tiny-skills] [-blas auto] [-rows all|rc]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/pipeline"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/internal/tokenizer"
)

var tasks = []string{"rev", "upc", "nxt", "srt"}

func main() {
	fixture := flag.String("fixture", "testdata/tiny-skills", "tiny-skills fixture directory")
	blas := flag.String("blas", "auto", "BLAS backend")
	rows := flag.String("rows", "all", "which rows: all, or rc (the ablation of the recommended method only)")
	flag.Parse()
	b, err := linalg.Init(*blas)
	if err != nil {
		log.Fatal(err)
	}
	if *rows != "all" && *rows != "rc" {
		log.Fatalf("-rows %q: want all or rc", *rows)
	}
	if err := run(*fixture, b.String(), *rows == "all"); err != nil {
		log.Fatal(err)
	}
}

type row struct {
	name    string
	ref     string // key in results-merge4.json, or a literal mean
	res     eval.Result
	seconds float64
}

func run(fx, backend string, everyMethod bool) error {
	base, err := model.Load(filepath.Join(fx, "model"))
	if err != nil {
		return err
	}
	tok, err := tokenizer.LoadDir(filepath.Join(fx, "model"))
	if err != nil {
		return err
	}
	var items []eval.Item
	for _, t := range tasks {
		it, err := eval.LoadJSONL(filepath.Join(fx, "data", t, "test.jsonl"))
		if err != nil {
			return err
		}
		items = append(items, it...)
	}
	eos, _ := tok.EOS()
	cases, _, err := eval.Cases(items, tok, eos, 0)
	if err != nil {
		return err
	}
	var calib struct {
		CalibTokens map[string][][]int `json:"calib_tokens"`
	}
	cb, err := os.ReadFile(filepath.Join(fx, "merge4/iteris_calib.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(cb, &calib); err != nil {
		return err
	}
	var refs struct {
		Merge4 map[string]map[string]float64 `json:"merge4"`
	}
	rb, err := os.ReadFile(filepath.Join(fx, "results-merge4.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(rb, &refs); err != nil {
		return err
	}
	var ptasks []*pipeline.Task
	for _, t := range tasks {
		a, err := adapter.Load(filepath.Join(fx, "adapters", t))
		if err != nil {
			return err
		}
		ptasks = append(ptasks, &pipeline.Task{Name: t, Adapter: a, Weight: 1, Seqs: calib.CalibTokens[t]})
	}
	score := func(mods []*adapter.Module) (eval.Result, error) {
		up := map[string][]model.LoRA{}
		for _, m := range mods {
			up[m.Name] = []model.LoRA{{R: m.R, A: m.A, B: m.B, Scale: float32(m.Scale)}}
		}
		v, err := base.WithLoRA(up, false)
		if err != nil {
			return eval.Result{}, err
		}
		return eval.Run(pipeline.Generator{Model: v}, cases, 128, nil)
	}
	// mergeAndScore runs one whole merge with set, timing the merge alone, and scores its result.
	mergeAndScore := func(set pipeline.SolveSettings) (eval.Result, float64, error) {
		t0 := time.Now()
		mg, err := pipeline.NewMerger(base, ptasks, set, progress.Discard())
		if err != nil {
			return eval.Result{}, 0, err
		}
		if _, err := mg.Run(); err != nil {
			return eval.Result{}, 0, err
		}
		secs := time.Since(t0).Seconds()
		res, err := score(mg.Result())
		return res, secs, err
	}
	if !everyMethod {
		return ablation(fx, base, ptasks, score)
	}
	var rows []row
	// Data-aware: jacobi runs evaluated at chosen solves, and the sweep.
	snap := map[int]bool{1: true, 2: true, 5: true, 10: true, 16: true, 20: true}
	for _, obj := range []merge.Objective{merge.Delta, merge.Full} {
		set := pipeline.SolveSettings{Method: "iteris", Objective: obj, Schedule: pipeline.Jacobi, Iterations: 20, Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true}
		mg, err := pipeline.NewMerger(base, ptasks, set, progress.Discard())
		if err != nil {
			return err
		}
		start := time.Now()
		var evalTime time.Duration
		var evalErr error
		mg.AfterSolve = func(k int) {
			if !snap[k] {
				return
			}
			t0 := time.Now()
			res, err := score(mg.Result())
			if err != nil {
				evalErr = err
			}
			evalTime += time.Since(t0)
			ref := ""
			if obj == merge.Delta && k <= 5 {
				ref = fmt.Sprintf("iteris:n=16:a=0.0001:k=%d", k)
			}
			if obj == merge.Full && k == 5 {
				ref = "=0.015"
			}
			if k == 16 && obj == merge.Delta {
				ref = "=0.375"
			}
			rows = append(rows, row{fmt.Sprintf("iteris %s, jacobi, %d solves", obj, k), ref, res, (time.Since(start) - evalTime).Seconds()})
		}
		if _, err := mg.Run(); err != nil {
			return err
		}
		if evalErr != nil {
			return evalErr
		}
		for _, rank := range []int{0, -1} {
			if obj == merge.Delta && rank == -1 {
				continue // delta is exactly rank 32 already
			}
			set.Schedule, set.Rank = pipeline.Sweep, rank
			res, secs, err := mergeAndScore(set)
			if err != nil {
				return err
			}
			name, ref := fmt.Sprintf("iteris %s, sweep, rank 32", obj), ""
			if rank == -1 {
				name = fmt.Sprintf("iteris %s, sweep, rank full", obj)
			}
			switch {
			case obj == merge.Delta:
				ref = "=0.375"
			case rank == 0:
				ref = "=0.623"
			default:
				ref = "=0.631"
			}
			rows = append(rows, row{name, ref, res, secs})
		}
	}
	for _, red := range []float64{1, 0.9} {
		res, secs, err := mergeAndScore(pipeline.SolveSettings{Method: "regmean", Reduce: red})
		if err != nil {
			return err
		}
		rows = append(rows, row{fmt.Sprintf("regmean, reduce %.1f", red), fmt.Sprintf("regmean:n=16:reduce=%.1f", red), res, secs})
	}
	// Weight-only merges through the whole command path (config, merge, atomic write).
	wo := []struct {
		name, method, params, ref string
		weight                    float64
	}{
		{"cat, weights 1", "cat", "", "peft_cat_sum", 1},
		{"cat, weights 1/4", "cat", "", "peft_cat_mean", 0.25},
		{"linear (PEFT), weights 1/4", "linear", "", "peft_linear_mean", 0.25},
		{"svd rank 8, weights 1/4", "svd", "svd_rank: 8", "peft_svd_mean", 0.25},
		{"svd rank 8, weights 1", "svd", "svd_rank: 8", "peft_svd_sum", 1},
		{"ties 0.5", "ties", "density: 0.5", "peft_ties", 1},
		{"magnitude_prune 0.5", "magnitude_prune", "density: 0.5", "peft_magnitude_prune", 1},
		{"dare_linear 0.5", "dare_linear", "density: 0.5", "", 1},
		{"dare_ties 0.5", "dare_ties", "density: 0.5", "", 1},
		{"ties_svd 0.5 (dense, rank 32)", "ties_svd", "density: 0.5", "", 1},
		{"magnitude_prune_svd 0.5 (dense, rank 32)", "magnitude_prune_svd", "density: 0.5", "", 1},
	}
	tmp, err := os.MkdirTemp("", "mergetable-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i, w := range wo {
		var sb strings.Builder
		fmt.Fprintf(&sb, "base_model: %s/model\nmethod: %s\nadapters:\n", fx, w.method)
		for _, t := range tasks {
			fmt.Fprintf(&sb, "  - {name: %s, path: %s/adapters/%s, weight: %g}\n", t, fx, t, w.weight)
		}
		if w.params != "" {
			fmt.Fprintf(&sb, "parameters: {%s}\n", w.params)
		}
		s, err := spec.Parse([]byte(sb.String()), w.name)
		if err != nil {
			return err
		}
		out := filepath.Join(tmp, fmt.Sprint(i))
		rep, err := pipeline.Run(context.Background(), pipeline.Options{Spec: s, Out: out})
		if err != nil {
			return err
		}
		a, err := adapter.Load(out)
		if err != nil {
			return err
		}
		var mods []*adapter.Module
		for _, n := range a.Names() {
			mods = append(mods, a.Modules[n])
		}
		res, err := score(mods)
		if err != nil {
			return err
		}
		rows = append(rows, row{w.name, w.ref, res, rep.Timings["merge"]})
	}
	fmt.Printf("tiny-skills merge4, 16 calibration prompts per task (fixture tokens), a1 = a2 = 1e-4, adaptive weights; BLAS: %s\n\n", backend)
	fmt.Println("| method | mean | rev | upc | nxt | srt | reference mean | merge time (s) |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ref := "—"
		if strings.HasPrefix(r.ref, "=") {
			ref = r.ref[1:] + " (README)"
		} else if m, ok := refs.Merge4[r.ref]; ok {
			ref = fmt.Sprintf("%.4f", m["mean"])
		}
		fmt.Printf("| %s | **%.4f** | %.3f | %.3f | %.3f | %.3f | %s | %.2f |\n", r.name, r.res.Mean,
			r.res.Tasks["rev"].Accuracy, r.res.Tasks["upc"].Accuracy, r.res.Tasks["nxt"].Accuracy, r.res.Tasks["srt"].Accuracy, ref, r.seconds)
	}
	fmt.Println()
	return ablation(fx, base, ptasks, score)
}
