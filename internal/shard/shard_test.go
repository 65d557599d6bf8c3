package shard_test

import (
	"context"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
)

const fixture = "../../testdata/tiny-skills"

var merge4 = []string{"rev", "upc", "nxt", "srt"}

func loadTasks(t *testing.T) []shard.Task {
	t.Helper()
	var out []shard.Task
	for _, n := range merge4 {
		a, err := adapter.Load(filepath.Join(fixture, "adapters", n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, shard.Task{Name: n, Adapter: a, Weight: 1})
	}
	return out
}

func loadRange(t *testing.T, lo, hi int) *model.Model {
	t.Helper()
	dir := filepath.Join(fixture, "model")
	cfg, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.LoadRange(dir, model.ShardRange(cfg, lo, hi))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLoadRangeReadsOnlyItsShard checks the tensor names each shard of a 2-way cut reads.
func TestLoadRangeReadsOnlyItsShard(t *testing.T) {
	tests := []struct {
		lo, hi int
		want   func(name string) bool
	}{
		{0, 2, func(n string) bool {
			return n == "model.embed_tokens.weight" || strings.HasPrefix(n, "model.layers.0.") || strings.HasPrefix(n, "model.layers.1.")
		}},
		{2, 4, func(n string) bool {
			return n == "model.norm.weight" || n == "lm_head.weight" || strings.HasPrefix(n, "model.layers.2.") || strings.HasPrefix(n, "model.layers.3.")
		}},
	}
	full := loadRange(t, 0, 4)
	all := map[string]int64{}
	for _, r := range full.Read {
		all[r.Name] = r.Bytes
	}
	for _, tc := range tests {
		m := loadRange(t, tc.lo, tc.hi)
		var got []string
		for _, r := range m.Read {
			got = append(got, r.Name)
			if r.Bytes != all[r.Name] || r.Bytes <= 0 {
				t.Errorf("[%d,%d): %s read %d bytes, the checkpoint holds %d", tc.lo, tc.hi, r.Name, r.Bytes, all[r.Name])
			}
		}
		var want []string
		for n := range all {
			if tc.want(n) {
				want = append(want, n)
			}
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("[%d,%d) read\n%v\nwant\n%v", tc.lo, tc.hi, got, want)
		}
		for l := range m.Layers {
			if (m.Layers[l] != nil) != (l >= tc.lo && l < tc.hi) {
				t.Errorf("[%d,%d): layer %d loaded = %v", tc.lo, tc.hi, l, m.Layers[l] != nil)
			}
		}
	}
}

// TestWireRoundTripIsExact runs a batch through layers 0-1 on one shard, exports it, resumes it
// on a shard holding layers 2-3 and compares the final stream with the whole model's, bit for bit.
func TestWireRoundTripIsExact(t *testing.T) {
	seqs := [][]int{{1, 60, 61, 62, 30}, {1, 70, 71}, {1, 80, 81, 82, 83, 84, 85}}
	full := loadRange(t, 0, 4)
	want, err := full.Start(seqs)
	if err != nil {
		t.Fatal(err)
	}
	for l := 0; l < 4; l++ {
		full.RunLayer(l, want, nil)
	}
	a, b := loadRange(t, 0, 2), loadRange(t, 2, 4)
	st, err := a.Start(seqs)
	if err != nil {
		t.Fatal(err)
	}
	a.RunLayer(0, st, nil)
	a.RunLayer(1, st, nil)
	w := st.Export()
	w.Data = append([]float32(nil), w.Data...)
	st2, err := b.Resume(w, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.RunLayer(2, st2, nil)
	b.RunLayer(3, st2, nil)
	for i := range want.H {
		if math.Float32bits(want.H[i]) != math.Float32bits(st2.H[i]) {
			t.Fatalf("value %d: sharded %v, whole model %v", i, st2.H[i], want.H[i])
		}
	}
	bad := []model.Wire{
		{Width: 64, Lens: w.Lens, Starts: w.Starts, Data: w.Data},
		{Width: w.Width, Lens: w.Lens, Starts: w.Starts[:1], Data: w.Data},
		{Width: w.Width, Lens: []int{5, 3, 6}, Starts: w.Starts, Data: w.Data},
		{Width: w.Width, Lens: []int{5, 0, 10}, Starts: w.Starts, Data: w.Data},
		{Width: w.Width, Lens: w.Lens, Starts: []int{0, -1, 0}, Data: w.Data},
	}
	for i, bw := range bad {
		if _, err := b.Resume(bw, nil, nil); err == nil {
			t.Errorf("bad wire %d accepted", i)
		}
	}
}

// TestShardedCalibrationEqualsGenerate runs greedy completions as a pipeline through 1, 2 and 4
// shards (each with its own key/value cache) and compares the tokens with Model.Generate.
func TestShardedCalibrationEqualsGenerate(t *testing.T) {
	tasks := loadTasks(t)
	prompts := [][]int{{1, 60, 61, 62, 61, 61}, {1, 60, 70}, {1, 99, 98, 97, 96, 95, 94, 93}}
	full := loadRange(t, 0, 4)
	var batches []shard.GenBatch
	var want [][][]int
	for ti, tk := range tasks {
		up := map[string][]model.LoRA{}
		for n, m := range tk.Adapter.Modules {
			up[n] = []model.LoRA{{R: m.R, A: m.A, B: m.B, Scale: float32(m.Scale)}}
		}
		tm, err := full.WithLoRA(up, false)
		if err != nil {
			t.Fatal(err)
		}
		g, err := tm.Generate(prompts, model.GenerateOptions{MaxNew: []int{9}, StopAtEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, g)
		batches = append(batches, shard.GenBatch{Task: ti, Prompts: prompts, MaxNew: 9})
	}
	for _, cuts := range [][]int{{0, 4}, {0, 2, 4}, {0, 1, 2, 3, 4}} {
		var cals []*shard.Calibration
		for i := 1; i < len(cuts); i++ {
			u, err := shard.New(loadRange(t, cuts[i-1], cuts[i]), cuts[i-1], cuts[i], tasks, shard.Settings{Method: shard.MethodIterIS})
			if err != nil {
				t.Fatal(err)
			}
			c, err := u.NewCalibration(batches)
			if err != nil {
				t.Fatal(err)
			}
			cals = append(cals, c)
		}
		for b := range batches {
			msg, done, err := cals[0].Begin(b)
			for !done && err == nil {
				for _, c := range cals[1:] {
					if msg, err = c.Forward(msg); err != nil {
						t.Fatal(err)
					}
				}
				msg, done, err = cals[0].Advance(msg)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cals[0].Completions(b)
			for i := range got {
				if !equal(got[i], want[b][i]) {
					t.Errorf("cuts %v, task %s, prompt %d: %v, Generate %v", cuts, tasks[b].Name, i, got[i], want[b][i])
				}
			}
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestStepInputsAreChecked feeds a second shard streams that do not fit its batches.
func TestStepInputsAreChecked(t *testing.T) {
	tasks := loadTasks(t)
	u, err := shard.New(loadRange(t, 2, 4), 2, 4, tasks, shard.Settings{Method: shard.MethodIterIS, Schedule: shard.Sweep, Objective: "delta"})
	if err != nil {
		t.Fatal(err)
	}
	batches := []shard.Batch{{Task: 0, Seqs: [][]int{{1, 2, 3}}}}
	w := model.Wire{Width: 128, Lens: []int{3}, Starts: []int{0}, Data: make([]float32, 3*128)}
	short := model.Wire{Width: 128, Lens: []int{2}, Starts: []int{0}, Data: make([]float32, 2*128)}
	tests := []struct {
		name string
		in   shard.StepInput
		want string
	}{
		{"no streams", shard.StepInput{Batches: batches}, "0 streams for 1 batches"},
		{"lengths", shard.StepInput{Batches: batches, T: shard.Streams{short}, M: shard.Streams{w}}, "stream has 2 rows"},
		{"task", shard.StepInput{Batches: []shard.Batch{{Task: 7, Seqs: batches[0].Seqs}}, T: shard.Streams{w}, M: shard.Streams{w}}, "names task 7 of 4"},
	}
	for _, tc := range tests {
		_, err := u.Sweep(context.Background(), tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", tc.name, err, tc.want)
		}
	}
	if _, err := u.Jacobi(context.Background(), 2, shard.StepInput{Batches: batches, T: shard.Streams{w}, M: shard.Streams{w}}); err == nil || !strings.Contains(err.Error(), "no update of solve 1") {
		t.Errorf("jacobi 2 without the previous updates: %v", err)
	}
}
