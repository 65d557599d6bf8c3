package merge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/distill"
	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

// The residual-corrected sweep of reference-rc (README "Closed form", "Data-aware truncation",
// "Sweep order"): merge4's adapters, all 64 calibration sequences per task, alpha = 1e-4,
// adaptive weights, rank 32.
const (
	rcFixture = "../../testdata/tiny-skills"
	rcAlpha   = 1e-4
	rcRank    = 32
)

var rcTasks = []string{"rev", "upc", "nxt", "srt"}

// levelSites are the sites of each level of a layer, in sweep order.
var levelSites = [][]string{
	{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
	{"self_attn.o_proj"},
	{"mlp.gate_proj", "mlp.up_proj"},
	{"mlp.down_proj"},
}

// levelPoint is the observation point the sites of each level read.
var levelPoint = []model.Point{model.PointAttn, model.PointO, model.PointMLP, model.PointDown}

// streams holds one task's features on its calibration sequences under one model: the inputs of
// every site point and the residual streams entering each layer and after its attention block.
type streams struct {
	rows int
	x    map[string][]float32 // key "l.point" -> rows x width
	h    [][]float32          // h[l]: entering layer l (capture: and h[upto+1], its output)
	mid  [][]float32          // mid[l]: h^{l,mid}
}

func pointKey(l int, p model.Point) string { return fmt.Sprintf("%d.%d", l, p) }

// capture runs m on seqs through layers 0..upto and records the features.
func capture(t *testing.T, m *model.Model, seqs [][]int, upto int) *streams {
	t.Helper()
	st, err := m.Start(seqs)
	if err != nil {
		t.Fatal(err)
	}
	s := &streams{rows: st.Rows, x: map[string][]float32{}}
	obs := func(l int, p model.Point, x []float32, _ int) {
		s.x[pointKey(l, p)] = append([]float32(nil), x...)
	}
	for l := 0; l <= upto; l++ {
		s.h = append(s.h, append([]float32(nil), st.H...))
		mid, out := m.ObserveResiduals(l, st, obs)
		s.mid = append(s.mid, mid)
		st.H = out
	}
	s.h = append(s.h, st.H) // the output of layer upto
	return s
}

// rcSetup is the fixture loaded once per test.
type rcSetup struct {
	base    *model.Model
	seqs    map[string][][]int
	factors map[string][]merge.Factor // site -> one factor per task
	task    map[string]*streams       // X_t, h_t for every layer
}

var (
	rcOnce  sync.Once
	rcSaved *rcSetup
)

// loadRC loads the fixture and the task streams once per test binary (tests only read them).
func loadRC(t *testing.T) *rcSetup {
	t.Helper()
	rcOnce.Do(func() { rcSaved = loadRCOnce(t) })
	if rcSaved == nil {
		t.Fatal("loading the reference-rc fixture failed in an earlier test")
	}
	return rcSaved
}

func loadRCOnce(t *testing.T) *rcSetup {
	t.Helper()
	base, err := model.Load(filepath.Join(rcFixture, "model"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(rcFixture, "reference-rc/calib64.json"))
	if err != nil {
		t.Fatal(err)
	}
	var calib struct {
		Tokens    map[string][][]int `json:"calib_tokens"`
		Positions map[string]int     `json:"positions"`
	}
	if err := json.Unmarshal(raw, &calib); err != nil {
		t.Fatal(err)
	}
	s := &rcSetup{base: base, seqs: calib.Tokens, factors: map[string][]merge.Factor{}, task: map[string]*streams{}}
	for _, task := range rcTasks {
		a, err := adapter.Load(filepath.Join(rcFixture, "adapters", task))
		if err != nil {
			t.Fatal(err)
		}
		loras := map[string][]model.LoRA{}
		for name, mod := range a.Modules {
			loras[name] = []model.LoRA{{R: mod.R, A: mod.A, B: mod.B, Scale: float32(mod.Scale)}}
			s.factors[name] = append(s.factors[name], merge.Factor{
				A: dense(mod.R, mod.In, mod.A), B: dense(mod.Out, mod.R, mod.B), Scale: mod.Scale, Weight: 1})
		}
		tm, err := base.WithLoRA(loras, false)
		if err != nil {
			t.Fatal(err)
		}
		s.task[task] = capture(t, tm, s.seqs[task], base.Config.Layers-1)
		if s.task[task].rows != calib.Positions[task] {
			t.Fatalf("%s: %d positions, README says %d", task, s.task[task].rows, calib.Positions[task])
		}
	}
	return s
}

func dense(r, c int, x []float32) *mat.Dense {
	d := make([]float64, len(x))
	for i, v := range x {
		d[i] = float64(v)
	}
	return mat.NewDense(r, c, d)
}

func readUpdates(t *testing.T, name string) map[string]*mat.Dense {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(rcFixture, "reference-rc", name))
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
		out[n] = dense(info.Shape[0], info.Shape[1], x)
	}
	return out
}

