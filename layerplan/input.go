package layerplan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Every error of the package wraps one of them.
var (
	// ErrInput is returned when an Input (or a decoded Plan's input) is malformed or outside the
	// bounds the planner accepts.
	ErrInput = errors.New("layerplan: invalid input")
	// ErrNoFit is returned (inside a *FitError) when the workers cannot hold the model.
	ErrNoFit = errors.New("layerplan: the model does not fit the workers")
	// ErrPlan is returned when a decoded Plan is malformed or inconsistent.
	ErrPlan = errors.New("layerplan: invalid plan")
)

// Bounds on an Input. They keep every loop and allocation of the planner small (the cut is
// O(workers x layers^2)); real models are far inside them.
const (
	MaxLayers    = 512     // decoder layers
	MaxWidth     = 1 << 21 // hidden, intermediate, vocab, heads x head_dim
	MaxTasks     = 256     // adapters merged
	MaxSequences = 1 << 16 // calibration sequences, all tasks together
	MaxSeqLen    = 1 << 20 // tokens in one calibration sequence
	MaxSolves    = 1000    // jacobi solves
	MaxWorkers   = 512     // workers offered to a cut
	MaxSteps     = 1 << 16 // steps of one plan
)

// MaxRefineSteps bounds the refinement's Adam steps per layer.
const MaxRefineSteps = 1 << 20

// Method says how the sites are merged.
type Method string

const (
	// DataAware merges from calibration features (IterIS, RegMean): the base model runs.
	DataAware Method = "data_aware"
	// WeightOnly merges from the adapters' factors alone (cat, linear, svd, ties, ...): the base
	// weights are never loaded.
	WeightOnly Method = "weight_only"
)

// Schedule is the order in which a data-aware merge solves its sites.
type Schedule string

const (
	// Jacobi solves every site from the previous solve's model, Solves times (the paper's;
	// RegMean is Jacobi with one solve).
	Jacobi Schedule = "jacobi"
	// Sweep solves the dependency levels in order in one pass.
	Sweep Schedule = "sweep"
)

// Objective is what a data-aware site solve matches.
type Objective string

const (
	// Delta matches each adapter's own update (exactly rank sum r_i).
	Delta Objective = "delta"
	// Full matches each task model's whole output (a dense update, truncated).
	Full Objective = "full"
	// Residual is Full whose o_proj and down_proj targets also undo the drift of the merged
	// residual stream (sweep only): a dense update, plus per task an m x n cross term at those
	// two points and the task streams' residuals of the layer being solved.
	Residual Objective = "residual"
)

// Output rank rules (Merge.Rank); a positive Rank is that rank at every site.
const (
	// RankAuto is the sum of the ranks of the tasks that have the site.
	RankAuto = 0
	// RankFull is min(in, out), except for the data-aware delta objective, whose update is
	// exactly of rank RankAuto.
	RankFull = -1
	// RankMax is the largest rank of the tasks that have the site (PEFT's linear, ties,
	// dare_*, magnitude_prune and svd default).
	RankMax = -2
)

// Model is the shape of the base model, as config.json gives it.
type Model struct {
	// Layers is num_hidden_layers.
	Layers int `json:"layers"`
	// Hidden is hidden_size.
	Hidden int `json:"hidden"`
	// Intermediate is intermediate_size (the MLP width).
	Intermediate int `json:"intermediate"`
	// Heads and KVHeads are num_attention_heads and num_key_value_heads.
	Heads   int `json:"heads"`
	KVHeads int `json:"kv_heads"`
	// HeadDim is head_dim (hidden / heads when config.json has none).
	HeadDim int `json:"head_dim"`
	// Vocab is vocab_size.
	Vocab int `json:"vocab"`
	// TiedEmbeddings reuses the embedding matrix as lm_head.
	TiedEmbeddings bool `json:"tied_embeddings"`
	// QKVBias, OBias and MLPBias say which projections carry a bias vector.
	QKVBias bool `json:"qkv_bias,omitempty"`
	OBias   bool `json:"o_bias,omitempty"`
	MLPBias bool `json:"mlp_bias,omitempty"`
	// WeightBytes is the bytes per weight as held in memory: 2 for a BF16 or F16 checkpoint
	// (the engine keeps 16-bit weights at their width and widens tiles on the way into each
	// product), 4 for F32 (and F64, narrowed to float32).
	WeightBytes int `json:"weight_bytes"`
}

// QWidth is heads x head_dim (the output of q_proj, the input of o_proj).
func (m Model) QWidth() int { return m.Heads * m.HeadDim }

// KVWidth is kv_heads x head_dim (the output of k_proj and v_proj).
func (m Model) KVWidth() int { return m.KVHeads * m.HeadDim }

