package model_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

// synthVersion changes whenever the generator's output changes, so cached models are rebuilt.
const synthVersion = "synth-llama-v1"

// synthSpec describes a Llama checkpoint with seeded random weights: every linear weight and the
// embeddings are Std * N(0, 1), every RMSNorm weight is 1.
type synthSpec struct {
	Hidden, Layers, Intermediate, Heads, KVHeads, HeadDim, Vocab int
	Seed                                                         uint64
	Std                                                          float64
}

// spec100M is the benchmark model: hidden 1024, 8 layers, MLP 2816, 16 heads, 4 key/value heads of
// 64, vocabulary 32000, untied lm_head (155.7M parameters, 90.2M of them in the decoder layers).
var spec100M = synthSpec{Hidden: 1024, Layers: 8, Intermediate: 2816, Heads: 16, KVHeads: 4, HeadDim: 64, Vocab: 32000, Seed: 1, Std: 0.02}

// configJSON returns the Hugging Face config.json of the model.
func (s synthSpec) configJSON() []byte {
	b, err := json.MarshalIndent(map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"hidden_act":              "silu",
		"hidden_size":             s.Hidden,
		"num_hidden_layers":       s.Layers,
		"intermediate_size":       s.Intermediate,
		"num_attention_heads":     s.Heads,
		"num_key_value_heads":     s.KVHeads,
		"head_dim":                s.HeadDim,
		"vocab_size":              s.Vocab,
		"rms_norm_eps":            1e-5,
		"rope_theta":              10000.0,
		"max_position_embeddings": 2048,
		"tie_word_embeddings":     false,
		"attention_bias":          false,
		"mlp_bias":                false,
		"bos_token_id":            1,
		"eos_token_id":            2,
		"torch_dtype":             "float32",
	}, "", "  ")
	if err != nil {
		panic(err) // a map of plain values always marshals
	}
	return append(b, '\n')
}

// hash identifies the generated files: generator version, config and weight distribution.
func (s synthSpec) hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\nseed=%d std=%g\n", synthVersion, s.configJSON(), s.Seed, s.Std)
	return hex.EncodeToString(h.Sum(nil))
}

// shapes lists every tensor of the checkpoint and its shape, in a fixed order.
func (s synthSpec) shapes() []safetensors.Tensor {
	q, kv := s.Heads*s.HeadDim, s.KVHeads*s.HeadDim
	ts := []safetensors.Tensor{
		{Name: "model.embed_tokens.weight", Shape: []int{s.Vocab, s.Hidden}},
		{Name: "model.norm.weight", Shape: []int{s.Hidden}},
		{Name: "lm_head.weight", Shape: []int{s.Vocab, s.Hidden}},
	}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			safetensors.Tensor{Name: p + "input_layernorm.weight", Shape: []int{s.Hidden}},
			safetensors.Tensor{Name: p + "post_attention_layernorm.weight", Shape: []int{s.Hidden}},
			safetensors.Tensor{Name: p + "self_attn.q_proj.weight", Shape: []int{q, s.Hidden}},
			safetensors.Tensor{Name: p + "self_attn.k_proj.weight", Shape: []int{kv, s.Hidden}},
			safetensors.Tensor{Name: p + "self_attn.v_proj.weight", Shape: []int{kv, s.Hidden}},
			safetensors.Tensor{Name: p + "self_attn.o_proj.weight", Shape: []int{s.Hidden, q}},
			safetensors.Tensor{Name: p + "mlp.gate_proj.weight", Shape: []int{s.Intermediate, s.Hidden}},
			safetensors.Tensor{Name: p + "mlp.up_proj.weight", Shape: []int{s.Intermediate, s.Hidden}},
			safetensors.Tensor{Name: p + "mlp.down_proj.weight", Shape: []int{s.Hidden, s.Intermediate}},
		)
	}
	return ts
}

// params counts the checkpoint's parameters.
func (s synthSpec) params() int {
	n := 0
	for _, t := range s.shapes() {
		n += numel(t.Shape)
	}
	return n
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// tensors generates the weights. Each tensor draws from its own PCG stream keyed by the seed and a
// hash of its name, so a tensor's values do not depend on the order or presence of the others.
func (s synthSpec) tensors() []safetensors.Tensor {
	ts := s.shapes()
	for i := range ts {
		t := &ts[i]
		t.DType = safetensors.F32
		t.Data = make([]float32, numel(t.Shape))
		if len(t.Shape) == 1 { // RMSNorm weights
			for j := range t.Data {
				t.Data[j] = 1
			}
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(t.Name))
		r := rand.New(rand.NewPCG(s.Seed, h.Sum64()))
		for j := range t.Data {
			t.Data[j] = float32(s.Std * r.NormFloat64())
		}
	}
	return ts
}

// synthStamp is the file whose content (the spec hash) marks a complete generated model.
const synthStamp = "synth.sha256"

// writeSynth writes config.json and model.safetensors for s into dir, unless dir already holds the
// model for the same spec hash. It reports whether it generated anything.
func writeSynth(dir string, s synthSpec) (generated bool, err error) {
	want := s.hash()
	if b, err := os.ReadFile(filepath.Join(dir, synthStamp)); err == nil && string(b) == want {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("synthetic model %s: %w", dir, err)
	}
	os.Remove(filepath.Join(dir, synthStamp)) // the model is incomplete until the stamp is back
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), s.tensors(), map[string]string{"format": "pt"}); err != nil {
		return false, fmt.Errorf("synthetic model %s: %w", dir, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "config.json"), s.configJSON()); err != nil {
		return false, err
	}
	if err := writeFileAtomic(filepath.Join(dir, synthStamp), []byte(want)); err != nil {
		return false, err
	}
	return true, nil
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

