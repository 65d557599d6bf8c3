// Package shard is the per-shard unit of a merge: the decoder layers [lo, hi) of the base model,
// the tasks' LoRA factors of those layers, and the sites (target modules) there. One step of a
// schedule runs through it: the residual streams of every calibration batch enter at layer lo,
// the shard captures its sites' Grams, solves them (a pure per-site solve), installs its own
// updates incrementally, and hands the streams on at layer hi.
//
// The single-process merge (internal/pipeline) chains shard units in one process; a cluster
// worker (worker/) holds one unit and receives the streams from the previous shard's worker. The
// arithmetic is the same either way, so any cut of the model gives the same adapter bit for bit.
//
// Streams: T is a task stream (base + adapter i, on task i's sequences), M the merged stream (base
// + the current merged update, on the same sequences). A Unit keeps no stream between steps: every
// step's inputs are passed in, and its outputs returned, so a step can run again anywhere.
//
// The sweep also runs the recommended method (Settings.Objective merge.Residual, Truncation,
// RefineSteps): o_proj and down_proj solved with the drift of the merged residual stream (from
// the two streams the unit already holds), the data-aware truncation, and after each layer's
// closed form its layer-wise distillation (internal/distill) before the merged stream advances.
// All of it is layer-local; the step's records carry each layer's losses (StepOutput.Layers).
package shard

import (
	"errors"
	"fmt"
	"sort"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
)

// Sentinel errors of the package.
var (
	// ErrInput reports step inputs that do not fit the unit (streams, batches, updates).
	ErrInput = errors.New("shard: invalid step input")
)

// Method, schedule and objective names of the data-aware solve.
const (
	// MethodIterIS is the IterIS solve.
	MethodIterIS = "iteris"
	// MethodRegMean is RegMean: one solve with X~ = X, no adaptive weights, no ridge.
	MethodRegMean = "regmean"
	// Jacobi solves every site from the features of the previous solve's model (the paper's).
	Jacobi = "jacobi"
	// Sweep solves sites in dependency order in one pass.
	Sweep = "sweep"
)

// Settings are the data-aware solve's parameters.
type Settings struct {
	// Method is MethodIterIS or MethodRegMean.
	Method string
	// Objective is merge.Delta, merge.Full or merge.Residual (iteris only; residual needs the
	// sweep).
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
	// BatchSize is the number of sequences run through the model together (16 when 0).
	BatchSize int
	// Truncation is how the full and residual objectives cut a site's dense update to the
	// output rank: merge.TruncData (the minimiser of the site's own weighted objective) or
	// merge.TruncSVD. Empty means the objective's default: data for residual, svd for full.
	Truncation merge.Truncation
	// RefineSteps is the number of Adam steps of layer-wise distillation per layer after the
	// sweep's closed form (0: closed form only; sweep only).
	RefineSteps int
	// RefineLR is the distillation's Adam learning rate (used when RefineSteps > 0).
	RefineLR float64
}

// Task is one adapter of the merge.
type Task struct {
	// Name names the task (the adapter's name in the config).
	Name string
	// Adapter is the loaded PEFT adapter (the unit uses the modules of its own layers only).
	Adapter *adapter.Adapter
	// Weight is the user weight m_i.
	Weight float64
}

// Site is one target module of the shard.
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
}

// Update is a site's merged update dW = B A (scale 1) with the adaptive weights it was solved with.
type Update struct {
	// B is m x k, A is k x n.
	B, A *mat.Dense
	// Coefs are the adaptive weights c_i used (nil when not adaptive); later jacobi solves reuse
	// them, since they depend only on the task models' features.
	Coefs []float64
}

// Updates maps site names to their merged updates.
type Updates map[string]Update

// level is one dependency level: the sites that read one point of one layer.
type level struct {
	layer int
	point model.Point
}

func (l level) String() string { return fmt.Sprintf("layers.%d.%s", l.layer, l.point) }

// Unit is one layer shard of a merge. It is not safe for concurrent steps.
type Unit struct {
	base     *model.Model
	tasks    []Task
	taskMods []*model.Model
	merged   *model.Model
	sites    []*Site
	byName   map[string]*Site
	byLevel  map[level][]*Site
	levels   []level
	set      Settings
	lo, hi   int
}

// New prepares the unit of layers [lo, hi) of base (which must hold at least those layers; the
// first shard also the embeddings, the last the final norm and lm_head when it generates). The
// sites are the union of the adapters' modules in those layers. Adapters must already be
// validated against the base model.
func New(base *model.Model, lo, hi int, tasks []Task, set Settings) (*Unit, error) {
	if err := set.Validate(); err != nil {
		return nil, err
	}
	if lo < base.Range.Lo || hi > base.Range.Hi || lo > hi {
		return nil, fmt.Errorf("%w: layers [%d, %d) are not within the loaded range [%d, %d)", ErrInput, lo, hi, base.Range.Lo, base.Range.Hi)
	}
	u := &Unit{base: base, tasks: tasks, set: set, lo: lo, hi: hi, byName: map[string]*Site{}, byLevel: map[level][]*Site{}}
	for _, t := range tasks {
		m, err := base.WithLoRA(u.own(loRAs(t.Adapter)), false)
		if err != nil {
			return nil, fmt.Errorf("task %s: %w", t.Name, err)
		}
		u.taskMods = append(u.taskMods, m)
	}
	if err := u.buildSites(); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(u.sites))
	for _, s := range u.sites {
		names = append(names, s.Name)
	}
	u.merged = base.Mutable(names)
	return u, nil
}

