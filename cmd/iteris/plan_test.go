package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/eval"
	"github.com/iteris-dev/iteris/internal/tokenizer"
	"github.com/iteris-dev/iteris/layerplan"
)

// planConfig writes a tiny-skills merge config of the four merge4 adapters into a temporary
// directory and returns its path; calib overrides an adapter's calibration file.
func planConfig(t *testing.T, method, params string, calib map[string]string, extra string) string {
	t.Helper()
	cfg := "base_model: " + fixture + "/model\nmethod: " + method + "\nadapters:\n"
	for _, n := range merge4 {
		c := fixture + "/data/" + n + "/calib.jsonl"
		if calib[n] != "" {
			c = calib[n]
		}
		cfg += "  - {name: " + n + ", path: " + fixture + "/adapters/" + n + ", calibration: " + c + "}\n"
	}
	cfg += params + extra
	path := filepath.Join(t.TempDir(), "merge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// promptLengths returns the token counts of the first n prompts of a calibration file plus the
// completion budget, tokenised here independently of the command.
func promptLengths(t *testing.T, file string, n, budget int) []int {
	t.Helper()
	tok, err := tokenizer.LoadDir(filepath.Join(fixture, "model"))
	if err != nil {
		t.Fatal(err)
	}
	items, err := eval.LoadJSONL(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, it := range items[:n] {
		out = append(out, len(tok.Encode(it.Prompt, true))+budget)
	}
	return out
}

func TestPlanCommandJSON(t *testing.T) {
	// One adapter's calibration is given as token ids: its lengths are the ids' counts and it
	// generates nothing.
	ids := filepath.Join(t.TempDir(), "ids.jsonl")
	if err := os.WriteFile(ids, []byte(`{"input_ids": [256, 60, 61, 257]}`+"\n"+`{"input_ids": [256, 70, 71, 72, 73, 257]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := planConfig(t, "iteris", "parameters: {samples: 2, objective: full, schedule: jacobi, iterations: 3, completion_tokens: 8, batch_size: 4}\n",
		map[string]string{"srt": ids}, "")
	out := runCLI(t, "plan", path, "--workers", "2", "--memory", "64MiB", "--json")
	p, err := layerplan.Decode([]byte(out))
	if err != nil {
		t.Fatalf("plan --json printed %.200q: %v", out, err)
	}
	if err := p.Verify(); err != nil {
		t.Error(err)
	}
	if enc, _ := p.Encode(); out != string(enc)+"\n" {
		t.Error("plan --json is not the plan's canonical JSON")
	}
	want := layerplan.Model{Layers: 4, Hidden: 128, Intermediate: 344, Heads: 4, KVHeads: 2, HeadDim: 32, Vocab: 259, WeightBytes: 4}
	if p.Input.Model != want {
		t.Errorf("model %+v, want %+v (config.json)", p.Input.Model, want)
	}
	if len(p.Input.Sites) != 28 || !reflect.DeepEqual(p.Input.Sites[0].Ranks, []int{8, 8, 8, 8}) || p.Input.Sites[0].Name != "model.layers.0.mlp.down_proj" {
		t.Errorf("%d sites, first %+v; want 28 of ranks 8", len(p.Input.Sites), p.Input.Sites[0])
	}
	for i, n := range merge4[:3] {
		task := p.Input.Tasks[i]
		lengths := promptLengths(t, filepath.Join(fixture, "data", n, "calib.jsonl"), 2, 8)
		if task.Name != n || !reflect.DeepEqual(task.Lengths, lengths) || !reflect.DeepEqual(task.Completions, []int{8, 8}) {
			t.Errorf("task %d: %+v, want %s with lengths %v and 8-token completions", i, task, n, lengths)
		}
	}
	if srt := p.Input.Tasks[3]; !reflect.DeepEqual(srt.Lengths, []int{4, 6}) || !reflect.DeepEqual(srt.Completions, []int{0, 0}) {
		t.Errorf("srt: %+v, want lengths [4 6] given as ids", srt)
	}
	wantMerge := layerplan.Merge{Method: layerplan.DataAware, Schedule: layerplan.Jacobi, Solves: 3, Objective: layerplan.Full, Adaptive: true, BatchSize: 4}
	if p.Input.Merge != wantMerge {
		t.Errorf("merge %+v, want %+v", p.Input.Merge, wantMerge)
	}
	if len(p.Shards) != 2 || p.Shards[0].Hi != 2 || len(p.Steps) != 2+6 || p.Stages != 5 {
		t.Errorf("%d shards (first ends at %d), %d steps in %d stages; want 2 (0-1, 2-3), 8 in 5", len(p.Shards), p.Shards[0].Hi, len(p.Steps), p.Stages)
	}
}

func TestPlanCommandText(t *testing.T) {
	path := planConfig(t, "iteris", "parameters: {samples: 4, objective: full, schedule: sweep, completion_tokens: 8}\n", nil, "cluster: {workers: 3}\n")
	out := runCLI(t, "plan", path, "--memory", "1GiB") // --workers defaults to cluster.workers
	var rows int
	for _, n := range merge4 {
		for _, l := range promptLengths(t, filepath.Join(fixture, "data", n, "calib.jsonl"), 4, 8) {
			rows += l
		}
	}
	for _, want := range []string{
		"plan for " + path + ": iteris (sweep, objective full), 4 adapters, 3 workers of 1 GiB",
		"model: 4 layers, hidden 128, intermediate 344, 4 heads (2 kv) of 32, vocab 259; 28 sites in 16 levels",
		"calibration: 16 sequences, " + itoa(rows) + " rows",
		"steps: 6 in 4 stages",
		"the sweep runs the shards one after another",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The shard table: three shards, the two-layer one in the middle.
	var layers, workers []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasPrefix(f[2], "worker-") {
			layers, workers = append(layers, f[1]), append(workers, f[2])
		}
	}
	if !reflect.DeepEqual(layers, []string{"0-0", "1-2", "3-3"}) || !reflect.DeepEqual(workers, []string{"worker-0", "worker-1", "worker-2"}) {
		t.Errorf("shards %v on %v, want 0-0 1-2 3-3 on worker-0..2:\n%s", layers, workers, out)
	}
	for _, step := range []string{"stage 0  calibrate shard 0", "stage 1  sweep shard 0", "stage 3  sweep shard 2", "T rows", "-> coordinator"} {
		if !strings.Contains(out, step) {
			t.Errorf("steps lack %q:\n%s", step, out)
		}
	}

	// A weight-only merge: one step per shard, no calibration, no base weights.
	path = planConfig(t, "ties", "", nil, "")
	out = runCLI(t, "plan", path, "--workers", "2", "--memory", "64MiB")
	if !strings.Contains(out, "ties (weight-only)") || !strings.Contains(out, "stage 0  weightonly shard 0") || !strings.Contains(out, "weightonly shard 1") || strings.Contains(out, "calibrate") {
		t.Errorf("weight-only plan:\n%s", out)
	}
}

func TestPlanCommandErrors(t *testing.T) {
	path := planConfig(t, "iteris", "parameters: {samples: 4, completion_tokens: 8}\n", nil, "")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"plan", path, "--workers", "2"}, 2, "plan CONFIG.yaml --workers N --memory SIZE [--json]"},
		{[]string{"plan", "--memory", "1G"}, 2, "plan CONFIG.yaml"},
		{[]string{"plan", path, path, "--memory", "1G"}, 2, "plan CONFIG.yaml"},
		{[]string{"plan", path, "--memory", "8XB"}, 2, `--memory: invalid memory size: "8XB"`},
		{[]string{"plan", path, "--memory", "1G", "--workers", "-1"}, 2, "plan CONFIG.yaml"},
		{[]string{"plan", path, "--memory", "1G", "--workers", "100000"}, 2, "--workers 100000: at most 512"},
		{[]string{"plan", path, "--memory", "1MiB"}, 1,
			path + ": layer 3 needs 35.5 MiB, the largest worker has 1 MiB (grams 10.8 MiB, gram copies 10.8 MiB, solve 8.1 MiB)"},
		{[]string{"plan", filepath.Join(t.TempDir(), "nope.yaml"), "--memory", "1G"}, 1, "nope.yaml"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("iteris %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
	// A calibration file with fewer items than samples is refused before planning.
	short := filepath.Join(t.TempDir(), "short.jsonl")
	if err := os.WriteFile(short, []byte(`{"prompt": "<<ab="}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path = planConfig(t, "iteris", "parameters: {samples: 4}\n", map[string]string{"rev": short}, "")
	var out, errb bytes.Buffer
	if code := run([]string{"plan", path, "--memory", "1G"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "parameters.samples is 4 but "+short+" has only 1 items") {
		t.Errorf("short calibration: exit %d, %q", code, errb.String())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The config's method maps onto the plan's merge settings (and so onto its terms).
func TestPlanMethods(t *testing.T) {
	tests := []struct {
		method, params string
		want           layerplan.Merge
	}{
		{"regmean", "parameters: {samples: 2, completion_tokens: 4}\n",
			layerplan.Merge{Method: layerplan.DataAware, Schedule: layerplan.Jacobi, Solves: 1, Objective: layerplan.Delta, BatchSize: 16}},
		{"iteris", "parameters: {samples: 2, completion_tokens: 4, adaptive_weights: false, objective: delta}\noutput: {rank: full}\n",
			layerplan.Merge{Method: layerplan.DataAware, Schedule: layerplan.Sweep, Solves: 1, Objective: layerplan.Delta, Rank: layerplan.RankFull, BatchSize: 16}},
		{"cat", "output: {rank: 4}\n", layerplan.Merge{Method: layerplan.WeightOnly, Rank: 4}},
		{"cat", "", layerplan.Merge{Method: layerplan.WeightOnly, Rank: layerplan.RankAuto}},
		{"svd", "", layerplan.Merge{Method: layerplan.WeightOnly, Rank: layerplan.RankMax}},
		{"svd", "parameters: {svd_rank: 6}\n", layerplan.Merge{Method: layerplan.WeightOnly, Rank: 6}},
		{"ties_svd", "", layerplan.Merge{Method: layerplan.WeightOnly, Dense: true, Rank: layerplan.RankAuto}},
		{"magnitude_prune_svd", "output: {rank: full}\n", layerplan.Merge{Method: layerplan.WeightOnly, Dense: true, Rank: layerplan.RankFull}},
		{"linear", "", layerplan.Merge{Method: layerplan.WeightOnly, Rank: layerplan.RankMax}},
		{"dare_ties", "", layerplan.Merge{Method: layerplan.WeightOnly, Rank: layerplan.RankMax}},
	}
	for _, tc := range tests {
		out := runCLI(t, "plan", planConfig(t, tc.method, tc.params, nil, ""), "--memory", "1GiB", "--json")
		p, err := layerplan.Decode([]byte(out))
		if err != nil {
			t.Fatal(err)
		}
		if p.Input.Merge != tc.want {
			t.Errorf("%s %q: merge %+v, want %+v", tc.method, tc.params, p.Input.Merge, tc.want)
		}
	}
}

// TestPlanCountsStoredWidth plans the merge on the bf16 copy of the fixture model: the engine
// holds its weights at 2 bytes each, so the plan counts half the layer weights of the float32
// model's plan.
func TestPlanCountsStoredWidth(t *testing.T) {
	layerWeights := func(base string) (int, int64) {
		t.Helper()
		path := planConfig(t, "iteris", "parameters: {samples: 2, completion_tokens: 8}\n", nil, "")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.Replace(string(raw), "base_model: "+fixture+"/model\n", "base_model: "+fixture+"/"+base+"\n", 1)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := layerplan.Decode([]byte(runCLI(t, "plan", path, "--workers", "1", "--memory", "1GiB", "--json")))
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range p.Shards[0].Footprint.Merge.Parts {
			if part.Name == layerplan.PartLayerWeights {
				return p.Input.Model.WeightBytes, part.Bytes
			}
		}
		t.Fatalf("%s: no %s in the merge footprint %+v", base, layerplan.PartLayerWeights, p.Shards[0].Footprint.Merge)
		return 0, 0
	}
	wb32, w32 := layerWeights("model")
	wb16, w16 := layerWeights("model-bf16")
	// 4 layers of (128 x 256 + 128 x 128 + 3 x 344 x 128 + 2 x 128) weights.
	if wb32 != 4 || wb16 != 2 || w32 != 4*4*(128*256+128*128+3*344*128+2*128) || w16*2 != w32 {
		t.Errorf("weight bytes %d (float32 model) and %d (bf16 copy), layer weights %d and %d bytes; want 4 and 2, %d and half of it",
			wb32, wb16, w32, w16, 4*4*(128*256+128*128+3*344*128+2*128))
	}
}
