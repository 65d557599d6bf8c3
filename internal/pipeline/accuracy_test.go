package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/tokenizer"
)

func loadResults(t *testing.T) map[string]map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture, "results-merge4.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Merge4 map[string]map[string]float64 `json:"merge4"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.Merge4
}

// testCases tokenizes the four tasks' test items.
func testCases(t *testing.T) []eval.Case {
	t.Helper()
	tok, err := tokenizer.LoadDir(filepath.Join(fixture, "model"))
	if err != nil {
		t.Fatal(err)
	}
	var items []eval.Item
	for _, task := range merge4 {
		it, err := eval.LoadJSONL(filepath.Join(fixture, "data", task, "test.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, it...)
	}
	eos, _ := tok.EOS()
	cases, _, err := eval.Cases(items, tok, eos, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

// accuracy evaluates base with merged modules (scale folded in) on the test cases.
func accuracy(t *testing.T, base *model.Model, mods []*adapter.Module, cases []eval.Case) eval.Result {
	t.Helper()
	up := map[string][]model.LoRA{}
	for _, m := range mods {
		up[m.Name] = []model.LoRA{{R: m.R, A: m.A, B: m.B, Scale: float32(m.Scale)}}
	}
	v, err := base.WithLoRA(up, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := eval.Run(Generator{Model: v}, cases, 128, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// within2 asserts every task is within 2 of 120 items of the reference accuracy.
func within2(t *testing.T, what string, got eval.Result, want map[string]float64) {
	t.Helper()
	for _, task := range merge4 {
		tr := got.Tasks[task]
		ref := int(math.Round(want[task] * float64(tr.N)))
		if d := tr.Correct - ref; d < -2 || d > 2 || tr.N != 120 {
			t.Errorf("%s on %s: %d/%d correct, reference %d", what, task, tr.Correct, tr.N, ref)
		}
	}
	t.Logf("%-34s mean %.4f (reference %.4f)", what, got.Mean, want["mean"])
}

func TestMergedAccuracyMatchesTable(t *testing.T) {
	if testing.Short() {
		t.Skip("merges and evaluates 480 items many times: run without -short")
	}
	base := loadBase(t)
	tasks := fixtureTasks(t, base)
	cases := testCases(t)
	ref := loadResults(t)

	// IterIS, the paper's setting: one jacobi run, evaluated after each of its 5 solves.
	mg, err := NewMerger(base, tasks, paperSettings(5), progress.Discard())
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]eval.Result{}
	mg.AfterSolve = func(k int) { got[k] = accuracy(t, base, mg.Result(), cases) }
	if _, err := mg.Run(); err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= 5; k++ {
		key := "iteris:n=16:a=0.0001:k=" + string(rune('0'+k))
		within2(t, key, got[k], ref[key])
	}

	noadapt := paperSettings(5)
	noadapt.Adaptive = false
	m2, _ := runMerger(t, base, tasks, noadapt)
	within2(t, "iteris_noadapt:n=16:a=0.0001:k=5", accuracy(t, base, m2.Result(), cases), ref["iteris_noadapt:n=16:a=0.0001:k=5"])

	for _, red := range []float64{1, 0.9} {
		key := fmt.Sprintf("regmean:n=16:reduce=%.1f", red)
		rm, _ := runMerger(t, base, tasks, SolveSettings{Method: "regmean", Reduce: red})
		within2(t, key, accuracy(t, base, rm.Result(), cases), ref[key])
	}

	// The full-output objective with the sweep (fixture README, last section).
	full := []struct {
		name string
		rank int
		want map[string]float64
	}{
		{"full+sweep rank full", -1, map[string]float64{"rev": 0.483, "upc": 0.650, "nxt": 0.892, "srt": 0.500, "mean": 0.631}},
		{"full+sweep rank 32", 0, map[string]float64{"rev": 0.458, "upc": 0.650, "nxt": 0.892, "srt": 0.492, "mean": 0.623}},
	}
	for _, tc := range full {
		set := paperSettings(0)
		set.Objective, set.Schedule, set.Rank = merge.Full, Sweep, tc.rank
		m, _ := runMerger(t, base, tasks, set)
		within2(t, tc.name, accuracy(t, base, m.Result(), cases), tc.want)
	}
}
