package layerplan

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSite(t *testing.T) {
	tests := []struct {
		name  string
		layer int
		p     Point
		ok    bool
	}{
		{"model.layers.0.self_attn.q_proj", 0, AttnIn, true},
		{"model.layers.31.self_attn.o_proj", 31, OIn, true},
		{"model.layers.7.mlp.up_proj", 7, MLPIn, true},
		{"model.layers.79.mlp.down_proj", 79, DownIn, true},
		{"model.layers.01.mlp.down_proj", 0, 0, false},
		{"model.layers.-1.mlp.down_proj", 0, 0, false},
		{"model.layers.3.mlp.act_fn", 0, 0, false},
		{"model.embed_tokens", 0, 0, false},
		{"lm_head", 0, 0, false},
		{"model.layers.3", 0, 0, false},
		{"model.layers.9999999.mlp.up_proj", 0, 0, false},
	}
	for _, tc := range tests {
		l, p, ok := ParseSite(tc.name)
		if l != tc.layer || p != tc.p || ok != tc.ok {
			t.Errorf("ParseSite(%q) = %d, %s, %v; want %d, %s, %v", tc.name, l, p, ok, tc.layer, tc.p, tc.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Input)
		want string
	}{
		{"layers", func(in *Input) { in.Model.Layers = 0 }, "model.layers: 0 is outside 1..512"},
		{"too many layers", func(in *Input) { in.Model.Layers = MaxLayers + 1 }, "model.layers: 513"},
		{"hidden", func(in *Input) { in.Model.Hidden = MaxWidth + 1 }, "model.hidden: 2097153 is outside"},
		{"kv heads", func(in *Input) { in.Model.KVHeads = 3 }, "model.kv_heads: 3 does not divide heads 4"},
		{"weight bytes", func(in *Input) { in.Model.WeightBytes = 3 }, "model.weight_bytes: 3"},
		{"method", func(in *Input) { in.Merge.Method = "magic" }, `merge.method: "magic"`},
		{"schedule", func(in *Input) { in.Merge.Schedule = "random" }, `merge.schedule: "random"`},
		{"solves", func(in *Input) { in.Merge.Solves = 0 }, "merge.solves: 0 is outside 1..1000"},
		{"sweep solves", func(in *Input) { in.Merge = sweep(Full, true, 2); in.Merge.Solves = 3 }, "merge.solves: 3 (the sweep is one solve)"},
		{"objective", func(in *Input) { in.Merge.Objective = "" }, `merge.objective: ""`},
		{"batch", func(in *Input) { in.Merge.BatchSize = 0 }, "merge.batch_size: 0"},
		{"residual with jacobi", func(in *Input) { in.Merge.Objective = Residual }, `merge.objective: "residual" needs schedule "sweep"`},
		{"refine with jacobi", func(in *Input) { in.Merge.RefineSteps = 3 }, "merge.refine_steps: 3 (want 0..1048576, and the sweep when > 0)"},
		{"refine negative", func(in *Input) { in.Merge = sweep(Residual, true, 2); in.Merge.RefineSteps = -1 }, "merge.refine_steps: -1"},
		{"weight-only refine", func(in *Input) { in.Merge = Merge{Method: WeightOnly, RefineSteps: 1}; in.Tasks = tasksOf(4, nil, nil) }, "refine_steps are for data-aware merges only"},
		{"rank", func(in *Input) { in.Merge.Rank = -3 }, "merge.rank: -3"},
		{"weight-only schedule", func(in *Input) { in.Merge.Method = WeightOnly }, "data-aware merges only"},
		{"weight-only lengths", func(in *Input) { in.Merge = Merge{Method: WeightOnly} }, "tasks[0].lengths: task \"task0\": calibration sequences are for data-aware merges only"},
		{"dense data-aware", func(in *Input) { in.Merge.Dense = true }, "merge.dense: is for weight-only merges only"},
		{"no tasks", func(in *Input) { in.Tasks = nil }, "tasks: 0 tasks"},
		{"no sequences", func(in *Input) { in.Tasks[2].Lengths = nil; in.Tasks[2].Completions = nil }, `tasks[2].lengths: task "task2" has no calibration sequences`},
		{"empty sequence", func(in *Input) { in.Tasks[1].Lengths[3] = 0 }, "tasks[1].lengths[3]: 0 is outside 1..1048576"},
		{"completions count", func(in *Input) { in.Tasks[0].Completions = []int{1} }, "tasks[0].completions: 1 values for 4 sequences"},
		{"completion too long", func(in *Input) { in.Tasks[0].Completions[1] = 10 }, "tasks[0].completions[1]: 10 (want 0..9"},
		{"too many sequences", func(in *Input) { in.Tasks[0].Lengths = repeat(1, MaxSequences+1); in.Tasks[0].Completions = nil }, "more than 65536 calibration sequences"},
		{"no sites", func(in *Input) { in.Sites = nil }, "sites: no site to merge"},
		{"bad site", func(in *Input) { in.Sites[3].Name = "model.layers.0.mlp.act" }, `sites[3].name: "model.layers.0.mlp.act" is not a decoder linear module`},
		{"site layer", func(in *Input) { in.Sites[0].Name = "model.layers.4.self_attn.q_proj" }, "layer 4, but the model has 4 layers"},
		{"site twice", func(in *Input) { in.Sites[1].Name = in.Sites[0].Name }, "sites[1].name: model.layers.0.self_attn.q_proj is listed twice"},
		{"site shape", func(in *Input) { in.Sites[6].In = 128 }, "sites[6]: model.layers.0.mlp.down_proj is 128x128 (out x in), the model implies 128x344"},
		{"ranks count", func(in *Input) { in.Sites[0].Ranks = []int{8} }, "sites[0].ranks: model.layers.0.self_attn.q_proj: 1 ranks for 4 tasks"},
		{"negative rank", func(in *Input) { in.Sites[0].Ranks[2] = -1 }, "sites[0].ranks[2]"},
		{"no task has it", func(in *Input) { in.Sites[0].Ranks = []int{0, 0, 0, 0} }, "no task has the module"},
	}
	for _, tc := range tests {
		in := tinyInput(jacobi(5, Full, true, 2))
		tc.edit(&in)
		err := in.Validate()
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInput with %q", tc.name, err, tc.want)
		}
		if _, err := Build(in, workersOf(2, giB)); !errors.Is(err, ErrInput) {
			t.Errorf("%s: Build: %v, want ErrInput", tc.name, err)
		}
	}
	in := tinyInput(jacobi(5, Full, true, 2))
	if err := in.Validate(); err != nil {
		t.Errorf("the tiny-skills input: %v", err)
	}
}