// Site is one target module of the merge.
type Site struct {
	// Name is the module name, e.g. "model.layers.3.mlp.down_proj".
	Name string `json:"name"`
	// In and Out are the module's input and output widths (n and m).
	In  int `json:"in"`
	Out int `json:"out"`
	// Ranks holds, per task in Input.Tasks order, the rank of that task's adapter at the
	// site; 0 when the adapter lacks the module.
	Ranks []int `json:"ranks"`
}

// Task is one adapter of the merge with its calibration sequences.
type Task struct {
	// Name names the task.
	Name string `json:"name"`
	// Lengths holds the tokens of each calibration sequence: prompt plus completion budget,
	// or the given token ids. Empty for weight-only merges.
	Lengths []int `json:"lengths,omitempty"`
	// Completions holds, per sequence, how many of its tokens the task model generates after
	// the prompt (0 for sequences given as token ids); nil when none is generated.
	Completions []int `json:"completions,omitempty"`
}

// Rows is the number of calibration tokens of the task.
func (t Task) Rows() int64 {
	var n int64
	for _, l := range t.Lengths {
		n += int64(l)
	}
	return n
}

// Merge describes the merge the plan runs.
type Merge struct {
	// Method is DataAware or WeightOnly.
	Method Method `json:"method"`
	// Schedule is Jacobi or Sweep (data-aware only).
	Schedule Schedule `json:"schedule,omitempty"`
	// Solves is the number of jacobi solves K (1 for RegMean); 1 for the sweep.
	Solves int `json:"solves,omitempty"`
	// Objective is Delta, Full or Residual (data-aware only).
	Objective Objective `json:"objective,omitempty"`
	// RefineSteps is the number of Adam steps of layer-wise distillation per layer after the
	// sweep's closed form (0: none; sweep only).
	RefineSteps int `json:"refine_steps,omitempty"`
	// Adaptive says the solve computes the adaptive weights c_i (it then needs W0 in float64).
	Adaptive bool `json:"adaptive,omitempty"`
	// Dense says a weight-only merge goes through the dense updates (ties_svd,
	// magnitude_prune_svd).
	Dense bool `json:"dense,omitempty"`
	// Rank is the output rank rule: RankAuto, RankFull, RankMax or a positive rank.
	Rank int `json:"rank"`
	// BatchSize is the number of sequences run through the model together (data-aware).
	BatchSize int `json:"batch_size,omitempty"`
}

// Input is everything a plan is computed from.
type Input struct {
	// Model is the base model's shape.
	Model Model `json:"model"`
	// Sites are the modules merged (the union of the adapters' modules).
	Sites []Site `json:"sites"`
	// Tasks are the adapters, in the order of Site.Ranks.
	Tasks []Task `json:"tasks"`
	// Merge is the method, schedule and output rank.
	Merge Merge `json:"merge"`
}

// Point is a place inside a decoder layer where the inputs of linear modules are read; modules
// that read the same input share a point and its Grams.
type Point int

// The points of a decoder layer, in the order the layer computes them (the dependency order).
const (
	// AttnIn is the input of q_proj, k_proj and v_proj.
	AttnIn Point = iota
	// OIn is the input of o_proj.
	OIn
	// MLPIn is the input of gate_proj and up_proj.
	MLPIn
	// DownIn is the input of down_proj.
	DownIn
	// NumPoints is the number of points per layer.
	NumPoints
)

var pointNames = [NumPoints]string{"attn_in", "o_in", "mlp_in", "down_in"}

