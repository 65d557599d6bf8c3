// Package synth writes generated Llama checkpoints, LoRA adapters and calibration files for
// benchmarks that need a model larger than the fixture: random weights (normal, std 0.02; norms
// 1), random rank-r adapters on every linear module, and calibration items given as token ids.
// Files are written once per spec and reused (a stamp file holds the spec's hash).
package synth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

// Spec is a generated Llama's shape.
type Spec struct {
	Hidden, Layers, Intermediate, Heads, KVHeads, HeadDim, Vocab int
	// Seed drives the weights.
	Seed uint64
}

// Bench155M is the 155.7M-parameter benchmark Llama of bench/forward.sh (hidden 1024, 8 layers,
// MLP 2816, 16 heads, 4 key/value heads of 64, vocabulary 32000, untied lm_head).
var Bench155M = Spec{Hidden: 1024, Layers: 8, Intermediate: 2816, Heads: 16, KVHeads: 4, HeadDim: 64, Vocab: 32000, Seed: 1}

func (s Spec) config() map[string]any {
	return map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "hidden_act": "silu",
		"hidden_size": s.Hidden, "num_hidden_layers": s.Layers, "intermediate_size": s.Intermediate,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads, "head_dim": s.HeadDim,
		"vocab_size": s.Vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 2048,
		"tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
	}
}

func stamp(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// fresh reports whether dir holds files stamped with want.
func fresh(dir, want string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "synth.sha256"))
	return err == nil && string(b) == want
}

func markFresh(dir, want string) error {
	return os.WriteFile(filepath.Join(dir, "synth.sha256"), []byte(want), 0o644)
}

func random(seed uint64, name string, n int, std float64) []float32 {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := rand.New(rand.NewPCG(seed, h.Sum64()))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(std * r.NormFloat64())
	}
	return out
}

// WriteModel writes config.json and model.safetensors of s into dir (unless already there).
func WriteModel(dir string, s Spec) error {
	want := stamp([]any{"model-v1", s})
	if fresh(dir, want) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfgJSON, _ := json.MarshalIndent(s.config(), "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfgJSON, 0o644); err != nil {
		return err
	}
	cfg, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	var ts []safetensors.Tensor
	add := func(name string, shape ...int) {
		n := 1
		for _, d := range shape {
			n *= d
		}
		t := safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape}
		if len(shape) == 1 {
			t.Data = make([]float32, n)
			for i := range t.Data {
				t.Data[i] = 1
			}
		} else {
			t.Data = random(s.Seed, name, n, 0.02)
		}
		ts = append(ts, t)
	}
	add("model.embed_tokens.weight", s.Vocab, s.Hidden)
	add("model.norm.weight", s.Hidden)
	add("lm_head.weight", s.Vocab, s.Hidden)
	shapes := model.ShapesOf(cfg)
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", s.Hidden)
		add(p+"post_attention_layernorm.weight", s.Hidden)
		for _, n := range modules(l) {
			out, in, _ := shapes.LinearShape(n)
			add(n+".weight", out, in)
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	return markFresh(dir, want)
}

func modules(l int) []string {
	var out []string
	for _, m := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
		out = append(out, fmt.Sprintf("model.layers.%d.%s", l, m))
	}
	return out
}

// WriteAdapter writes a PEFT adapter of rank r (lora_alpha = 2r) on every linear module of s into
// dir, its factors random (A std 0.02, B std 0.02) from seed.
func WriteAdapter(dir string, s Spec, r int, seed uint64) error {
	want := stamp([]any{"adapter-v1", s, r, seed})
	if fresh(dir, want) {
		return nil
	}
	cfgDir, err := os.MkdirTemp("", "iteris-synth-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(cfgDir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	cfgJSON, _ := json.Marshal(s.config())
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), cfgJSON, 0o644); err != nil {
		return err
	}
	cfg, err := model.LoadConfig(filepath.Join(cfgDir, "config.json"))
	if err != nil {
		return err
	}
	shapes := model.ShapesOf(cfg)
	var mods []*adapter.Module
	for l := 0; l < s.Layers; l++ {
		for _, n := range modules(l) {
			out, in, _ := shapes.LinearShape(n)
			mods = append(mods, &adapter.Module{Name: n, R: r, In: in, Out: out, Alpha: float64(2 * r), Scale: 2,
				A: random(seed, n+".A", r*in, 0.02), B: random(seed, n+".B", out*r, 0.02)})
		}
	}
	if err := adapter.Write(dir, mods, adapter.WriteOptions{Base: shapes}); err != nil {
		return err
	}
	return markFresh(dir, want)
}

// WriteCalibration writes n calibration items of length tokens each (ids in [3, vocab)) as
// JSONL input_ids.
func WriteCalibration(path string, n, length, vocab int, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, uint64(n*length)))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for i := 0; i < n; i++ {
		ids := make([]int, length)
		ids[0] = 1
		for j := 1; j < length; j++ {
			ids[j] = 3 + r.IntN(vocab-3)
		}
		if err := enc.Encode(map[string]any{"input_ids": ids}); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