// mergedModel is W0 + d at every given site (merged into float32 weights).
func (s *rcSetup) mergedModel(t *testing.T, d map[string]*mat.Dense) *model.Model {
	t.Helper()
	ups := map[string][]model.LoRA{}
	for name, u := range d {
		out, in := u.Dims()
		a := make([]float32, out*in)
		for i, v := range u.RawMatrix().Data {
			a[i] = float32(v)
		}
		eye := make([]float32, out*out)
		for i := 0; i < out; i++ {
			eye[i*out+i] = 1
		}
		ups[name] = []model.LoRA{{R: out, A: a, B: eye, Scale: 1}} // B A = d exactly
	}
	m, err := s.base.WithLoRA(ups, true)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func siteName(l int, s string) string { return fmt.Sprintf("model.layers.%d.%s", l, s) }

// siteResult is one re-solved site of a teacher-forced sweep.
type siteResult struct {
	name string
	res  merge.CorrectedResult
	x    []*mat.Dense // X_t (task features) for the output error
}

// sweep solves every site in sweep order, the way the shard runs the merged stream: each task's
// merged residual stream is advanced one layer at a time, and before each level layer l is
// observed under the model that holds the earlier sites. With ref (teacher-forced) the earlier
// sites hold ref's updates; with ref nil (free-running) the sweep's own results (B A). It returns
// the results in sweep order.
func (s *rcSetup) sweep(t *testing.T, ref map[string]*mat.Dense, rank int) []siteResult {
	t.Helper()
	var out []siteResult
	done := map[string]*mat.Dense{}
	states := map[string]*model.State{}
	for _, task := range rcTasks {
		st, err := s.base.Start(s.seqs[task])
		if err != nil {
			t.Fatal(err)
		}
		states[task] = st
	}
	for l := 0; l < s.base.Config.Layers; l++ {
		for j, sites := range levelSites {
			mm := s.mergedModel(t, done)
			merged := map[string]*streams{}
			for _, task := range rcTasks {
				merged[task] = observeLayer(mm, states[task], l)
			}
			for _, site := range sites {
				name := siteName(l, site)
				r := s.solveSite(t, name, l, j, merged, rank)
				out = append(out, r)
				if ref != nil {
					done[name] = ref[name]
				} else {
					var d mat.Dense
					d.Mul(r.res.B, r.res.A)
					done[name] = &d
				}
			}
		}
		mm := s.mergedModel(t, done)
		for _, task := range rcTasks {
			mm.RunLayer(l, states[task], nil)
		}
	}
	return out
}

// observeLayer records layer l's features of st under m (st unchanged): the site inputs, h^l and
// h^{l,mid}, indexed like capture's (entries of earlier layers are nil).
func observeLayer(m *model.Model, st *model.State, l int) *streams {
	s := &streams{rows: st.Rows, x: map[string][]float32{}, h: make([][]float32, l+1), mid: make([][]float32, l+1)}
	s.h[l] = st.H
	s.mid[l], _ = m.ObserveResiduals(l, st, func(l int, p model.Point, x []float32, _ int) {
		s.x[pointKey(l, p)] = append([]float32(nil), x...)
	})
	return s
}

// solveSite accumulates the Grams (and for o_proj/down_proj the drift cross terms) of one site
// through the gram package and solves it.
func (s *rcSetup) solveSite(t *testing.T, name string, l, level int, merged map[string]*streams, rank int) siteResult {
	t.Helper()
	w0l, _ := s.base.Linear(name)
	w0 := dense(w0l.Out, w0l.In, w0l.W.Float32())
	key := pointKey(l, levelPoint[level])
	var gs []gram.Grams
	var cross []*mat.Dense
	var xs []*mat.Dense
	for _, task := range rcTasks {
		tk, mg := s.task[task], merged[task]
		acc := gram.NewAccumulator(w0l.In, true)
		if err := acc.Add(tk.x[key], mg.x[key], tk.rows); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, acc.Grams())
		xs = append(xs, dense(tk.rows, w0l.In, tk.x[key]))
		var h, ht []float32
		switch level {
		case 1: // o_proj: D = h^l - h~^l
			h, ht = tk.h[l], mg.h[l]
		case 3: // down_proj: D = h^{l,mid} - h~^{l,mid}
			h, ht = tk.mid[l], mg.mid[l]
		default:
			cross = append(cross, nil)
			continue
		}
		ca := gram.NewCrossAccumulator(w0l.Out, w0l.In)
		if err := ca.AddDiff(h, ht, mg.x[key], tk.rows); err != nil {
			t.Fatal(err)
		}
		cross = append(cross, ca.Sum())
	}
	res, err := merge.SolveCorrected(w0, s.factors[name], gs, cross, merge.CorrectedOptions{
		Alpha1: rcAlpha, Alpha2: rcAlpha, Adaptive: true, Rank: rank, Truncation: merge.TruncData})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return siteResult{name: name, res: res, x: xs}
}

