package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

const fixtureDir = "../../testdata/tiny-skills"

// widenedCopy writes the checkpoint in dir with every tensor converted to F32 into a new
// directory (what a float32 copy of a 16-bit model holds) and returns that directory.
func widenedCopy(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		v, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: info.Shape, Data: v})
	}
	if err := safetensors.WriteFile(filepath.Join(out, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

// upcast returns m with every weight converted at load, as the engine held them before weights
// kept their stored width: a float32 copy of its own per tensor (no module's weight next to
// another's, so nothing is fused).
func upcast(m *Model) *Model {
	v := *m
	v.linears = map[string]*Linear{}
	v.Layers = make([]*Layer, len(m.Layers))
	own := func(l *Linear) *Linear {
		c := *l
		c.W = Float32Weight(l.Out, l.In, l.W.float32Copy())
		v.linears[l.Name] = &c
		return &c
	}
	for i, l := range m.Layers {
		if l == nil {
			continue
		}
		nl := *l
		nl.Q, nl.K, nl.V, nl.O = own(l.Q), own(l.K), own(l.V), own(l.O)
		nl.Gate, nl.Up, nl.Down = own(l.Gate), own(l.Up), own(l.Down)
		v.Layers[i] = &nl
	}
	if m.Embed.Len() > 0 {
		v.Embed = Float32Weight(m.Config.Vocab, m.Config.Hidden, m.Embed.float32Copy())
	}
	if m.LMHead != nil {
		v.LMHead = &Linear{Name: m.LMHead.Name, Out: m.LMHead.Out, In: m.LMHead.In, W: Float32Weight(m.LMHead.Out, m.LMHead.In, m.LMHead.W.float32Copy())}
	}
	return &v
}

// run is everything a forward pass shows: each layer's input, the inputs of every linear module,
// the final norm and the logits.
func run(t *testing.T, m *Model, seqs [][]int) [][]float32 {
	t.Helper()
	var seen [][]float32
	out, err := m.Forward(seqs, ForwardOptions{
		Observe: func(_ int, _ Point, x []float32, _ int) {
			seen = append(seen, append([]float32(nil), x...))
		},
		LayerInputs: true, FinalNorm: true, Logits: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(append(append(seen, out.LayerInputs...), out.FinalNorm), out.Logits)
}

func randomBatch(r *rand.Rand, n, length, vocab int) [][]int {
	seqs := make([][]int, n)
	for i := range seqs {
		seqs[i] = make([]int, length-i%5)
		for j := range seqs[i] {
			seqs[i][j] = r.IntN(vocab)
		}
	}
	return seqs
}

// TestStoredWidthBitIdentical runs the bf16 fixture model held at 2 bytes per weight (memory-
// mapped, widened in tiles, fused) next to its float32 copy loaded from disk (fused, mapped) and
// next to the float32 weights as the engine held them before (a copy per tensor, nothing fused):
// on both backends, with and without an unmerged adapter, on the fixture's three sequences and
// on a batch of 1000 rows (where the products are fused and, with small tiles, run in many
// tiles), every observed input, layer input, final norm and logit is the same bit for bit; so
// are greedy generations with the key/value cache (products of a few rows).
func TestStoredWidthBitIdentical(t *testing.T) {
	smallTiles(t, 16<<10, 64)
	b16, err := Load(filepath.Join(fixtureDir, "model-bf16"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range b16.Layers[0].Linears() {
		if l.W.DType() != safetensors.BF16 || !l.W.Mapped() || l.W.Bytes() != int64(2*l.Out*l.In) {
			t.Fatalf("%s: held as %s, mapped %v, %d bytes; want BF16 mapped at 2 bytes per weight", l.Name, l.W.DType(), l.W.Mapped(), l.W.Bytes())
		}
	}
	f32, err := Load(widenedCopy(t, filepath.Join(fixtureDir, "model-bf16")))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := contiguous([]Weight{f32.Layers[1].Gate.W, f32.Layers[1].Up.W}); !ok {
		t.Fatal("the float32 copy's gate and up weights are not laid out one after another")
	}
	ad, err := adapter.Load(filepath.Join(fixtureDir, "adapters", "rev"))
	if err != nil {
		t.Fatal(err)
	}
	up := map[string][]LoRA{}
	for name, m := range ad.Modules {
		up[name] = []LoRA{{R: m.R, A: m.A, B: m.B, Scale: float32(m.Scale)}}
	}
	r := rand.New(rand.NewPCG(11, 12))
	batches := map[string][][]int{
		"fixture sequences": {{256, 60, 60, 97, 98, 99, 61}, {256, 99, 112, 121, 58, 104, 105, 61, 97}, {256, 108, 117}},
		"1000 rows":         randomBatch(r, 64, 18, b16.Config.Vocab),
	}
	backends(t, func(t *testing.T) {
		for _, adapted := range []bool{false, true} {
			models := map[string]*Model{"bf16": b16, "float32 file": f32, "upcast at load": upcast(b16)}
			if adapted {
				for k, m := range models {
					if models[k], err = m.WithLoRA(up, false); err != nil {
						t.Fatal(err)
					}
				}
			}
			for name, seqs := range batches {
				want := run(t, models["upcast at load"], seqs)
				for _, k := range []string{"bf16", "float32 file"} {
					got := run(t, models[k], seqs)
					for i := range want {
						sameBits(t, fmt.Sprintf("adapter %v, %s, %s, output %d", adapted, name, k, i), got[i], want[i])
					}
				}
			}
			prompts := batches["fixture sequences"]
			want, err := models["upcast at load"].Generate(prompts, GenerateOptions{MaxNew: []int{8}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := models["bf16"].Generate(prompts, GenerateOptions{MaxNew: []int{8}})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("adapter %v: bf16 generation %v, upcast %v", adapted, got, want)
			}
		}
	})
}

func TestHeldBytes(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want int
	}{{"model", 4}, {"model-bf16", 2}} {
		dir := filepath.Join(fixtureDir, tc.dir)
		cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := CheckpointHeldBytes(dir, cfg)
		if err != nil || got != tc.want {
			t.Errorf("CheckpointHeldBytes(%s) = %d, %v; want %d", tc.dir, got, err, tc.want)
		}
	}
	if _, err := CheckpointHeldBytes(t.TempDir(), Config{}); err == nil {
		t.Error("CheckpointHeldBytes of a directory without a checkpoint: no error")
	}
}

// convertedCopy writes the checkpoint in dir with every tensor stored as dt into a new directory.
func convertedCopy(t *testing.T, dir string, dt safetensors.DType) string {
	t.Helper()
	out := widenedCopy(t, dir)
	f, err := safetensors.Open(filepath.Join(out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		v, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: dt, Shape: info.Shape, Data: v})
	}
	f.Close()
	if err := safetensors.WriteFile(filepath.Join(out, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestF16StoredWidthBitIdentical holds a float16 copy of the fixture model at 2 bytes per weight
// against the float32 weights its values stand for, bit for bit, on both backends.
func TestF16StoredWidthBitIdentical(t *testing.T) {
	smallTiles(t, 16<<10, 64)
	dir := convertedCopy(t, filepath.Join(fixtureDir, "model"), safetensors.F16)
	f16, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if w := f16.Layers[2].Down.W; w.DType() != safetensors.F16 || w.Bytes() != int64(2*w.Len()) {
		t.Fatalf("down_proj held as %s in %d bytes; want F16 at 2 bytes per weight", w.DType(), w.Bytes())
	}
	seqs := randomBatch(rand.New(rand.NewPCG(13, 14)), 64, 18, f16.Config.Vocab)
	backends(t, func(t *testing.T) {
		want := run(t, upcast(f16), seqs)
		got := run(t, f16, seqs)
		for i := range want {
			sameBits(t, fmt.Sprintf("output %d", i), got[i], want[i])
		}
	})
}

func TestWeightAccessors(t *testing.T) {
	bits := []uint16{0x3c00, 0xc000, 0x0001, 0x7c00, 0x8000, 0x3555} // 1, -2, 2^-24, +Inf, -0, ~1/3
	w := Weight{dtype: safetensors.F16, rows: 2, cols: 3, u16: bits}
	if r, c := w.Dims(); r != 2 || c != 3 || w.Len() != 6 || w.Bytes() != 12 || w.Mapped() {
		t.Errorf("Dims %d x %d, Len %d, Bytes %d, Mapped %v; want 2 x 3, 6, 12, false", r, c, w.Len(), w.Bytes(), w.Mapped())
	}
	f32, f64 := w.Float32(), w.Float64()
	for i, h := range bits {
		want := safetensors.Float16ToFloat32(h)
		if math.Float32bits(f32[i]) != math.Float32bits(want) || math.Float64bits(f64[i]) != math.Float64bits(float64(want)) {
			t.Errorf("element %d (%#04x): Float32 %v, Float64 %v; want %v", i, h, f32[i], f64[i], want)
		}
	}
	cols := make([]float32, 4)
	w.widenCols(cols, 1, 3)
	if want := []float32{f32[1], f32[2], f32[4], f32[5]}; fmt.Sprint(cols) != fmt.Sprint(want) {
		t.Errorf("widenCols(1, 3) = %v, want %v", cols, want)
	}
	a := Float32Weight(1, 2, []float32{1, 2})
	if !a.Shares(a) || a.Shares(Float32Weight(1, 2, []float32{1, 2})) || a.Shares(w) {
		t.Error("Shares: a weight shares its own values and no one else's")
	}
	f32[0] = 9
	if w.Float32()[0] != 1 {
		t.Error("Float32 returned the held values, not a copy")
	}
}
