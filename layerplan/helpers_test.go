package layerplan

import (
	"fmt"
	"testing"
)

// The models of the table tests, as config.json gives them.
var (
	// tinySkills is testdata/tiny-skills/model/config.json.
	tinySkills = Model{Layers: 4, Hidden: 128, Intermediate: 344, Heads: 4, KVHeads: 2, HeadDim: 32, Vocab: 259, WeightBytes: 4}
	// llama8B is Meta-Llama-3-8B.
	llama8B = Model{Layers: 32, Hidden: 4096, Intermediate: 14336, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256, WeightBytes: 4}
	// llama70B is Meta-Llama-3-70B.
	llama70B = Model{Layers: 80, Hidden: 8192, Intermediate: 28672, Heads: 64, KVHeads: 8, HeadDim: 128, Vocab: 128256, WeightBytes: 4}
)

var leaves = []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}

// sitesOf returns the given modules (all seven when none is named) of every layer, with the
// same ranks per task at each.
func sitesOf(m Model, ranks []int, only ...string) []Site {
	if len(only) == 0 {
		only = leaves
	}
	var out []Site
	for l := 0; l < m.Layers; l++ {
		for _, leaf := range only {
			o, i := m.shapeOf(leaf)
			out = append(out, Site{Name: fmt.Sprintf("model.layers.%d.%s", l, leaf), In: i, Out: o, Ranks: append([]int(nil), ranks...)})
		}
	}
	return out
}

// tasksOf returns n tasks with the same sequences.
func tasksOf(n int, lengths, completions []int) []Task {
	out := make([]Task, n)
	for i := range out {
		out[i] = Task{Name: fmt.Sprintf("task%d", i), Lengths: append([]int(nil), lengths...)}
		if completions != nil {
			out[i].Completions = append([]int(nil), completions...)
		}
	}
	return out
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func jacobi(k int, obj Objective, adaptive bool, batch int) Merge {
	return Merge{Method: DataAware, Schedule: Jacobi, Solves: k, Objective: obj, Adaptive: adaptive, BatchSize: batch}
}

func sweep(obj Objective, adaptive bool, batch int) Merge {
	return Merge{Method: DataAware, Schedule: Sweep, Solves: 1, Objective: obj, Adaptive: adaptive, BatchSize: batch}
}

func regmean(batch int) Merge { return jacobi(1, Delta, false, batch) }

// tinyInput is the tiny-skills merge of the table tests: 4 rank-8 adapters on every module,
// 4 sequences per task (prompt + 6 completion tokens), batches of 2.
func tinyInput(g Merge) Input {
	return Input{Model: tinySkills, Sites: sitesOf(tinySkills, []int{8, 8, 8, 8}),
		Tasks: tasksOf(4, []int{12, 10, 14, 8}, []int{6, 6, 6, 6}), Merge: g}
}

// llamaInput is a Llama-3 merge: 4 rank-16 adapters on every module, 16 prompts of 64 tokens
// per task with 64-token completions, batches of 16.
func llamaInput(m Model, g Merge) Input {
	return Input{Model: m, Sites: sitesOf(m, []int{16, 16, 16, 16}), Tasks: tasksOf(4, repeat(128, 16), repeat(64, 16)), Merge: g}
}

func workersOf(n int, mem int64) []Worker {
	out := make([]Worker, n)
	for i := range out {
		out[i] = Worker{ID: fmt.Sprintf("w%d", i), Memory: mem}
	}
	return out
}

func mustEstimator(t *testing.T, in Input) *Estimator {
	t.Helper()
	e, err := NewEstimator(in)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// partsMap returns a usage's parts by name.
func partsMap(u Usage) map[PartName]int64 {
	m := map[PartName]int64{}
	for _, p := range u.Parts {
		m[p.Name] = p.Bytes
	}
	return m
}

// checkUsage compares a usage with the expected parts (every non-zero part must be listed) and
// their sum.
func checkUsage(t *testing.T, what string, got Usage, want map[PartName]int64) {
	t.Helper()
	gm := partsMap(got)
	var sum int64
	for name, b := range want {
		sum += b
		if gm[name] != b {
			t.Errorf("%s: %s = %d, want %d", what, name, gm[name], b)
		}
	}
	for name, b := range gm {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpected part %s = %d", what, name, b)
		}
	}
	if got.Total != sum {
		t.Errorf("%s: total %d, want %d", what, got.Total, sum)
	}
}