func relFrobD(got, want mat.Matrix) float64 {
	var d mat.Dense
	d.Sub(got, want)
	return mat.Norm(&d, 2) / mat.Norm(want, 2)
}

// outputErr is ||X_t (d - ref)^T|| / ||X_t ref^T|| stacked over tasks.
func outputErr(xs []*mat.Dense, d, ref *mat.Dense) float64 {
	var num, den float64
	var diff mat.Dense
	diff.Sub(d, ref)
	for _, x := range xs {
		var a, b mat.Dense
		a.Mul(x, diff.T())
		b.Mul(x, ref.T())
		na, nb := mat.Norm(&a, 2), mat.Norm(&b, 2)
		num += na * na
		den += nb * nb
	}
	return math.Sqrt(num / den)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// TestRCSweepTeacherForced re-solves all 28 sites of rc_sweep.safetensors (data-aware rank 32) and
// rc_sweep_untruncated.safetensors (no truncation), each from the float32 engine's features of the
// merged model that holds the file's earlier sites, and compares with the file. The README accepts
// 3e-3 per site and 3e-4 on the outputs for a float32 pipeline (it measured 6.9e-4 and 4.3e-5
// free-running); teacher-forced, the float32 features alone give about 1e-5 (measured 8.6e-6 and
// 5.2e-6), so the test holds them to 1e-4 on both. It also checks the adaptive weights against
// results.json.
func TestRCSweepTeacherForced(t *testing.T) {
	if _, err := linalg.Init(linalg.ModeAuto); err != nil {
		t.Fatal(err)
	}
	s := loadRC(t)
	coefs := readCoefs(t)
	for _, tc := range []struct {
		file string
		rank int
	}{{"rc_sweep.safetensors", rcRank}, {"rc_sweep_untruncated.safetensors", -1}} {
		t.Run(tc.file, func(t *testing.T) {
			ref := readUpdates(t, tc.file)
			checkSweep(t, tc.file, s.sweep(t, ref, tc.rank), ref, tc.rank, 1e-4, 1e-4, coefs)
		})
	}
}

// TestRCSweepFreeRunning runs the truncated sweep on its own results, as the shard will. The README
// accepts 3e-3 per site and 3e-4 on the outputs for float32 (its float32 torch run: 6.9e-4 and
// 4.3e-5); with float32 features but float64 Grams and solves this sweep stays near 1e-5
// (measured 4.6e-6 and 1.6e-6), so the test holds it to 1e-4 on both.
func TestRCSweepFreeRunning(t *testing.T) {
	if _, err := linalg.Init(linalg.ModeAuto); err != nil {
		t.Fatal(err)
	}
	s := loadRC(t)
	ref := readUpdates(t, "rc_sweep.safetensors")
	checkSweep(t, "free-running rc_sweep", s.sweep(t, nil, rcRank), ref, rcRank, 1e-4, 1e-4, readCoefs(t))
}

// checkSweep compares a sweep's updates (B A with a rank, Update without) with ref: per site
// relative Frobenius error <= tolSite, output error <= tolOut, adaptive weights within 1e-5 of
// results.json.
func checkSweep(t *testing.T, what string, got []siteResult, ref map[string]*mat.Dense, rank int, tolSite, tolOut float64, coefs map[string]map[string]float64) {
	t.Helper()
	if len(got) != len(ref) {
		t.Fatalf("%s: %d sites solved, the file holds %d", what, len(got), len(ref))
	}
	var site, output, coef []float64
	for _, r := range got {
		d := r.res.Update
		if rank > 0 {
			d = new(mat.Dense)
			d.Mul(r.res.B, r.res.A)
			if _, k := r.res.B.Dims(); k != rank {
				t.Errorf("%s: output rank %d, want %d", r.name, k, rank)
			}
		}
		e, eo := relFrobD(d, ref[r.name]), outputErr(r.x, d, ref[r.name])
		site, output = append(site, e), append(output, eo)
		for i, task := range rcTasks {
			want := coefs[r.name][task]
			coef = append(coef, math.Abs(r.res.Coefs[i]-want)/want)
		}
		if e > tolSite || eo > tolOut {
			t.Errorf("%s: relative error %.3g (accept %.0e), output error %.3g (accept %.0e)", r.name, e, tolSite, eo, tolOut)
		}
	}
	t.Logf("%s: per-site rel error max %.3g median %.3g; output error max %.3g; adaptive weights max rel error %.3g",
		what, maxOf(site), median(site), maxOf(output), maxOf(coef))
	if c := maxOf(coef); c > 1e-5 {
		t.Errorf("adaptive weights differ from results.json by up to %.3g relative", c)
	}
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

func readCoefs(t *testing.T) map[string]map[string]float64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(rcFixture, "reference-rc/results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Coefs map[string]map[string]float64 `json:"adaptive_weights_n64"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Coefs) != 28 {
		t.Fatalf("results.json: %d sites of adaptive weights, want 28", len(r.Coefs))
	}
	return r.Coefs
}

// TestRCTruncationIsolated: the sweeps agree through layer 0's q, k and v, so layer 0 o_proj of
// rc_sweep_untruncated is the pre-truncation d* of rc_sweep's o_proj. Truncating it with the
// metric of that site (from the engine's features of the merged model with rc_sweep's q, k, v)
// gives rc_sweep's o_proj (README: 6.6e-8 in float64); plain SVD truncation does not (6.3%).
func TestRCTruncationIsolated(t *testing.T) {
	s := loadRC(t)
	trunc, untr := readUpdates(t, "rc_sweep.safetensors"), readUpdates(t, "rc_sweep_untruncated.safetensors")
	qkv := map[string]*mat.Dense{}
	for _, site := range levelSites[0] {
		n := siteName(0, site)
		if e := relFrobD(untr[n], trunc[n]); e > 1e-6 {
			t.Fatalf("%s: the two sweeps differ by %.3g at layer 0 q/k/v", n, e)
		}
		qkv[n] = trunc[n]
	}
	mm := s.mergedModel(t, qkv)
	merged := map[string]*streams{}
	for _, task := range rcTasks {
		st, err := s.base.Start(s.seqs[task])
		if err != nil {
			t.Fatal(err)
		}
		merged[task] = observeLayer(mm, st, 0)
	}
	o0 := siteName(0, "self_attn.o_proj")
	r := s.solveSite(t, o0, 0, 1, merged, rcRank)
	b, a, sv, err := linalg.TruncateWeighted(untr[o0], r.res.Metric, rcRank, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got mat.Dense
	got.Mul(b, a)
	e := relFrobD(&got, trunc[o0])
	pb, pa := linalg.TruncateDense(untr[o0], rcRank, 0)
	var plain mat.Dense
	plain.Mul(pb, pa)
	ep := relFrobD(&plain, trunc[o0])
	t.Logf("truncate(untruncated[o0]) vs rc_sweep[o0]: %.3g (plain SVD: %.3g); sigma32 %.6g", e, ep, sv[rcRank-1])
	if e > 1e-5 {
		t.Errorf("data-aware truncation of the stored d* differs from rc_sweep[o0] by %.3g", e)
	}
	if ep < 0.05 {
		t.Errorf("plain SVD truncation is within %.3g of rc_sweep[o0]: the test cannot tell the truncations apart", ep)
	}
}

// TestRCLDFullMethod runs the full method of reference-rc (README "Layer-wise distillation"): per
// layer the closed-form levels with data-aware truncation, the balanced split of the 7 updates,
// 30 Adam steps (lr 1e-3) of distillation from the merged residual entering the layer to the task
// models' output of the layer, then the next layer on the refined updates. It compares every
// site with ld30.safetensors and each layer's first and last loss with results.json. The README
// accepts 2e-2 per site and 1e-3 on the losses for float32 (its float32 torch run: 3.3e-3 and
// 1.1e-4); here the closed form is float64 on float32 features, the split starts within 1e-5 of
// the reference (measured: sites 1.2e-5, losses 3.1e-7), so the test holds it to 1e-4 per site
// and 1e-5 on the losses.
func TestRCLDFullMethod(t *testing.T) {
	if testing.Short() {
		t.Skip("the full method on 4 layers (124 distillation passes over 4 tasks) takes about 20 s")
	}
	if _, err := linalg.Init(linalg.ModeAuto); err != nil {
		t.Fatal(err)
	}
	s := loadRC(t)
	ref := readUpdates(t, "ld30.safetensors")
	want := readLDLosses(t)
	done := map[string]*mat.Dense{}
	states := map[string]*model.State{}
	for _, task := range rcTasks {
		st, err := s.base.Start(s.seqs[task])
		if err != nil {
			t.Fatal(err)
		}
		states[task] = st
	}
	var siteErr []float64
	for l := 0; l < s.base.Config.Layers; l++ {
		start := map[string]distill.Factors{}
		for j, sites := range levelSites {
			mm := s.mergedModel(t, done)
			merged := map[string]*streams{}
			for _, task := range rcTasks {
				merged[task] = observeLayer(mm, states[task], l)
			}
			for _, site := range sites {
				name := siteName(l, site)
				r := s.solveSite(t, name, l, j, merged, rcRank)
				var d mat.Dense
				d.Mul(r.res.B, r.res.A)
				done[name] = &d
				start[name] = distill.Split(r.res.B, r.res.A, rcRank)
			}
		}
		var tasks []distill.Task
		for _, task := range rcTasks {
			tasks = append(tasks, distill.Task{Input: states[task], Target: s.task[task].h[l+1]})
		}
		res, err := distill.Refine(context.Background(), s.base, l, tasks, start, distill.Options{Steps: 30, LR: 1e-3})
		if err != nil {
			t.Fatal(err)
		}
		first, last := res.Loss[0], res.Loss[30]
		ef, el := math.Abs(first-want[l][0])/want[l][0], math.Abs(last-want[l][1])/want[l][1]
		t.Logf("layer %d: LD loss %.6f -> %.6f (reference %.6f -> %.6f; rel %.2e, %.2e)", l, first, last, want[l][0], want[l][1], ef, el)
		if ef > 1e-5 || el > 1e-5 {
			t.Errorf("layer %d: LD losses %.6g -> %.6g, want %.6g -> %.6g within 1e-5", l, first, last, want[l][0], want[l][1])
		}
		for name, f := range res.Factors {
			var d mat.Dense
			d.Mul(f.B, f.A)
			done[name] = &d
			e := relFrobD(&d, ref[name])
			siteErr = append(siteErr, e)
			if e > 1e-4 {
				t.Errorf("%s: relative error %.3g against ld30 (accept 1e-4)", name, e)
			}
		}
		mm := s.mergedModel(t, done)
		for _, task := range rcTasks {
			mm.RunLayer(l, states[task], nil)
		}
	}
	t.Logf("ld30: per-site rel error max %.3g, median %.3g over %d sites", maxOf(siteErr), median(siteErr), len(siteErr))
}

// readLDLosses returns results.json's ld_loss_float64 rc_ld30_r32_n64: per layer (first, last).
func readLDLosses(t *testing.T) [][2]float64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(rcFixture, "reference-rc/results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		LD map[string][]struct {
			Layer       int
			First, Last float64
		} `json:"ld_loss_float64"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	rows := r.LD["rc_ld30_r32_n64"]
	out := make([][2]float64, len(rows))
	for _, e := range rows {
		out[e.Layer] = [2]float64{e.First, e.Last}
	}
	if len(out) != 4 {
		t.Fatalf("results.json: %d layers of LD losses, want 4", len(out))
	}
	return out
}
