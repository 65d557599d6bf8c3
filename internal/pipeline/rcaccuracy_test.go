package pipeline

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/internal/tokenizer"
)

// exampleConfig is examples/merge4.yaml, the README's main command, with its paths resolved
// from this package's directory.
func exampleConfig(t *testing.T) *spec.Spec {
	t.Helper()
	s, err := spec.Load("../../examples/merge4.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s.Resolve("../..")
}

// mergeAndScore runs s as `iteris merge` does (calibration by each adapter's own greedy
// completion, the merge, the atomic write), then evaluates the written adapter on the 480 test
// items.
func mergeAndScore(t *testing.T, s *spec.Spec) (*Report, map[string]float64) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	rep, err := Run(context.Background(), Options{Spec: s, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	a, err := adapter.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	var mods []*adapter.Module
	for _, n := range a.Names() {
		mods = append(mods, a.Modules[n])
	}
	res := accuracy(t, loadBase(t), mods, testCases(t))
	acc := map[string]float64{"mean": res.Mean}
	for _, task := range merge4 {
		acc[task] = res.Tasks[task].Accuracy
		if n := res.Tasks[task].N; n != 120 {
			t.Fatalf("%s: %d test items, want 120", task, n)
		}
	}
	return rep, acc
}

// TestExampleConfigIsTheRecommendedMethod: examples/merge4.yaml is the residual objective with
// the data-aware truncation, every calibration prompt and 30 refinement steps, with no warning.
func TestExampleConfigIsTheRecommendedMethod(t *testing.T) {
	s := exampleConfig(t)
	if w := s.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	if got, want := s.Parameters, spec.DefaultsFor(spec.MethodIterIS, spec.ObjectiveResidual); got != want {
		t.Errorf("parameters %+v, want the residual objective's defaults %+v", got, want)
	}
	set := shard.SettingsOf(s)
	if set.RefineSteps != 30 || set.RefineLR != 1e-3 || set.Truncation != "data" || set.Objective != "residual" {
		t.Errorf("settings %+v", set)
	}
}

// TestRecommendedMethodAccuracy merges tiny-skills merge4 with examples/merge4.yaml through Run
// (what `iteris merge` runs) and evaluates the written adapter. The calibration it builds from
// calib.jsonl is the reference's but for one srt sequence one token longer (see
// TestCalibrationReproducesCalib64). With refine steps 0 (the closed form) every task must be within 2 of the 120 test items
// of rc_sweep's accuracy (85, 103, 111, 77); the full method within 2 of ld30's (110, 115, 118,
// 90) with a mean of at least 0.88 (reference 0.902). The report records each layer's
// distillation losses and the refinement's time.
func TestRecommendedMethodAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("two merges of 256 calibration sequences (one with 30 distillation steps per layer) and their evaluations take about 2 minutes")
	}
	ref := loadRCResults(t)
	positions := map[string]int{"rev": 1034, "upc": 1038, "nxt": 1020, "srt": 989}
	closed := exampleConfig(t)
	closed.Parameters.Refine.Steps = 0
	for _, tc := range []struct {
		name string
		s    *spec.Spec
		ref  string
	}{{"closed form", closed, "rc_r32_n64"}, {"full method", exampleConfig(t), "rc_ld30_r32_n64"}} {
		t.Run(tc.name, func(t *testing.T) {
			rep, acc := mergeAndScore(t, tc.s)
			for _, tr := range rep.Tasks {
				if tr.Sequences != 64 || tr.Tokens != positions[tr.Name] {
					t.Errorf("task %s: %d sequences of %d tokens, want %d of %d", tr.Name, tr.Sequences, tr.Tokens, 64, positions[tr.Name])
				}
			}
			want := ref.Accuracy[tc.ref]
			for _, task := range merge4 {
				got, w := int(math.Round(acc[task]*120)), int(math.Round(want[task]*120))
				if d := got - w; d < -2 || d > 2 {
					t.Errorf("%s on %s: %d/120 correct, reference %d", tc.name, task, got, w)
				}
			}
			t.Logf("%s: mean %.4f (reference %.4f): rev %.3f upc %.3f nxt %.3f srt %.3f; timings %v", tc.name, acc["mean"], want["mean"],
				acc["rev"], acc["upc"], acc["nxt"], acc["srt"], rep.Timings)
			refined := tc.s.Parameters.Refine.Steps > 0
			if refined && acc["mean"] < 0.88 {
				t.Errorf("full method: mean accuracy %.4f, want at least 0.88", acc["mean"])
			}
			layers := rep.Solves[0].Layers
			if _, ok := rep.Timings["refine"]; ok != refined || refined != (len(layers) == 4) {
				t.Errorf("refined %v: timings %v, %d layer records", refined, rep.Timings, len(layers))
			}
			for _, l := range layers {
				if !(l.LossAfter < l.LossBefore) || l.Steps != 30 {
					t.Errorf("layer record %+v: want 30 steps that lower the loss", l)
				}
			}
			// merge_report.json carries the same records.
			var onDisk Report
			b, err := os.ReadFile(filepath.Join(rep.Output.Dir, "merge_report.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &onDisk); err != nil {
				t.Fatal(err)
			}
			if len(onDisk.Solves) != 1 || len(onDisk.Solves[0].Layers) != len(layers) || onDisk.Settings["parameters"].(map[string]any)["samples"] != "all" {
				t.Errorf("merge_report.json: solves %d, layers %d, settings %v", len(onDisk.Solves), len(onDisk.Solves[0].Layers), onDisk.Settings["parameters"])
			}
		})
	}
}

// TestCalibrationReproducesCalib64 builds the 64 calibration sequences of each task the way
// `iteris merge` does (prompt + the adapter's greedy completion until EOS, at most 64 tokens) and
// compares them with reference-rc's calib64.json, which cut every completion at len(answer)+1
// tokens. They are equal, item for item in calib.jsonl order, except where the reference's cut
// completion does not end in EOS: there ours continues, and the reference is a prefix of ours.
// That happens once, on an srt prompt whose completion is wrong (the README: srt's own
// completions are wrong on 6 of 64 prompts), so the merge sees 989 srt positions, not 988.
func TestCalibrationReproducesCalib64(t *testing.T) {
	base := loadBase(t)
	tok, err := tokenizer.LoadDir(filepath.Join(fixture, "model"))
	if err != nil {
		t.Fatal(err)
	}
	eos, _ := tok.EOS()
	longer := 0
	for _, task := range rcTasks(t, base) {
		items, err := eval.LoadJSONL(filepath.Join(fixture, "data", task.Name, "calib.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		tm, err := base.WithLoRA(LoRAs(task.Adapter), false)
		if err != nil {
			t.Fatal(err)
		}
		seqs, _, err := Calibrate(tm, tok, items, CalibOptions{Samples: len(items), MaxNewTokens: 64, BatchSize: 16, MaxLength: base.Config.MaxLength()})
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) != 64 {
			t.Fatalf("%s: %d sequences", task.Name, len(seqs))
		}
		for i, want := range task.Seqs {
			got := seqs[i]
			switch {
			case slices.Equal(got, want):
			case want[len(want)-1] != eos && len(got) > len(want) && slices.Equal(got[:len(want)], want):
				longer++
				t.Logf("%s item %d: the reference's completion stops at %d tokens without EOS, ours continues to %d", task.Name, i, len(want), len(got))
			default:
				t.Errorf("%s item %d: %v, reference %v", task.Name, i, got, want)
			}
		}
	}
	if longer != 1 {
		t.Errorf("%d sequences longer than the reference's, want 1", longer)
	}
}

// TestResidualMethodGeneralizes runs the recommended method on a merge it was not tuned on: three
// tasks, rev on the attention modules only (alone it scores 0.650 on rev), upc and nxt with user
// weights 0.7 and 1.3, 32 prompts per task in batches of 8. Every site's output rank is the sum
// of the ranks of the adapters that have it; each layer's distillation lowers its loss; and the
// three tasks' mean accuracy ranks the methods as on the reference: the full method (10 steps)
// above the closed form above the previous default (objective full, SVD truncation). Measured:
// 0.811, 0.756 and 0.661.
func TestResidualMethodGeneralizes(t *testing.T) {
	if testing.Short() {
		t.Skip("three merges and their evaluations take about 20 s")
	}
	attn := func(n string) bool { return strings.Contains(n, ".self_attn.") }
	entries := []adapterEntry{{"rev", subset(t, "rev", attn, nil), fixtureEntry("rev").calib}, fixtureEntry("upc"), fixtureEntry("nxt")}
	var means []float64
	for _, params := range []string{
		"objective: full, samples: 32, batch_size: 8",
		"objective: residual, samples: 32, batch_size: 8, refine: {steps: 0}",
		"objective: residual, samples: 32, batch_size: 8, refine: {steps: 10}",
	} {
		s := specOf(t, "iteris", params, entries...)
		s.Adapters[1].Weight, s.Adapters[2].Weight = 0.7, 1.3
		rep, acc := mergeAndScore(t, s)
		mean := (acc["rev"] + acc["upc"] + acc["nxt"]) / 3
		t.Logf("%s: mean %.4f: rev %.3f upc %.3f nxt %.3f", params, mean, acc["rev"], acc["upc"], acc["nxt"])
		means = append(means, mean)
		for name, r := range rep.Solves[0].Sites {
			want := 16
			if attn(name) {
				want = 24
			}
			if r.Rank != want {
				t.Errorf("%s: %s has output rank %d, want %d", params, name, r.Rank, want)
			}
		}
		for _, l := range rep.Solves[0].Layers {
			if !(l.LossAfter < l.LossBefore) {
				t.Errorf("%s: layer %d: distillation loss %.6g -> %.6g", params, l.Layer, l.LossBefore, l.LossAfter)
			}
		}
	}
	if !(means[2] > means[1] && means[1] > means[0]) {
		t.Errorf("mean accuracy: previous default %.4f, closed form %.4f, full method %.4f; want increasing", means[0], means[1], means[2])
	}
}
