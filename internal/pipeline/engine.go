package pipeline

import (
	"fmt"
	"math"
	"sort"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/progress"
)

// ErrInput reports an input (config, adapter, calibration data, output directory) that cannot be
// merged; it is inputs.ErrInput, reported before any heavy work.
var ErrInput = inputs.ErrInput

// Schedules of the IterIS solve.
const (
	// Jacobi solves every site from the features of the previous solve's model (the paper's).
	Jacobi = "jacobi"
	// Sweep solves sites in dependency order in one pass.
	Sweep = "sweep"
)

// Task is one adapter to merge, with its calibration sequences.
type Task struct {
	// Name names the task (the adapter's name in the config).
	Name string
	// Adapter is the loaded PEFT adapter.
	Adapter *adapter.Adapter
	// Weight is the user weight m_i.
	Weight float64
	// Seqs are the calibration token sequences (data-aware methods only).
	Seqs [][]int
}

// SolveSettings are the data-aware solve's parameters.
type SolveSettings struct {
	// Method is "iteris" or "regmean".
	Method string
	// Objective is merge.Delta or merge.Full (iteris only).
	Objective merge.Objective
	// Schedule is Jacobi or Sweep (iteris only).
	Schedule string
	// Iterations is the number of jacobi solves.
	Iterations int
	// Tolerance stops jacobi early when every site's relative change falls below it (0 = off).
	Tolerance float64
	// Alpha1 and Alpha2 are the relative ridges.
	Alpha1, Alpha2 float64
	// Adaptive enables the adaptive weights c_i.
	Adaptive bool
	// Rank is the output rank: 0 = sum of input ranks, -1 = full, k > 0.
	Rank int
	// Reduce is RegMean's off-diagonal shrink (1 = none).
	Reduce float64
	// Seed drives randomized truncation.
	Seed uint64
	// BatchSize is the number of sequences run through the model together.
	BatchSize int
}

// Site is one target module being merged.
type Site struct {
	// Name is the module name.
	Name string
	// Layer and Point locate the module's input.
	Layer int
	Point model.Point
	// Factors holds one factor per task (a zero factor where the task's adapter lacks the module).
	Factors []merge.Factor
	// Missing marks the tasks whose adapter lacks the module.
	Missing []bool
	// B and A are the current merged update (scale 1), nil before the first solve.
	B, A *mat.Dense

	// coefs caches the adaptive weights c_i: they depend only on the task models' features,
	// which do not change between solves.
	coefs []float64
}

// SiteRecord is one site's outcome in one solve (defined with the report in internal/output).
type SiteRecord = output.SiteRecord

// SolveRecord is one solve, one jacobi step or the whole sweep (defined in internal/output).
type SolveRecord = output.SolveRecord

// Merger runs the data-aware merges over one base model in one process.
type Merger struct {
	base     *model.Model
	tasks    []*Task
	taskMods []*model.Model
	sites    []*Site
	byLevel  map[level][]*Site
	levels   []level
	set      SolveSettings
	progress *progress.Reporter

	// AfterSolve, if set, is called after each jacobi solve k has installed its updates.
	AfterSolve func(k int)
}

// level is one dependency level: the sites that read one point of one layer.
type level struct {
	layer int
	point model.Point
}

func (l level) String() string { return fmt.Sprintf("layers.%d.%s", l.layer, l.point) }