// String returns the point's name (attn_in, o_in, mlp_in, down_in).
func (p Point) String() string {
	if p >= 0 && p < NumPoints {
		return pointNames[p]
	}
	return "point(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText encodes the point by name.
func (p Point) MarshalText() ([]byte, error) {
	if p < 0 || p >= NumPoints {
		return nil, fmt.Errorf("%w: point %d", ErrPlan, int(p))
	}
	return []byte(pointNames[p]), nil
}

// UnmarshalText decodes a point name.
func (p *Point) UnmarshalText(b []byte) error {
	for i, n := range pointNames {
		if string(b) == n {
			*p = Point(i)
			return nil
		}
	}
	return fmt.Errorf("%w: point %q (want attn_in, o_in, mlp_in or down_in)", ErrPlan, b)
}

// modules maps a module's leaf name to the point it reads.
var modules = map[string]Point{
	"self_attn.q_proj": AttnIn, "self_attn.k_proj": AttnIn, "self_attn.v_proj": AttnIn,
	"self_attn.o_proj": OIn,
	"mlp.gate_proj":    MLPIn, "mlp.up_proj": MLPIn,
	"mlp.down_proj": DownIn,
}

// ParseSite returns the layer and point of a module name such as "model.layers.3.mlp.up_proj".
func ParseSite(name string) (layer int, p Point, ok bool) {
	layer, _, p, ok = parseSite(name)
	return layer, p, ok
}

// parseSite also returns the module's leaf name ("mlp.up_proj").
func parseSite(name string) (layer int, leaf string, p Point, ok bool) {
	rest, found := strings.CutPrefix(name, "model.layers.")
	if !found {
		return 0, "", 0, false
	}
	num, leaf, found := strings.Cut(rest, ".")
	if !found || num == "" || len(num) > 6 || (len(num) > 1 && num[0] == '0') {
		return 0, "", 0, false
	}
	l, err := strconv.Atoi(num)
	if err != nil || l < 0 {
		return 0, "", 0, false
	}
	p, ok = modules[leaf]
	if !ok {
		return 0, "", 0, false
	}
	return l, leaf, p, true
}

// shapeOf returns the (out, in) widths the model implies for a module leaf name.
func (m Model) shapeOf(leaf string) (out, in int) {
	switch leaf {
	case "self_attn.q_proj":
		return m.QWidth(), m.Hidden
	case "self_attn.k_proj", "self_attn.v_proj":
		return m.KVWidth(), m.Hidden
	case "self_attn.o_proj":
		return m.Hidden, m.QWidth()
	case "mlp.gate_proj", "mlp.up_proj":
		return m.Intermediate, m.Hidden
	default: // mlp.down_proj
		return m.Hidden, m.Intermediate
	}
}

// width returns the input width of point p.
func (m Model) width(p Point) int {
	switch p {
	case OIn:
		return m.QWidth()
	case DownIn:
		return m.Intermediate
	default:
		return m.Hidden
	}
}

// Validate checks the input against the bounds and its own consistency: widths, site names
// and shapes, ranks per task, calibration lengths and the merge settings. Errors wrap ErrInput
// and name the field.
func (in *Input) Validate() error {
	if err := in.Model.validate(); err != nil {
		return err
	}
	if err := in.Merge.validate(); err != nil {
		return err
	}
	if err := in.validateTasks(); err != nil {
		return err
	}
	return in.validateSites()
}

func bad(field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInput, field, fmt.Sprintf(format, a...))
}

func (m Model) validate() error {
	if m.Layers < 1 || m.Layers > MaxLayers {
		return bad("model.layers", "%d is outside 1..%d", m.Layers, MaxLayers)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"model.hidden", m.Hidden}, {"model.intermediate", m.Intermediate}, {"model.heads", m.Heads},
		{"model.kv_heads", m.KVHeads}, {"model.head_dim", m.HeadDim}, {"model.vocab", m.Vocab}} {
		if f.v < 1 || f.v > MaxWidth {
			return bad(f.name, "%d is outside 1..%d", f.v, MaxWidth)
		}
	}
	if m.Heads%m.KVHeads != 0 {
		return bad("model.kv_heads", "%d does not divide heads %d", m.KVHeads, m.Heads)
	}
	if int64(m.Heads)*int64(m.HeadDim) > MaxWidth {
		return bad("model.heads", "heads x head_dim = %d x %d is above %d", m.Heads, m.HeadDim, MaxWidth)
	}
	switch m.WeightBytes {
	case 1, 2, 4, 8:
	default:
		return bad("model.weight_bytes", "%d (want 1, 2, 4 or 8)", m.WeightBytes)
	}
	return nil
}

func (g Merge) validate() error {
	if g.Rank < RankMax || g.Rank > MaxWidth {
		return bad("merge.rank", "%d (want %d, %d, %d or a positive rank up to %d)", g.Rank, RankAuto, RankFull, RankMax, MaxWidth)
	}
	switch g.Method {
	case WeightOnly:
		if g.Schedule != "" || g.Solves != 0 || g.Objective != "" || g.Adaptive || g.BatchSize != 0 || g.RefineSteps != 0 {
			return bad("merge", "schedule, solves, objective, adaptive, batch_size and refine_steps are for data-aware merges only")
		}
		return nil
	case DataAware:
	default:
		return bad("merge.method", "%q (want %q or %q)", g.Method, DataAware, WeightOnly)
	}
	if g.Dense {
		return bad("merge.dense", "is for weight-only merges only")
	}
	switch g.Schedule {
	case Jacobi:
		if g.Solves < 1 || g.Solves > MaxSolves {
			return bad("merge.solves", "%d is outside 1..%d", g.Solves, MaxSolves)
		}
	case Sweep:
		if g.Solves != 1 {
			return bad("merge.solves", "%d (the sweep is one solve)", g.Solves)
		}
	default:
		return bad("merge.schedule", "%q (want %q or %q)", g.Schedule, Jacobi, Sweep)
	}
	if g.Objective != Delta && g.Objective != Full && g.Objective != Residual {
		return bad("merge.objective", "%q (want %q, %q or %q)", g.Objective, Delta, Full, Residual)
	}
	if g.Objective == Residual && g.Schedule != Sweep {
		return bad("merge.objective", "%q needs schedule %q", Residual, Sweep)
	}
	if g.RefineSteps < 0 || g.RefineSteps > MaxRefineSteps || g.RefineSteps > 0 && g.Schedule != Sweep {
		return bad("merge.refine_steps", "%d (want 0..%d, and the sweep when > 0)", g.RefineSteps, MaxRefineSteps)
	}
	if g.BatchSize < 1 || g.BatchSize > MaxSequences {
		return bad("merge.batch_size", "%d is outside 1..%d", g.BatchSize, MaxSequences)
	}
	return nil
}

