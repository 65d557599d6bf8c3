package model_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

const fixture = "../../testdata/tiny-skills"

func loadModel(t *testing.T, dir string) *model.Model {
	t.Helper()
	m, err := model.Load(filepath.Join(fixture, dir))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// loras converts a loaded PEFT adapter to the engine's unmerged updates.
func loras(t *testing.T, dir string) map[string][]model.LoRA {
	t.Helper()
	a, err := adapter.Load(filepath.Join(fixture, dir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]model.LoRA{}
	for name, m := range a.Modules {
		out[name] = []model.LoRA{{R: m.R, A: m.A, B: m.B, Scale: float32(m.Scale)}}
	}
	return out
}

func withAdapter(t *testing.T, m *model.Model, dir string, merged bool) *model.Model {
	t.Helper()
	v, err := m.WithLoRA(loras(t, dir), merged)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type reference struct {
	seqs [][]int
	f    *safetensors.File
}

func loadReference(t *testing.T) reference {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture, "reference/forward.json"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Sequences [][]int `json:"sequences"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(fixture, "reference/forward.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return reference{meta.Sequences, f}
}

// closeTo asserts max|got-want| <= tol * max|want|, the fixture's tolerance rule.
func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, reference has %d", what, len(got), len(want))
	}
	var maxRef, maxErr float64
	for i := range want {
		maxRef = math.Max(maxRef, math.Abs(float64(want[i])))
		maxErr = math.Max(maxErr, math.Abs(float64(got[i])-float64(want[i])))
	}
	if maxErr > tol*maxRef || math.IsNaN(maxErr) {
		t.Errorf("%s: max error %.3g exceeds %.0e x max |ref| %.4g", what, maxErr, tol, maxRef)
	}
}

func TestForwardMatchesReference(t *testing.T) {
	ref := loadReference(t)
	base := loadModel(t, "model")
	cases := []struct {
		tag   string
		model *model.Model
	}{
		{"base", base},
		{"base+rev", withAdapter(t, base, "adapters/rev", false)},
		{"bf16weights", loadModel(t, "model-bf16")},
	}
	for _, tc := range cases {
		t.Run(tc.tag, func(t *testing.T) {
			// All three sequences in one packed batch: packing must not change any token.
			out, err := tc.model.Forward(ref.seqs, model.ForwardOptions{LayerInputs: true, FinalNorm: true, Logits: true})
			if err != nil {
				t.Fatal(err)
			}
			H, V := tc.model.Config.Hidden, tc.model.Config.Vocab
			for s, seq := range ref.seqs {
				o, n := out.Offsets[s], len(seq)
				check := func(what string, got []float32, width int) {
					t.Helper()
					key := fmt.Sprintf("%s.seq%d.%s", tc.tag, s, what)
					want, err := ref.f.Float32(key)
					if err != nil {
						t.Fatal(err)
					}
					closeTo(t, key, got[o*width:(o+n)*width], want, 1e-4)
				}
				for k := range tc.model.Layers {
					check(fmt.Sprintf("layer%d.input", k), out.LayerInputs[k], H)
				}
				check("final_norm", out.FinalNorm, H)
				check("logits", out.Logits, V)
			}
		})
	}
}

func TestMergedEqualsUnmerged(t *testing.T) {
	ref := loadReference(t)
	base := loadModel(t, "model")
	for _, name := range []string{"rev", "upc", "nxt", "srt"} {
		t.Run(name, func(t *testing.T) {
			un := withAdapter(t, base, "adapters/"+name, false)
			me := withAdapter(t, base, "adapters/"+name, true)
			a, err := un.Forward(ref.seqs, model.ForwardOptions{Logits: true})
			if err != nil {
				t.Fatal(err)
			}
			b, err := me.Forward(ref.seqs, model.ForwardOptions{Logits: true})
			if err != nil {
				t.Fatal(err)
			}
			closeTo(t, name+" merged vs unmerged logits", b.Logits, a.Logits, 1e-5)
		})
	}
}

func TestSequencesAreIndependent(t *testing.T) {
	// A sequence's result must not depend on what it is batched with.
	ref := loadReference(t)
	m := loadModel(t, "model")
	all, err := m.Forward(ref.seqs, model.ForwardOptions{Logits: true})
	if err != nil {
		t.Fatal(err)
	}
	V := m.Config.Vocab
	for s, seq := range ref.seqs {
		one, err := m.Forward([][]int{seq}, model.ForwardOptions{Logits: true})
		if err != nil {
			t.Fatal(err)
		}
		got := all.Logits[all.Offsets[s]*V : (all.Offsets[s]+len(seq))*V]
		for i := range got {
			if got[i] != one.Logits[i] {
				t.Fatalf("seq %d: logit %d differs alone (%v) and batched (%v)", s, i, one.Logits[i], got[i])
			}
		}
	}
}

func TestGenerateMatchesFullForward(t *testing.T) {
	// Greedy generation with the KV cache must pick the same tokens as re-running the whole
	// sequence each step.
	m := withAdapter(t, loadModel(t, "model"), "adapters/rev", false)
	prompts := [][]int{
		{256, 60, 60, 97, 98, 99, 61},
		{256, 60, 60, 108, 117, 99, 104, 120, 112, 61},
		{256, 99, 112, 121, 58, 104, 105, 61},
	}
	got, err := m.Generate(prompts, model.GenerateOptions{MaxNew: []int{6}})
	if err != nil {
		t.Fatal(err)
	}
	V := m.Config.Vocab
	for i, p := range prompts {
		seq := append([]int(nil), p...)
		for step := 0; step < 6; step++ {
			out, err := m.Forward([][]int{seq}, model.ForwardOptions{Logits: true})
			if err != nil {
				t.Fatal(err)
			}
			row := out.Logits[(len(seq)-1)*V : len(seq)*V]
			best := 0
			for j, x := range row {
				if x > row[best] {
					best = j
				}
			}
			if got[i][step] != best {
				t.Fatalf("prompt %d step %d: cached generation gave %d, full forward %d", i, step, got[i][step], best)
			}
			seq = append(seq, best)
		}
	}
	// The rev adapter reverses: "<<abc=" -> "cba" then EOS.
	if want := []int{99, 98, 97, 257}; fmt.Sprint(got[0][:4]) != fmt.Sprint(want) {
		t.Errorf("rev adapter on <<abc=: got %v, want %v", got[0][:4], want)
	}
}