// NewMerger prepares the sites (the union of the adapters' modules) and the task models (base +
// adapter i, applied unmerged). Adapters must already be validated against base.
func NewMerger(base *model.Model, tasks []*Task, set SolveSettings, rep *progress.Reporter) (*Merger, error) {
	if set.BatchSize <= 0 {
		set.BatchSize = 16
	}
	mg := &Merger{base: base, tasks: tasks, set: set, progress: rep, byLevel: map[level][]*Site{}}
	names := map[string]bool{}
	for _, t := range tasks {
		m, err := base.WithLoRA(LoRAs(t.Adapter), false)
		if err != nil {
			return nil, fmt.Errorf("task %s: %w", t.Name, err)
		}
		mg.taskMods = append(mg.taskMods, m)
		for n := range t.Adapter.Modules {
			names[n] = true
		}
	}
	for n := range names {
		l, p, ok := model.PointOf(n)
		if !ok {
			return nil, fmt.Errorf("%w: module %s is not a decoder linear module", ErrInput, n)
		}
		lin, ok := base.Linear(n)
		if !ok {
			return nil, fmt.Errorf("%w: module %s is not in the base model", ErrInput, n)
		}
		s := &Site{Name: n, Layer: l, Point: p}
		for _, t := range tasks {
			mod, ok := t.Adapter.Modules[n]
			if !ok {
				// The adapter leaves this module alone: a zero update of rank 1 keeps the
				// task's features in the solve; its zero column is dropped from the output.
				s.Factors = append(s.Factors, merge.Factor{A: mat.NewDense(1, lin.In, nil), B: mat.NewDense(lin.Out, 1, nil), Scale: 1, Weight: t.Weight})
				s.Missing = append(s.Missing, true)
				continue
			}
			s.Factors = append(s.Factors, merge.Factor{
				A:     mat.NewDense(mod.R, mod.In, f64(mod.A)),
				B:     mat.NewDense(mod.Out, mod.R, f64(mod.B)),
				Scale: mod.Scale, Weight: t.Weight,
			})
			s.Missing = append(s.Missing, false)
		}
		mg.sites = append(mg.sites, s)
		lv := level{l, p}
		if _, ok := mg.byLevel[lv]; !ok {
			mg.levels = append(mg.levels, lv)
		}
		mg.byLevel[lv] = append(mg.byLevel[lv], s)
	}
	sort.Slice(mg.sites, func(i, j int) bool { return siteLess(mg.sites[i], mg.sites[j]) })
	sort.Slice(mg.levels, func(i, j int) bool {
		a, b := mg.levels[i], mg.levels[j]
		return a.layer < b.layer || (a.layer == b.layer && a.point < b.point)
	})
	for _, ss := range mg.byLevel {
		sort.Slice(ss, func(i, j int) bool { return siteLess(ss[i], ss[j]) })
	}
	return mg, nil
}

func siteLess(a, b *Site) bool {
	if a.Layer != b.Layer {
		return a.Layer < b.Layer
	}
	if a.Point != b.Point {
		return a.Point < b.Point
	}
	return a.Name < b.Name
}

// Levels returns the number of dependency levels: jacobi needs that many solves to reach the
// sweep's answer.
func (mg *Merger) Levels() int { return len(mg.levels) }

// Sites returns the sites in dependency order.
func (mg *Merger) Sites() []*Site { return mg.sites }

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

func f32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// stream is one batch of one task's sequences on its way through the layers: T under the task
// model, M under the merged model.
type stream struct {
	task int
	T, M *model.State
}

