package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/progress"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/internal/tokenizer"
)

const fixture = "../../testdata/tiny-skills"

var merge4 = []string{"rev", "upc", "nxt", "srt"}

type calibFile struct {
	CalibTokens map[string][][]int   `json:"calib_tokens"`
	CoefsK1     map[string][]float64 `json:"coefs_k1"`
}

func loadCalib(t *testing.T) calibFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture, "merge4/iteris_calib.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c calibFile
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func loadBase(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.Load(filepath.Join(fixture, "model"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fixtureTasks returns the merge4 tasks with the fixture's exact calibration tokens.
func fixtureTasks(t *testing.T, base *model.Model) []*Task {
	t.Helper()
	c := loadCalib(t)
	var tasks []*Task
	for _, name := range merge4 {
		a, err := adapter.Load(filepath.Join(fixture, "adapters", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Validate(base); err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, &Task{Name: name, Adapter: a, Weight: 1, Seqs: c.CalibTokens[name]})
	}
	return tasks
}

func runMerger(t *testing.T, base *model.Model, tasks []*Task, set SolveSettings) (*Merger, []SolveRecord) {
	t.Helper()
	mg, err := NewMerger(base, tasks, set, progress.Discard())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := mg.Run()
	if err != nil {
		t.Fatal(err)
	}
	return mg, recs
}

func paperSettings(iters int) SolveSettings {
	return SolveSettings{Method: "iteris", Objective: merge.Delta, Schedule: Jacobi, Iterations: iters,
		Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true}
}

// dense returns B A of a site.
func dense(s *Site) *mat.Dense {
	var d mat.Dense
	d.Mul(s.B, s.A)
	return &d
}

func relFrob(got, want *mat.Dense) float64 {
	var d mat.Dense
	d.Sub(got, want)
	return mat.Norm(&d, 2) / mat.Norm(want, 2)
}

func loadRef(t *testing.T, file string) map[string]*mat.Dense {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(fixture, "merge4", file))
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

func TestIterISMatchesReference(t *testing.T) {
	base := loadBase(t)
	tasks := fixtureTasks(t, base)
	calib := loadCalib(t)
	tests := []struct {
		iters int
		ref   string
		tol   float64
	}{
		{1, "iteris_k1.safetensors", 1e-4},
		{5, "iteris_k5.safetensors", 1e-3},
	}
	for _, tc := range tests {
		mg, recs := runMerger(t, base, tasks, paperSettings(tc.iters))
		if len(recs) != tc.iters {
			t.Fatalf("%d solves recorded, want %d", len(recs), tc.iters)
		}
		ref := loadRef(t, tc.ref)
		if len(ref) != len(mg.Sites()) {
			t.Fatalf("reference has %d modules, merge has %d sites", len(ref), len(mg.Sites()))
		}
		worst := 0.0
		for _, s := range mg.Sites() {
			if r, _ := s.A.Dims(); r != 32 {
				t.Errorf("%s: output rank %d, want 32 (sum of input ranks)", s.Name, r)
			}
			e := relFrob(dense(s), ref[s.Name])
			worst = math.Max(worst, e)
			if e > tc.tol {
				t.Errorf("k=%d %s: relative error %.3g > %.0e", tc.iters, s.Name, e, tc.tol)
			}
		}
		t.Logf("k=%d: worst relative Frobenius error %.3g over %d modules", tc.iters, worst, len(mg.Sites()))
		if tc.iters == 1 {
			for name, want := range calib.CoefsK1 {
				got := recs[0].Sites[name].Coefs
				for i := range want {
					if e := math.Abs(got[i]-want[i]) / want[i]; e > 1e-4 {
						t.Errorf("%s: c_%d = %.8g, reference %.8g", name, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// siteInputs returns X_i, task i's inputs of a site, stacked over the task's sequences.
func siteInputs(t *testing.T, mg *Merger, task int, site string) *mat.Dense {
	t.Helper()
	l, p, _ := model.PointOf(site)
	var rows []float64
	var width int
	tm, err := mg.base.WithLoRA(LoRAs(mg.tasks[task].Adapter), false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tm.Forward(mg.tasks[task].Seqs, model.ForwardOptions{Observe: func(ll int, pp model.Point, x []float32, n int) {
		if ll == l && pp == p {
			rows = append(rows, f64(x)...)
			width = len(x) / n
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return mat.NewDense(len(rows)/width, width, rows)
}

func TestRegMeanMatchesReferenceOnFeatures(t *testing.T) {
	base := loadBase(t)
	tasks := fixtureTasks(t, base)
	mg, recs := runMerger(t, base, tasks, SolveSettings{Method: "regmean", Reduce: 1})
	if len(recs) != 1 {
		t.Fatalf("regmean recorded %d solves, want 1", len(recs))
	}
	ref := loadRef(t, "regmean.safetensors")
	worst := 0.0
	for _, s := range mg.Sites() {
		// Compare outputs on the calibration features, stacked over tasks: the summed Gram is
		// singular at the first layers, so the update itself is not unique there.
		var num, den float64
		got := dense(s)
		for i := range tasks {
			x := siteInputs(t, mg, i, s.Name)
			var yg, yr, d mat.Dense
			yg.Mul(x, got.T())
			yr.Mul(x, ref[s.Name].T())
			d.Sub(&yg, &yr)
			num += math.Pow(mat.Norm(&d, 2), 2)
			den += math.Pow(mat.Norm(&yr, 2), 2)
		}
		e := math.Sqrt(num / den)
		worst = math.Max(worst, e)
		if e > 1e-4 || math.IsNaN(e) {
			t.Errorf("%s: outputs on calibration features differ by %.3g relative (solved by %s)", s.Name, e, recs[0].Sites[s.Name].Method)
		}
	}
	t.Logf("regmean: worst relative output error %.3g", worst)
}

func TestJacobiReachesSweep(t *testing.T) {
	base := loadBase(t)
	tasks := fixtureTasks(t, base)
	objectives := []merge.Objective{merge.Delta, merge.Full}
	if testing.Short() {
		objectives = objectives[:1] // the full objective's 16 dense solves are the slow half
	}
	for _, obj := range objectives {
		set := paperSettings(0)
		set.Objective = obj
		set.Schedule = Sweep
		sweep, _ := runMerger(t, base, tasks, set)
		set.Schedule = Jacobi
		set.Iterations = sweep.Levels()
		if set.Iterations != 16 {
			t.Fatalf("tiny-skills has %d dependency levels, want 16 (4 per layer)", set.Iterations)
		}
		jac, recs := runMerger(t, base, tasks, set)
		if len(recs) != 16 {
			t.Fatalf("jacobi ran %d solves, want 16", len(recs))
		}
		worst := 0.0
		for i, s := range sweep.Sites() {
			worst = math.Max(worst, relFrob(dense(jac.Sites()[i]), dense(s)))
		}
		t.Logf("%s: jacobi(16) vs sweep: worst relative difference %.3g", obj, worst)
		if worst > 1e-5 {
			t.Errorf("%s: jacobi with 16 solves differs from the sweep by %.3g relative", obj, worst)
		}
	}
}

// TestMissingModuleIsZeroUpdate checks that an adapter lacking a module merges exactly as the same
// adapter with a zero update there, and that the output rank counts only real factors.
func TestMissingModuleIsZeroUpdate(t *testing.T) {
	base := loadBase(t)
	calib := loadCalib(t)
	isMLP := func(n string) bool { return strings.Contains(n, ".mlp.") }
	attnOnly := subset(t, "upc", func(n string) bool { return !isMLP(n) }, nil)
	zeroMLP := subset(t, "upc", func(string) bool { return true }, func(m *adapter.Module) {
		if isMLP(m.Name) {
			for i := range m.B {
				m.B[i] = 0
			}
		}
	})
	load := func(dir string) *adapter.Adapter {
		a, err := adapter.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	rev := load(filepath.Join(fixture, "adapters/rev"))
	// One solve sees identical features in both cases; the second solve's features come from
	// merged models whose factors are arranged differently, so float32 rounding enters.
	for _, tc := range []struct {
		obj   merge.Objective
		iters int
		tol   float64
	}{{merge.Delta, 1, 1e-9}, {merge.Full, 1, 1e-9}, {merge.Delta, 2, 1e-5}, {merge.Full, 2, 1e-5}} {
		obj := tc.obj
		set := paperSettings(tc.iters)
		set.Objective = obj
		if obj == merge.Full {
			// The full update is dense: compare it untruncated (rank auto would differ between the
			// two on purpose: 8 where upc lacks the module, 16 where it has a zero one).
			set.Rank = -1
		}
		tasks := func(upc *adapter.Adapter) []*Task {
			return []*Task{{Name: "rev", Adapter: rev, Weight: 1, Seqs: calib.CalibTokens["rev"]},
				{Name: "upc", Adapter: upc, Weight: 1, Seqs: calib.CalibTokens["upc"]}}
		}
		missing, _ := runMerger(t, base, tasks(load(attnOnly)), set)
		zero, _ := runMerger(t, base, tasks(load(zeroMLP)), set)
		for i, s := range missing.Sites() {
			want := 16
			if isMLP(s.Name) {
				want = 8
			}
			if r, _ := s.A.Dims(); obj == merge.Delta && r != want {
				t.Errorf("%s %s: output rank %d, want %d", obj, s.Name, r, want)
			}
			if e := relFrob(dense(s), dense(zero.Sites()[i])); e > tc.tol {
				t.Errorf("%s %s: missing module and zero update differ by %.3g", obj, s.Name, e)
			}
		}
	}
}

// TestCalibrationReproducesFixtureTokens builds the calibration sequences the way `iteris merge`
// does (prompt + the adapter's greedy completion until EOS) and compares them with the fixture's
// iteris_calib.json, which used len(answer)+1 completion tokens. The fixture lists the same 16
// items in another order (Grams are sums, so order does not matter): compare as sorted sets.
func TestCalibrationReproducesFixtureTokens(t *testing.T) {
	base := loadBase(t)
	calib := loadCalib(t)
	tok, err := tokenizer.LoadDir(filepath.Join(fixture, "model"))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range fixtureTasks(t, base) {
		items, err := eval.LoadJSONL(filepath.Join(fixture, "data", task.Name, "calib.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		tm, err := base.WithLoRA(LoRAs(task.Adapter), false)
		if err != nil {
			t.Fatal(err)
		}
		seqs, capped, err := Calibrate(tm, tok, items, CalibOptions{Samples: 16, MaxNewTokens: 64, BatchSize: 5, MaxLength: base.Config.MaxLength()})
		if err != nil || capped != 0 {
			t.Fatalf("%s: %v, %d capped", task.Name, err, capped)
		}
		got, want := sortedSeqs(seqs), sortedSeqs(calib.CalibTokens[task.Name])
		if len(got) != 16 || len(want) != 16 {
			t.Fatalf("%s: %d sequences, fixture %d", task.Name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: calibration sequence %s, fixture %s", task.Name, got[i], want[i])
			}
		}
	}
}

// TestCalibrationStopsAtMaxLength caps the sequences at 16 tokens: each is the fixture's sequence
// cut there (greedy completions are prefixes of longer ones), and the cut ones are counted.
func TestCalibrationStopsAtMaxLength(t *testing.T) {
	base := loadBase(t)
	calib := loadCalib(t)
	tok, err := tokenizer.LoadDir(filepath.Join(fixture, "model"))
	if err != nil {
		t.Fatal(err)
	}
	const limit = 16
	task := fixtureTasks(t, base)[0]
	items, err := eval.LoadJSONL(filepath.Join(fixture, "data", task.Name, "calib.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	tm, err := base.WithLoRA(LoRAs(task.Adapter), false)
	if err != nil {
		t.Fatal(err)
	}
	seqs, capped, err := Calibrate(tm, tok, items, CalibOptions{Samples: 16, MaxNewTokens: 64, BatchSize: 5, MaxLength: limit})
	if err != nil {
		t.Fatal(err)
	}
	var want [][]int
	wantCapped := 0
	for _, q := range calib.CalibTokens[task.Name] {
		if len(q) > limit {
			q = q[:limit]
			wantCapped++
		}
		want = append(want, q)
	}
	if wantCapped == 0 || capped != wantCapped {
		t.Errorf("%d sequences capped, want %d (> 0 for the test to mean anything)", capped, wantCapped)
	}
	got, ws := sortedSeqs(seqs), sortedSeqs(want)
	for i := range ws {
		if got[i] != ws[i] {
			t.Errorf("capped sequence %s, want %s", got[i], ws[i])
		}
	}
}

func TestJacobiToleranceStopsEarly(t *testing.T) {
	base := loadBase(t)
	set := paperSettings(5)
	set.Tolerance = 10 // any change is below it: stop after the first comparison
	_, recs := runMerger(t, base, fixtureTasks(t, base), set)
	if len(recs) != 2 || recs[1].MaxRelChange == nil {
		t.Fatalf("%d solves, want 2 (the first solve with a relative change stops)", len(recs))
	}
	set.Tolerance = 1e-12
	_, recs = runMerger(t, base, fixtureTasks(t, base), set)
	if len(recs) != 5 {
		t.Fatalf("%d solves with a tiny tolerance, want all 5", len(recs))
	}
	for k := 1; k < 5; k++ {
		if *recs[k].MaxRelChange <= 0 {
			t.Errorf("solve %d: max relative change %v", k+1, *recs[k].MaxRelChange)
		}
	}
}

func sortedSeqs(seqs [][]int) []string {
	out := make([]string, len(seqs))
	for i, s := range seqs {
		out[i] = fmt.Sprint(s)
	}
	sort.Strings(out)
	return out
}
