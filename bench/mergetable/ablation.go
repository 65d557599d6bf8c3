package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/pipeline"
	"github.com/iteris-dev/iteris/internal/progress"
)

// ablationRow is one setting of the ablation with its accuracy and the time of each phase.
type ablationRow struct {
	name, ref string // ref: key of reference-rc's accuracy_float64, or "" (no figure)
	res       eval.Result
	total     float64 // the merge alone
	rec       pipeline.SolveRecord
}

// ablation measures the recommended method's three changes one at a time on merge4 (reference-rc
// README): from the previous default (full objective, SVD truncation, 16 prompts) to the residual
// objective with the data-aware truncation, every calibration prompt (64, calib64.json), and 10
// or 30 Adam steps of layer-wise distillation per layer. It prints each row beside the figure of
// reference-rc/results.json, then the time of each phase.
func ablation(fx string, base *model.Model, tasks16 []*pipeline.Task, score func([]*adapter.Module) (eval.Result, error)) error {
	var ref struct {
		Accuracy map[string]map[string]float64 `json:"accuracy_float64"`
	}
	if err := readJSON(filepath.Join(fx, "reference-rc/results.json"), &ref); err != nil {
		return err
	}
	var calib struct {
		Tokens map[string][][]int `json:"calib_tokens"`
	}
	if err := readJSON(filepath.Join(fx, "reference-rc/calib64.json"), &calib); err != nil {
		return err
	}
	tasks64 := make([]*pipeline.Task, len(tasks16))
	for i, t := range tasks16 {
		tasks64[i] = &pipeline.Task{Name: t.Name, Adapter: t.Adapter, Weight: 1, Seqs: calib.Tokens[t.Name]}
	}
	set := func(obj merge.Objective, trunc merge.Truncation, rank, steps int) pipeline.SolveSettings {
		return pipeline.SolveSettings{Method: "iteris", Objective: obj, Schedule: pipeline.Sweep, Alpha1: 1e-4, Alpha2: 1e-4,
			Adaptive: true, Rank: rank, Truncation: trunc, RefineSteps: steps, RefineLR: 1e-3}
	}
	runs := []struct {
		name, ref string
		tasks     []*pipeline.Task
		set       pipeline.SolveSettings
	}{
		{"previous default: full objective, SVD truncation, 16 prompts", "full_sweep_r32_n16", tasks16, set(merge.Full, merge.TruncSVD, 0, 0)},
		{"full objective, data-aware truncation, 16 prompts", "", tasks16, set(merge.Full, merge.TruncData, 0, 0)},
		{"residual objective, SVD truncation, 16 prompts", "", tasks16, set(merge.Residual, merge.TruncSVD, 0, 0)},
		{"+ residual correction + data-aware truncation, 16 prompts", "rc_r32_n16", tasks16, set(merge.Residual, merge.TruncData, 0, 0)},
		{"the same with all 64 prompts (closed form)", "rc_r32_n64", tasks64, set(merge.Residual, merge.TruncData, 0, 0)},
		{"the same, untruncated (rank full)", "rc_dense_n64", tasks64, set(merge.Residual, merge.TruncData, -1, 0)},
		{"+ 10 Adam steps of layer-wise distillation per layer", "rc_ld10_r32_n64", tasks64, set(merge.Residual, merge.TruncData, 0, 10)},
		{"+ 30 steps (the recommended method)", "rc_ld30_r32_n64", tasks64, set(merge.Residual, merge.TruncData, 0, 30)},
	}
	var rows []ablationRow
	for _, r := range runs {
		t0 := time.Now()
		mg, err := pipeline.NewMerger(base, r.tasks, r.set, progress.Discard())
		if err != nil {
			return err
		}
		recs, err := mg.Run()
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		secs := time.Since(t0).Seconds()
		res, err := score(mg.Result())
		if err != nil {
			return err
		}
		rows = append(rows, ablationRow{r.name, r.ref, res, secs, recs[0]})
	}
	printAblation(rows, ref.Accuracy)
	return nil
}

// printAblation prints the accuracy table and the phase-time table.
func printAblation(rows []ablationRow, ref map[string]map[string]float64) {
	fmt.Println("Ablation of the recommended method (reference: reference-rc/results.json, float64; rank 32 unless stated)")
	fmt.Println()
	fmt.Println("| setting | mean | rev | upc | nxt | srt | reference mean | reference rev / upc / nxt / srt |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		refMean, refTasks := "—", "—"
		if m, ok := ref[r.ref]; ok {
			refMean = fmt.Sprintf("%.4f", m["mean"])
			refTasks = fmt.Sprintf("%.3f / %.3f / %.3f / %.3f", m["rev"], m["upc"], m["nxt"], m["srt"])
		}
		t := r.res.Tasks
		fmt.Printf("| %s | **%.4f** | %.3f | %.3f | %.3f | %.3f | %s | %s |\n", r.name, r.res.Mean,
			t["rev"].Accuracy, t["upc"].Accuracy, t["nxt"].Accuracy, t["srt"].Accuracy, refMean, refTasks)
	}
	fmt.Println()
	fmt.Println("| setting | merge (s) | capture (s) | solve (s) | refine (s) | loss before → after, layer 0 … 3 |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		losses := "—"
		if len(r.rec.Layers) > 0 {
			losses = ""
			for i, l := range r.rec.Layers {
				if i > 0 {
					losses += ", "
				}
				losses += fmt.Sprintf("%.4f → %.4f", l.LossBefore, l.LossAfter)
			}
		}
		fmt.Printf("| %s | %.2f | %.2f | %.2f | %.2f | %s |\n", r.name, r.total, r.rec.CaptureSeconds, r.rec.SolveSeconds, r.rec.RefineSeconds, losses)
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