func (mg *Merger) streams(merged *model.Model) ([]*stream, error) {
	var out []*stream
	for i, t := range mg.tasks {
		for lo := 0; lo < len(t.Seqs); lo += mg.set.BatchSize {
			seqs := t.Seqs[lo:min(lo+mg.set.BatchSize, len(t.Seqs))]
			s := &stream{task: i}
			var err error
			if s.T, err = mg.taskMods[i].Start(seqs); err != nil {
				return nil, fmt.Errorf("task %s: %w", t.Name, err)
			}
			if merged != nil {
				if s.M, err = merged.Start(seqs); err != nil {
					return nil, fmt.Errorf("task %s: %w", t.Name, err)
				}
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// mergedModel returns the base with the current merged updates applied unmerged.
func (mg *Merger) mergedModel() (*model.Model, error) {
	up := map[string][]model.LoRA{}
	for _, s := range mg.sites {
		if s.B == nil {
			continue
		}
		k, n := s.A.Dims()
		up[s.Name] = []model.LoRA{{R: k, A: f32(s.A.RawMatrix().Data[:k*n]), B: f32(denseData(s.B)), Scale: 1}}
	}
	return mg.base.WithLoRA(up, false)
}

func denseData(m *mat.Dense) []float64 {
	r, c := m.Dims()
	raw := m.RawMatrix()
	if raw.Stride == c {
		return raw.Data[:r*c]
	}
	out := make([]float64, 0, r*c)
	for i := 0; i < r; i++ {
		out = append(out, raw.Data[i*raw.Stride:i*raw.Stride+c]...)
	}
	return out
}

// pointsAt returns which points of layer l carry sites.
func (mg *Merger) pointsAt(l int) [model.NumPoints]bool {
	var need [model.NumPoints]bool
	for _, lv := range mg.levels {
		if lv.layer == l {
			need[lv.point] = true
		}
	}
	return need
}

func (mg *Merger) lastLayer() int {
	if len(mg.levels) == 0 {
		return -1
	}
	return mg.levels[len(mg.levels)-1].layer
}

func (mg *Merger) newAccs(l int, p model.Point, cross bool) []*gram.Accumulator {
	width := mg.byLevel[level{l, p}][0].Factors[0].A.RawMatrix().Cols
	accs := make([]*gram.Accumulator, len(mg.tasks))
	for i := range accs {
		accs[i] = gram.NewAccumulator(width, cross)
	}
	return accs
}

// captureLayer advances every stream through layer l (task model, and the merged model when
// merged is not nil) and returns the accumulated Grams of the points that carry sites.
func (mg *Merger) captureLayer(l int, sts []*stream, merged *model.Model) (map[model.Point][]gram.Grams, error) {
	need := mg.pointsAt(l)
	cross := merged != nil
	accs := map[model.Point][]*gram.Accumulator{}
	for p := model.Point(0); p < model.NumPoints; p++ {
		if need[p] {
			accs[p] = mg.newAccs(l, p, cross)
		}
	}
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, s := range sts {
		var xs [model.NumPoints][]float32
		mg.taskMods[s.task].RunLayer(l, s.T, func(_ int, p model.Point, x []float32, rows int) {
			if !need[p] {
				return
			}
			if cross {
				xs[p] = append([]float32(nil), x...)
			} else {
				keep(accs[p][s.task].Add(x, nil, rows))
			}
		})
		if cross {
			merged.RunLayer(l, s.M, func(_ int, p model.Point, x []float32, rows int) {
				if need[p] {
					keep(accs[p][s.task].Add(xs[p], x, rows))
				}
			})
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	out := map[model.Point][]gram.Grams{}
	for p, as := range accs {
		for _, a := range as {
			out[p] = append(out[p], a.Grams())
		}
	}
	return out, nil
}

// w0 returns the base weight of a site in float64.
func (mg *Merger) w0(s *Site) *mat.Dense {
	lin, _ := mg.base.Linear(s.Name)
	return mat.NewDense(lin.Out, lin.In, f64(lin.W))
}

// solveSite solves one site from its Grams and stores the result in s.
func (mg *Merger) solveSite(s *Site, g []gram.Grams) (SiteRecord, error) {
	var w0 *mat.Dense
	if (mg.set.Adaptive && s.coefs == nil) || mg.set.Objective == merge.Full {
		w0 = mg.w0(s)
	}
	// The output-rank rule over the ranks of the adapters that have this module (the zero
	// placeholders of the others add nothing).
	var ranks []int
	for i, f := range s.Factors {
		if !s.Missing[i] {
			r, _ := f.A.Dims()
			ranks = append(ranks, r)
		}
	}
	out, in := s.Factors[0].B.RawMatrix().Rows, s.Factors[0].A.RawMatrix().Cols
	rank := merge.OutputRank(mg.set.Rank, ranks, out, in, mg.set.Objective != merge.Full).Solve
	var res merge.SiteResult
	var err error
	if mg.set.Method == "regmean" {
		res, err = merge.SolveRegMean(w0, s.Factors, g, mg.set.Reduce, rank)
	} else {
		res, err = merge.SolveIterIS(w0, s.Factors, g, merge.SolveOptions{
			Objective: mg.set.Objective, Alpha1: mg.set.Alpha1, Alpha2: mg.set.Alpha2,
			Adaptive: mg.set.Adaptive, Rank: rank, Seed: mg.set.Seed, Coefs: s.coefs,
		})
	}
	if err != nil {
		return SiteRecord{}, fmt.Errorf("site %s: %w", s.Name, err)
	}
	b, a := res.B, res.A
	if mg.set.Objective != merge.Full {
		b, a = dropMissing(s, b, a)
	}
	if mg.set.Adaptive {
		s.coefs = res.Coefs
	}
	rec := SiteRecord{Residual: res.Residual, Coefs: res.Coefs, Weights: res.Weights, Method: res.Method}
	if s.B != nil {
		rc := merge.RelChange(s.B, s.A, b, a)
		rec.RelChange = &rc
	}
	rec.Rank, _ = a.Dims()
	for _, gi := range g {
		rec.Tokens = append(rec.Tokens, gi.Tokens)
	}
	s.B, s.A = b, a
	return rec, nil
}

// dropMissing removes the zero-rank columns that stand for tasks lacking the module, when the
// output is the concatenation [B_1 ... B_N] (the delta objective at full rank).
func dropMissing(s *Site, b, a *mat.Dense) (*mat.Dense, *mat.Dense) {
	hasMissing := false
	R := 0
	for i, f := range s.Factors {
		r, _ := f.A.Dims()
		R += r
		hasMissing = hasMissing || s.Missing[i]
	}
	if !hasMissing {
		return b, a
	}
	if k, _ := a.Dims(); k != R {
		return b, a // truncated: columns are mixed, nothing to drop
	}
	m, _ := b.Dims()
	_, n := a.Dims()
	var keepCols []int
	off := 0
	for i, f := range s.Factors {
		r, _ := f.A.Dims()
		if !s.Missing[i] {
			for j := 0; j < r; j++ {
				keepCols = append(keepCols, off+j)
			}
		}
		off += r
	}
	nb := mat.NewDense(m, len(keepCols), nil)
	na := mat.NewDense(len(keepCols), n, nil)
	for j, c := range keepCols {
		nb.SetCol(j, mat.Col(nil, c, b))
		na.SetRow(j, a.RawRowView(c))
	}
	return nb, na
}

// RunJacobi runs the paper's schedule: solve 1 with X~ = X, then each solve k+1 with the features
// of the model W0 + dW*(k) at every site. It stops after Iterations solves, or earlier when every
// site's relative change is below Tolerance.
func (mg *Merger) RunJacobi() ([]SolveRecord, error) {
	iters := mg.set.Iterations
	if mg.set.Method == "regmean" {
		iters = 1
	}
	var records []SolveRecord
	for k := 1; k <= iters; k++ {
		rec := SolveRecord{Solve: k, Sites: map[string]SiteRecord{}}
		var merged *model.Model
		if k > 1 {
			var err error
			if merged, err = mg.mergedModel(); err != nil {
				return nil, err
			}
		}
		// The next solve's updates are kept aside so the merged model of this solve stays fixed.
		next := map[*Site][2]*mat.Dense{}
		sts, err := mg.streams(merged)
		if err != nil {
			return nil, err
		}
		ph := mg.progress.Phase(fmt.Sprintf("solve %d/%d", k, iters), mg.lastLayer()+1)
		maxChange := 0.0
		for l := 0; l <= mg.lastLayer(); l++ {
			t0 := time.Now()
			grams, err := mg.captureLayer(l, sts, merged)
			if err != nil {
				return nil, err
			}
			t1 := time.Now()
			rec.CaptureSeconds += t1.Sub(t0).Seconds()
			for _, lv := range mg.levels {
				if lv.layer != l {
					continue
				}
				for _, s := range mg.byLevel[lv] {
					prevB, prevA := s.B, s.A
					sr, err := mg.solveSite(s, grams[lv.point])
					if err != nil {
						return nil, err
					}
					next[s] = [2]*mat.Dense{s.B, s.A}
					s.B, s.A = prevB, prevA
					rec.Sites[s.Name] = sr
					if sr.RelChange != nil {
						maxChange = math.Max(maxChange, *sr.RelChange)
					}
				}
			}
			rec.SolveSeconds += time.Since(t1).Seconds()
			ph.Set(l + 1)
		}
		ph.Done()
		for s, ba := range next {
			s.B, s.A = ba[0], ba[1]
		}
		if mg.AfterSolve != nil {
			mg.AfterSolve(k)
		}
		if k > 1 {
			rec.MaxRelChange = &maxChange
		}
		records = append(records, rec)
		mg.progress.Event("solve", map[string]any{"solve": k, "max_rel_change": rec.MaxRelChange})
		if k > 1 && mg.set.Tolerance > 0 && maxChange < mg.set.Tolerance {
			break
		}
	}
	return records, nil
}

// RunSweep solves the sites in dependency order in one pass: each level's X~ is taken from the
// model whose earlier levels are already merged.
func (mg *Merger) RunSweep() ([]SolveRecord, error) {
	rec := SolveRecord{Solve: 1, Sites: map[string]SiteRecord{}}
	sts, err := mg.streams(mg.base)
	if err != nil {
		return nil, err
	}
	ph := mg.progress.Phase("sweep", len(mg.levels))
	done := 0
	for l := 0; l <= mg.lastLayer(); l++ {
		t0 := time.Now()
		need := mg.pointsAt(l)
		// Task-side features of the whole layer (they do not depend on the merge).
		xs := make([][model.NumPoints][]float32, len(sts))
		for si, s := range sts {
			mg.taskMods[s.task].RunLayer(l, s.T, func(_ int, p model.Point, x []float32, _ int) {
				if need[p] {
					xs[si][p] = append([]float32(nil), x...)
				}
			})
		}
		rec.CaptureSeconds += time.Since(t0).Seconds()
		for p := model.Point(0); p < model.NumPoints; p++ {
			if !need[p] {
				continue
			}
			t1 := time.Now()
			merged, err := mg.mergedModel()
			if err != nil {
				return nil, err
			}
			accs := mg.newAccs(l, p, true)
			var firstErr error
			for si, s := range sts {
				merged.ObserveLayer(l, s.M, func(_ int, q model.Point, x []float32, rows int) {
					if q == p {
						if err := accs[s.task].Add(xs[si][p], x, rows); err != nil && firstErr == nil {
							firstErr = err
						}
					}
				}, p)
			}
			if firstErr != nil {
				return nil, firstErr
			}
			g := make([]gram.Grams, len(accs))
			for i, a := range accs {
				g[i] = a.Grams()
			}
			t2 := time.Now()
			rec.CaptureSeconds += t2.Sub(t1).Seconds()
			for _, s := range mg.byLevel[level{l, p}] {
				sr, err := mg.solveSite(s, g)
				if err != nil {
					return nil, err
				}
				rec.Sites[s.Name] = sr
			}
			rec.SolveSeconds += time.Since(t2).Seconds()
			done++
			ph.Set(done)
		}
		t3 := time.Now()
		merged, err := mg.mergedModel()
		if err != nil {
			return nil, err
		}
		for _, s := range sts {
			merged.RunLayer(l, s.M, nil)
		}
		rec.CaptureSeconds += time.Since(t3).Seconds()
	}
	ph.Done()
	return []SolveRecord{rec}, nil
}

// Run runs the configured method and schedule.
func (mg *Merger) Run() ([]SolveRecord, error) {
	if mg.set.Method == "iteris" && mg.set.Schedule == Sweep {
		return mg.RunSweep()
	}
	return mg.RunJacobi()
}

// Result returns the merged update of every site (scale 1).
func (mg *Merger) Result() []*adapter.Module {
	var out []*adapter.Module
	for _, s := range mg.sites {
		if s.B == nil {
			continue
		}
		out = append(out, moduleOf(s.Name, s.B, s.A))
	}
	return out
}

// moduleOf turns a (B, A) pair of scale 1 into an adapter module with alpha = rank.
func moduleOf(name string, b, a *mat.Dense) *adapter.Module {
	k, n := a.Dims()
	m, _ := b.Dims()
	return &adapter.Module{Name: name, R: k, In: n, Out: m, A: f32(denseData(a)), B: f32(denseData(b)), Alpha: float64(k), Scale: 1}
}