// synthDir returns the directory of the generated model for s, generating it when needed: the
// directory named by ITERIS_BENCH_DIR when that is set, else a cache directory under os.TempDir
// named by the spec hash.
func synthDir(tb testing.TB, s synthSpec) string {
	tb.Helper()
	dir := os.Getenv("ITERIS_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "iteris-synth-"+s.hash()[:12])
	}
	generated, err := writeSynth(dir, s)
	if err != nil {
		tb.Fatal(err)
	}
	if generated {
		tb.Logf("generated %d-parameter synthetic Llama in %s", s.params(), dir)
	}
	return dir
}

// randomSeqs returns n deterministic token sequences with the given lengths (cycled).
func randomSeqs(n int, lens []int, vocab int, seed uint64) [][]int {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	seqs := make([][]int, n)
	for i := range seqs {
		seqs[i] = make([]int, lens[i%len(lens)])
		for j := range seqs[i] {
			seqs[i][j] = r.IntN(vocab)
		}
	}
	return seqs
}

// specSmall is small enough to generate in a test.
var specSmall = synthSpec{Hidden: 64, Layers: 2, Intermediate: 176, Heads: 4, KVHeads: 2, HeadDim: 16, Vocab: 100, Seed: 7, Std: 0.02}

func TestSynthModel(t *testing.T) {
	cases := []struct {
		name   string
		spec   synthSpec
		params int
	}{
		// 2*100*64 (embed, lm_head) + 64 (norm) + 2 layers * (2*64 + 64*64*2 + 32*64*2 + 3*176*64)
		{"small", specSmall, 12800 + 64 + 2*(128+8192+4096+33792)},
		// 2*32000*1024 + 1024 + 8 * (2*1024 + 2*1024*1024 + 2*256*1024 + 3*2816*1024)
		{"100M", spec100M, 65536000 + 1024 + 8*(2048+2097152+524288+8650752)},
	}
	for _, tc := range cases {
		if got := tc.spec.params(); got != tc.params {
			t.Errorf("%s: %d parameters, want %d", tc.name, got, tc.params)
		}
	}

	dirA, dirB := t.TempDir(), t.TempDir()
	for _, dir := range []string{dirA, dirB} {
		generated, err := writeSynth(dir, specSmall)
		if err != nil {
			t.Fatal(err)
		}
		if !generated {
			t.Fatalf("%s: writeSynth did not generate into an empty directory", dir)
		}
	}
	if generated, err := writeSynth(dirA, specSmall); err != nil || generated {
		t.Fatalf("second writeSynth into %s: generated=%v err=%v, want the cached model reused", dirA, generated, err)
	}
	a, err := os.ReadFile(filepath.Join(dirA, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dirB, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("two generations of the same spec differ")
	}

	m, err := model.Load(dirA)
	if err != nil {
		t.Fatal(err)
	}
	c := m.Config
	got := [...]int{c.Hidden, c.Layers, c.Intermediate, c.Heads, c.KVHeads, c.HeadDim, c.Vocab}
	want := [...]int{64, 2, 176, 4, 2, 16, 100}
	if got != want {
		t.Errorf("loaded config (hidden, layers, mlp, heads, kv heads, head dim, vocab) = %v, want %v", got, want)
	}
	if c.TieWordEmbeddings || c.RMSNormEps != 1e-5 || c.RopeTheta != 10000 {
		t.Errorf("loaded config: tie=%v eps=%v theta=%v, want false 1e-05 10000", c.TieWordEmbeddings, c.RMSNormEps, c.RopeTheta)
	}
	for i, v := range m.Layers[1].PostNorm {
		if v != 1 {
			t.Fatalf("layer 1 post_attention_layernorm[%d] = %v, want 1", i, v)
		}
	}
	// The weights are Std*N(0,1): the sample standard deviation of the embeddings (6400 draws)
	// lies within 5% of 0.02.
	var ss float64
	embed := m.Embed.Float32()
	for _, v := range embed {
		ss += float64(v) * float64(v)
	}
	if sd := ss / float64(len(embed)); sd < 0.019*0.019 || sd > 0.021*0.021 {
		t.Errorf("embedding variance %.3g, want 0.02^2 = 4e-4 within 5%%", sd)
	}
	out, err := m.Forward(randomSeqs(3, []int{5, 9}, c.Vocab, 1), model.ForwardOptions{Logits: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Logits) != (5+9+5)*100 {
		t.Errorf("%d logits, want %d", len(out.Logits), (5+9+5)*100)
	}
}
