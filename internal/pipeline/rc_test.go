package pipeline

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

// The residual-corrected sweep and the full method of reference-rc (its README defines them):
// merge4's adapters, all 64 calibration sequences per task (calib64.json), a1 = a2 = 1e-4,
// adaptive weights, output rank 32 (auto).
const refRC = fixture + "/reference-rc"

// rcResults is what the tests read from reference-rc/results.json.
type rcResults struct {
	Coefs map[string]map[string]float64 `json:"adaptive_weights_n64"`
	LD    map[string][]struct {
		Layer       int
		First, Last float64
	} `json:"ld_loss_float64"`
	Accuracy map[string]map[string]float64 `json:"accuracy_float64"`
}

func loadRCResults(t *testing.T) rcResults {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(refRC, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r rcResults
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Coefs) != 28 || len(r.LD["rc_ld30_r32_n64"]) != 4 {
		t.Fatalf("results.json: %d sites of adaptive weights, %d layers of LD30 losses", len(r.Coefs), len(r.LD["rc_ld30_r32_n64"]))
	}
	return r
}

// rcTasks returns the merge4 tasks with the 64 calibration sequences of calib64.json.
func rcTasks(t *testing.T, base *model.Model) []*Task {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(refRC, "calib64.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Tokens map[string][][]int `json:"calib_tokens"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	var tasks []*Task
	for _, name := range merge4 {
		a, err := adapter.Load(filepath.Join(fixture, "adapters", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Validate(base); err != nil {
			t.Fatal(err)
		}
		if len(c.Tokens[name]) != 64 {
			t.Fatalf("calib64.json: %d sequences of %s", len(c.Tokens[name]), name)
		}
		tasks = append(tasks, &Task{Name: name, Adapter: a, Weight: 1, Seqs: c.Tokens[name]})
	}
	return tasks
}

// rcSettings is the reference's closed form: the residual objective with the data-aware
// truncation; refine steps of layer-wise distillation at lr 1e-3.
func rcSettings(rank, refine int) SolveSettings {
	return SolveSettings{Method: "iteris", Objective: merge.Residual, Schedule: Sweep, Alpha1: 1e-4, Alpha2: 1e-4,
		Adaptive: true, Rank: rank, Truncation: merge.TruncData, RefineSteps: refine, RefineLR: 1e-3}
}

func readRCUpdates(t *testing.T, name string) map[string]*mat.Dense {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(refRC, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]*mat.Dense{}
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		x, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = mat.NewDense(info.Shape[0], info.Shape[1], f64(x))
	}
	return out
}

// compareSites checks every site of mg against ref: relative Frobenius error per site at most
// tol, output rank rank (when > 0), and returns the largest and the median error.
func compareSites(t *testing.T, what string, mg *Merger, ref map[string]*mat.Dense, rank int, tol float64) (worst, mid float64) {
	t.Helper()
	sites := mg.Sites()
	if len(sites) != len(ref) || len(sites) != 28 {
		t.Fatalf("%s: %d sites merged, the reference holds %d", what, len(sites), len(ref))
	}
	var errs []float64
	for _, s := range sites {
		if _, k := s.B.Dims(); rank > 0 && k != rank {
			t.Errorf("%s %s: output rank %d, want %d", what, s.Name, k, rank)
		}
		e := relFrob(dense(s), ref[s.Name])
		errs = append(errs, e)
		if !(e <= tol) {
			t.Errorf("%s %s: relative error %.3g against the reference (accept %.0e)", what, s.Name, e, tol)
		}
	}
	sort.Float64s(errs)
	return errs[len(errs)-1], errs[len(errs)/2]
}

// TestRCSweepMatchesReference runs the closed-form residual-corrected sweep through
// NewShardedMerger, cut into 2 shards with the streams sent through their wire bytes, and compares
// every site with rc_sweep.safetensors (data-aware rank 32) and rc_sweep_untruncated.safetensors
// (no truncation: rank full), and the adaptive weights with results.json. The README accepts 3e-3
// per site for a float32 pipeline (its float32 torch run: 6.9e-4 and 9.4e-4); this one has
// float32 features but float64 Grams and solves, and measured 1.7e-6 and 2.0e-6 (median 9.9e-7
// and 1.0e-6), so the test holds it to 1e-4. The report gets no refinement record.
func TestRCSweepMatchesReference(t *testing.T) {
	base := loadBase(t)
	tasks := rcTasks(t, base)
	res := loadRCResults(t)
	for _, tc := range []struct {
		file string
		rank int // SolveSettings.Rank: 0 = auto (32), -1 = full
		want int // the output rank to check (0: min(out, in), not checked)
	}{{"rc_sweep.safetensors", 0, 32}, {"rc_sweep_untruncated.safetensors", -1, 0}} {
		t.Run(tc.file, func(t *testing.T) {
			mg, err := NewShardedMerger(base, tasks, rcSettings(tc.rank, 0), nil, []int{0, 2, 4})
			if err != nil {
				t.Fatal(err)
			}
			mg.Transfer = wireBytes
			recs, err := mg.Run()
			if err != nil {
				t.Fatal(err)
			}
			worst, mid := compareSites(t, tc.file, mg, readRCUpdates(t, tc.file), tc.want, 1e-4)
			t.Logf("%s: per-site relative error max %.3g, median %.3g", tc.file, worst, mid)
			if len(recs) != 1 || len(recs[0].Layers) != 0 || recs[0].RefineSeconds != 0 {
				t.Fatalf("records %+v: want one sweep without refinement", recs)
			}
			var coef float64
			for name, r := range recs[0].Sites {
				for i, task := range merge4 {
					want := res.Coefs[name][task]
					coef = math.Max(coef, math.Abs(r.Coefs[i]-want)/want)
				}
				corrected := name[len(name)-6:] == "o_proj" || name[len(name)-9:] == "down_proj"
				if corrected != math.IsNaN(r.Residual) {
					t.Errorf("%s: residual %v (NaN exactly at the drift-corrected o_proj and down_proj)", name, r.Residual)
				}
			}
			if coef > 1e-5 {
				t.Errorf("adaptive weights differ from results.json by up to %.3g relative", coef)
			}
		})
	}
}

// TestRCFullMethodMatchesReference runs the full method (closed form, balanced split, 30 Adam
// steps per layer) through NewShardedMerger on 2 shards and compares every site with
// ld30.safetensors and each layer's first and last distillation loss with results.json. The
// README accepts 2e-2 per site and 1e-3 on the losses for float32 (its float32 torch run: 3.3e-3
// and 1.1e-4); this one (float64 closed form on float32 features, 4 batches per task, float32
// gradients per batch) measured 7.8e-6 per site (median 2.6e-6) and 3.8e-7 on the losses, so the
// test holds it to 1e-4 per site and 1e-5 on the losses.
func TestRCFullMethodMatchesReference(t *testing.T) {
	if testing.Short() {
		t.Skip("the full method on 4 layers (30 distillation steps over 16 batches each) takes about 60 s")
	}
	base := loadBase(t)
	res := loadRCResults(t)
	mg, err := NewShardedMerger(base, rcTasks(t, base), rcSettings(0, 30), nil, []int{0, 2, 4})
	if err != nil {
		t.Fatal(err)
	}
	mg.Transfer = wireBytes
	recs, err := mg.Run()
	if err != nil {
		t.Fatal(err)
	}
	worst, mid := compareSites(t, "ld30", mg, readRCUpdates(t, "ld30.safetensors"), 32, 1e-4)
	t.Logf("ld30: per-site relative error max %.3g, median %.3g", worst, mid)
	layers := recs[0].Layers
	if len(layers) != 4 || !(recs[0].RefineSeconds > 0) {
		t.Fatalf("%d layer records, refine %.3g s: want 4 and > 0", len(layers), recs[0].RefineSeconds)
	}
	for l, want := range res.LD["rc_ld30_r32_n64"] {
		got := layers[l]
		ef, el := math.Abs(got.LossBefore-want.First)/want.First, math.Abs(got.LossAfter-want.Last)/want.Last
		t.Logf("layer %d: loss %.6f -> %.6f (reference %.6f -> %.6f; rel %.2e, %.2e) in %.2f s", l, got.LossBefore, got.LossAfter, want.First, want.Last, ef, el, got.Seconds)
		if got.Layer != want.Layer || got.Steps != 30 || ef > 1e-5 || el > 1e-5 {
			t.Errorf("layer record %+v, want layer %d, 30 steps, losses %.6g -> %.6g within 1e-5", got, want.Layer, want.First, want.Last)
		}
	}
}

// TestRefineProgress: with refinement the sweep's phase counts every level and every Adam step
// ("sweep + refine", 16 levels + 4 layers x 2 steps), and each refined layer is a JSON "refine"
// event carrying the layer record.
func TestRefineProgress(t *testing.T) {
	base := loadBase(t)
	var buf bytes.Buffer
	rep, err := progress.New(progress.JSON, &buf)
	if err != nil {
		t.Fatal(err)
	}
	mg, err := NewMerger(base, fixtureTasks(t, base), rcSettings(0, 2), rep)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := mg.Run()
	if err != nil {
		t.Fatal(err)
	}
	var refines []map[string]any
	var start, end map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		switch ev["event"] {
		case "refine":
			refines = append(refines, ev)
		case "phase_start":
			start = ev
		case "phase_end":
			end = ev
		}
	}
	if start["phase"] != "sweep + refine" || start["total"] != 24.0 || end["total"] != 24.0 {
		t.Errorf("phase start %v, end %v: want \"sweep + refine\" of 24 units", start, end)
	}
	if len(refines) != 4 {
		t.Fatalf("%d refine events, want 4:\n%s", len(refines), buf.String())
	}
	for l, ev := range refines {
		r := recs[0].Layers[l]
		if ev["layer"] != float64(l) || ev["steps"] != 2.0 || ev["loss_before"] != r.LossBefore || ev["loss_after"] != r.LossAfter {
			t.Errorf("refine event %v, layer record %+v", ev, r)
		}
	}
}

// TestJacobiDataTruncationReachesSweep: the data-aware truncation is not sweep-only; with the
// full objective, jacobi with as many solves as levels (16) reaches the sweep's answer, as it does
// with the SVD truncation (TestJacobiReachesSweep). Measured: 0, bit for bit.
func TestJacobiDataTruncationReachesSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("16 dense jacobi solves")
	}
	base := loadBase(t)
	tasks := fixtureTasks(t, base)
	set := paperSettings(0)
	set.Objective, set.Schedule, set.Truncation = merge.Full, Sweep, merge.TruncData
	sweep, _ := runMerger(t, base, tasks, set)
	set.Schedule, set.Iterations = Jacobi, 16
	jac, recs := runMerger(t, base, tasks, set)
	if len(recs) != 16 {
		t.Fatalf("jacobi ran %d solves, want 16", len(recs))
	}
	worst := 0.0
	for i, s := range sweep.Sites() {
		worst = math.Max(worst, relFrob(dense(jac.Sites()[i]), dense(s)))
	}
	t.Logf("full + data truncation: jacobi(16) vs sweep: worst relative difference %.3g", worst)
	if worst > 1e-5 {
		t.Errorf("jacobi with 16 solves differs from the sweep by %.3g relative", worst)
	}
}