func (in *Input) validateTasks() error {
	if len(in.Tasks) < 1 || len(in.Tasks) > MaxTasks {
		return bad("tasks", "%d tasks (want 1..%d)", len(in.Tasks), MaxTasks)
	}
	total := 0
	for i, t := range in.Tasks {
		field := fmt.Sprintf("tasks[%d]", i)
		total += len(t.Lengths)
		if total > MaxSequences {
			return bad(field+".lengths", "more than %d calibration sequences in all", MaxSequences)
		}
		if in.Merge.Method == DataAware && len(t.Lengths) == 0 {
			return bad(field+".lengths", "task %q has no calibration sequences", t.Name)
		}
		if in.Merge.Method == WeightOnly && len(t.Lengths) > 0 {
			return bad(field+".lengths", "task %q: calibration sequences are for data-aware merges only", t.Name)
		}
		if t.Completions != nil && len(t.Completions) != len(t.Lengths) {
			return bad(field+".completions", "%d values for %d sequences", len(t.Completions), len(t.Lengths))
		}
		for j, l := range t.Lengths {
			if l < 1 || l > MaxSeqLen {
				return bad(fmt.Sprintf("%s.lengths[%d]", field, j), "%d is outside 1..%d", l, MaxSeqLen)
			}
			if t.Completions != nil && (t.Completions[j] < 0 || t.Completions[j] >= l) {
				return bad(fmt.Sprintf("%s.completions[%d]", field, j), "%d (want 0..%d: the prompt has at least one token)", t.Completions[j], l-1)
			}
		}
	}
	return nil
}

func (in *Input) validateSites() error {
	if len(in.Sites) == 0 {
		return bad("sites", "no site to merge")
	}
	if len(in.Sites) > 7*in.Model.Layers {
		return bad("sites", "%d sites for %d layers of 7 linear modules", len(in.Sites), in.Model.Layers)
	}
	seen := make(map[string]bool, len(in.Sites))
	for i, s := range in.Sites {
		field := fmt.Sprintf("sites[%d]", i)
		l, leaf, _, ok := parseSite(s.Name)
		if !ok {
			return bad(field+".name", "%q is not a decoder linear module (model.layers.N.self_attn.{q,k,v,o}_proj or model.layers.N.mlp.{gate,up,down}_proj)", s.Name)
		}
		if l >= in.Model.Layers {
			return bad(field+".name", "%s: layer %d, but the model has %d layers", s.Name, l, in.Model.Layers)
		}
		if seen[s.Name] {
			return bad(field+".name", "%s is listed twice", s.Name)
		}
		seen[s.Name] = true
		out, inw := in.Model.shapeOf(leaf)
		if s.In != inw || s.Out != out {
			return bad(field, "%s is %dx%d (out x in), the model implies %dx%d", s.Name, s.Out, s.In, out, inw)
		}
		if len(s.Ranks) != len(in.Tasks) {
			return bad(field+".ranks", "%s: %d ranks for %d tasks", s.Name, len(s.Ranks), len(in.Tasks))
		}
		sum := 0
		for j, r := range s.Ranks {
			if r < 0 || r > MaxWidth {
				return bad(fmt.Sprintf("%s.ranks[%d]", field, j), "%s: rank %d is outside 0..%d", s.Name, r, MaxWidth)
			}
			sum += r
		}
		if sum == 0 {
			return bad(field+".ranks", "%s: no task has the module", s.Name)
		}
		if sum > MaxWidth {
			return bad(field+".ranks", "%s: ranks sum to %d, above %d", s.Name, sum, MaxWidth)
		}
	}
	return nil
}