// own keeps the updates of modules in the unit's layers.
func (u *Unit) own(up map[string][]model.LoRA) map[string][]model.LoRA {
	out := map[string][]model.LoRA{}
	for n, ls := range up {
		if l, _, ok := model.PointOf(n); ok && l >= u.lo && l < u.hi {
			out[n] = ls
		}
	}
	return out
}

func (u *Unit) buildSites() error {
	names := map[string]bool{}
	for _, t := range u.tasks {
		for n := range t.Adapter.Modules {
			names[n] = true
		}
	}
	for n := range names {
		l, p, ok := model.PointOf(n)
		if !ok {
			return fmt.Errorf("%w: module %s is not a decoder linear module", ErrInput, n)
		}
		if l < u.lo || l >= u.hi {
			continue
		}
		lin, ok := u.base.Linear(n)
		if !ok {
			return fmt.Errorf("%w: module %s is not in the base model", ErrInput, n)
		}
		s := &Site{Name: n, Layer: l, Point: p}
		for _, t := range u.tasks {
			f, missing := factorOf(t, n, lin)
			s.Factors = append(s.Factors, f)
			s.Missing = append(s.Missing, missing)
		}
		u.sites = append(u.sites, s)
		u.byName[n] = s
		lv := level{l, p}
		if _, ok := u.byLevel[lv]; !ok {
			u.levels = append(u.levels, lv)
		}
		u.byLevel[lv] = append(u.byLevel[lv], s)
	}
	sort.Slice(u.sites, func(i, j int) bool { return siteLess(u.sites[i], u.sites[j]) })
	sort.Slice(u.levels, func(i, j int) bool {
		a, b := u.levels[i], u.levels[j]
		return a.layer < b.layer || (a.layer == b.layer && a.point < b.point)
	})
	for _, ss := range u.byLevel {
		sort.Slice(ss, func(i, j int) bool { return siteLess(ss[i], ss[j]) })
	}
	return nil
}

// factorOf returns task t's factor at module n, or a zero factor of rank 1 when its adapter lacks
// the module: the task's features then stay in the solve, and the zero column is dropped from a
// concatenated output.
func factorOf(t Task, n string, lin *model.Linear) (merge.Factor, bool) {
	mod, ok := t.Adapter.Modules[n]
	if !ok {
		return merge.Factor{A: mat.NewDense(1, lin.In, nil), B: mat.NewDense(lin.Out, 1, nil), Scale: 1, Weight: t.Weight}, true
	}
	return merge.Factor{
		A:     mat.NewDense(mod.R, mod.In, f64(mod.A)),
		B:     mat.NewDense(mod.Out, mod.R, f64(mod.B)),
		Scale: mod.Scale, Weight: t.Weight,
	}, false
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

// Sites returns the unit's sites in dependency order.
func (u *Unit) Sites() []*Site { return u.sites }

// Levels returns the number of dependency levels in the unit.
func (u *Unit) Levels() int { return len(u.levels) }

// Range returns the unit's layers [lo, hi).
func (u *Unit) Range() (lo, hi int) { return u.lo, u.hi }

// loRAs converts an adapter's modules to the engine's updates (one LoRA per module).
func loRAs(a *adapter.Adapter) map[string][]model.LoRA {
	out := make(map[string][]model.LoRA, len(a.Modules))
	for name, m := range a.Modules {
		out[name] = []model.LoRA{{R: m.R, A: m.A, B: m.B, Scale: float32(m.Scale)}}
	}
	return out
}

// install makes the merged model carry the given updates (the others keep theirs).
func (u *Unit) install(up Updates) error {
	for name, d := range up {
		if _, ok := u.byName[name]; !ok {
			return fmt.Errorf("%w: update for module %s, which is not a site of layers [%d, %d)", ErrInput, name, u.lo, u.hi)
		}
		if err := u.merged.SetLoRA(name, loraOf(d)); err != nil {
			return err
		}
	}
	return nil
}

// reset clears every merged update of the unit.
func (u *Unit) reset() error {
	for _, s := range u.sites {
		if err := u.merged.SetLoRA(s.Name, nil); err != nil {
			return err
		}
	}
	return nil
}

// loraOf converts an update to the engine's float32 LoRA of scale 1.
func loraOf(d Update) []model.LoRA {
	k, _ := d.A.Dims()
	return []model.LoRA{{R: k, A: f32(denseData(d.A)), B: f32(denseData(d.B)), Scale: 1}}
}

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

// denseData returns m's values row-major without stride gaps.
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

// Select returns the updates of the unit's own sites from up.
func (u *Unit) Select(up Updates) Updates {
	out := Updates{}
	for _, s := range u.sites {
		if d, ok := up[s.Name]; ok {
			out[s.Name] = d
		}
	}
	return out
}

// Modules returns updates as adapter modules of scale 1 (lora_alpha = r), in module-name order:
// what the merged adapter holds.
func Modules(up Updates) []*adapter.Module {
	names := make([]string, 0, len(up))
	for n := range up {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*adapter.Module, 0, len(names))
	for _, n := range names {
		u := up[n]
		k, in := u.A.Dims()
		m, _ := u.B.Dims()
		out = append(out, &adapter.Module{Name: n, R: k, In: in, Out: m, A: f32(denseData(u.A)), B: f32(denseData(u.B)), Alpha: float64(k), Scale: 1})
	}
	return out
}