// Counts saturate instead of overflowing: the widest model the bounds admit (2^21 heads over
// sequences of 2^20 tokens: attention scores of 2^63 bytes), with the most tasks at the largest
// ranks, gives a refusal, not a negative or wrapped size.
func TestSaturation(t *testing.T) {
	m := Model{Layers: MaxLayers, Hidden: MaxWidth, Intermediate: MaxWidth, Heads: MaxWidth, KVHeads: 1, HeadDim: 1, Vocab: MaxWidth, WeightBytes: 8}
	in := Input{Model: m, Sites: sitesOf(m, repeat(MaxWidth/MaxTasks, MaxTasks), "mlp.down_proj"),
		Tasks: tasksOf(MaxTasks, repeat(MaxSeqLen, 4), repeat(1, 4)), Merge: jacobi(2, Full, true, 4)}
	e := mustEstimator(t, in)
	fp := e.SingleProcess()
	if fp.Peak != Unbounded {
		t.Errorf("peak %d, want the saturated %d", fp.Peak, Unbounded)
	}
	for _, p := range append(fp.Merge.Parts, fp.Calibrate.Parts...) {
		if p.Bytes <= 0 || p.Bytes > Unbounded {
			t.Errorf("part %s = %d", p.Name, p.Bytes)
		}
	}
	if w, _ := e.Work(0, MaxLayers); w != Unbounded {
		t.Errorf("work %d, want the saturated %d", w, Unbounded)
	}
	_, err := Build(in, workersOf(1, Unbounded-1))
	if !errors.Is(err, ErrNoFit) || !strings.Contains(err.Error(), "needs 4 EiB") {
		t.Errorf("Build: %v, want a refusal naming 4 EiB", err)
	}
}
