package model

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

const fixtureConfig = "../../testdata/tiny-skills/model/config.json"

// withFields returns the fixture's config.json with fields replaced (a nil value deletes one).
func withFields(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	b, err := os.ReadFile(fixtureConfig)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParseConfigFixture(t *testing.T) {
	c, err := LoadConfig(fixtureConfig)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{ModelType: "llama", Hidden: 128, Layers: 4, Heads: 4, KVHeads: 2, HeadDim: 32, Intermediate: 344,
		Vocab: 259, RopeTheta: 10000, RMSNormEps: 1e-5, BOS: 256, EOS: []int{257}, PAD: 258, MaxPositions: 64}
	if c.ModelType != want.ModelType || c.Hidden != want.Hidden || c.Layers != want.Layers || c.Heads != want.Heads ||
		c.KVHeads != want.KVHeads || c.HeadDim != want.HeadDim || c.Intermediate != want.Intermediate ||
		c.Vocab != want.Vocab || c.RopeTheta != want.RopeTheta || c.RMSNormEps != want.RMSNormEps ||
		c.BOS != want.BOS || !c.IsEOS(257) || len(c.EOS) != 1 || c.PAD != want.PAD || c.TieWordEmbeddings || c.QKVBias {
		t.Errorf("config = %+v, want %+v", c, want)
	}
}

func TestParseConfigVariants(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]any
		check  func(Config) bool
	}{
		{"older top-level rope_theta", map[string]any{"rope_parameters": nil, "rope_theta": 500000.0},
			func(c Config) bool { return c.RopeTheta == 500000 }},
		{"no head_dim", map[string]any{"head_dim": nil}, func(c Config) bool { return c.HeadDim == 32 }},
		{"no kv heads means MHA", map[string]any{"num_key_value_heads": nil}, func(c Config) bool { return c.KVHeads == 4 }},
		{"eos list", map[string]any{"eos_token_id": []int{257, 2}}, func(c Config) bool { return c.IsEOS(2) && c.IsEOS(257) }},
		{"qwen2 has qkv bias", map[string]any{"model_type": "qwen2", "architectures": []string{"Qwen2ForCausalLM"}, "use_sliding_window": false, "sliding_window": 4096},
			func(c Config) bool { return c.QKVBias && !c.OBias }},
		{"mistral without window", map[string]any{"model_type": "mistral", "architectures": []string{"MistralForCausalLM"}, "sliding_window": nil},
			func(c Config) bool { return c.ModelType == "mistral" }},
		{"llama attention_bias", map[string]any{"attention_bias": true}, func(c Config) bool { return c.QKVBias && c.OBias }},
		{"tied embeddings", map[string]any{"tie_word_embeddings": true}, func(c Config) bool { return c.TieWordEmbeddings }},
		{"default rope_scaling", map[string]any{"rope_scaling": map[string]any{"rope_type": "default"}}, func(c Config) bool { return true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(withFields(t, tc.fields), "config.json")
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestParseConfigRefusals(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]any
		target error
		field  string
	}{
		{"other architecture", map[string]any{"model_type": "gpt2"}, ErrUnsupported, "model_type"},
		{"other architectures entry", map[string]any{"architectures": []string{"GemmaForCausalLM"}}, ErrUnsupported, "architectures"},
		{"yarn scaling (old key)", map[string]any{"rope_scaling": map[string]any{"type": "yarn", "factor": 4.0}}, ErrUnsupported, "rope_scaling"},
		{"llama3 rope type", map[string]any{"rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 1.0}}, ErrUnsupported, "rope_parameters.rope_type"},
		{"mistral sliding window", map[string]any{"model_type": "mistral", "architectures": nil, "sliding_window": 4096}, ErrUnsupported, "sliding_window"},
		{"qwen2 sliding window on", map[string]any{"model_type": "qwen2", "architectures": nil, "use_sliding_window": true}, ErrUnsupported, "use_sliding_window"},
		{"gelu", map[string]any{"hidden_act": "gelu"}, ErrUnsupported, "hidden_act"},
		{"quantized", map[string]any{"quantization_config": map[string]any{"quant_method": "gptq"}}, ErrUnsupported, "quantization_config"},
		{"missing hidden_size", map[string]any{"hidden_size": nil}, ErrInvalid, "hidden_size"},
		{"kv heads not dividing", map[string]any{"num_key_value_heads": 3}, ErrInvalid, "num_key_value_heads"},
		{"odd head_dim", map[string]any{"head_dim": 31}, ErrInvalid, "head_dim"},
		{"bad eos", map[string]any{"eos_token_id": "x"}, ErrInvalid, "eos_token_id"},
		{"missing model_type", map[string]any{"model_type": nil}, ErrInvalid, "model_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(withFields(t, tc.fields), "dir/config.json")
			if !errors.Is(err, tc.target) {
				t.Fatalf("error %v, want %v", err, tc.target)
			}
			for _, s := range []string{"dir/config.json", tc.field} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}
	if _, err := parseConfig([]byte("[1,2]"), "x/config.json"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "x/config.json") {
		t.Errorf("non-object config: %v", err)
	}
}

// TestLoadRefusesBadCheckpoints copies the fixture model with one tensor changed and checks the
// error names the directory and the tensor.
func TestLoadRefusesBadCheckpoints(t *testing.T) {
	src := "../../testdata/tiny-skills/model"
	f, err := safetensors.Open(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var base []safetensors.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		data, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		base = append(base, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: info.Shape, Data: data})
	}
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func([]safetensors.Tensor) []safetensors.Tensor
		target error
		tensor string
	}{
		{"missing tensor", func(ts []safetensors.Tensor) []safetensors.Tensor {
			out := ts[:0:0]
			for _, x := range ts {
				if x.Name != "model.layers.2.mlp.up_proj.weight" {
					out = append(out, x)
				}
			}
			return out
		}, ErrInvalid, "model.layers.2.mlp.up_proj.weight"},
		{"wrong shape", func(ts []safetensors.Tensor) []safetensors.Tensor {
			out := append([]safetensors.Tensor(nil), ts...)
			for i, x := range out {
				if x.Name == "model.layers.1.self_attn.k_proj.weight" {
					out[i] = safetensors.Tensor{Name: x.Name, DType: x.DType, Shape: []int{32, 128}, Data: x.Data[:32*128]}
				}
			}
			return out
		}, ErrInvalid, "model.layers.1.self_attn.k_proj.weight"},
		{"extra tensor", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(append([]safetensors.Tensor(nil), ts...), safetensors.Tensor{Name: "model.layers.0.mlp.experts.0.weight", DType: safetensors.F32, Shape: []int{2}, Data: []float32{1, 2}})
		}, ErrUnsupported, "model.layers.0.mlp.experts.0.weight"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), tc.edit(base), nil); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if !errors.Is(err, tc.target) {
				t.Fatalf("error %v, want %v", err, tc.target)
			}
			for _, s := range []string{dir, tc.tensor} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	b, err := os.ReadFile(fixtureConfig)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"model_type":"qwen2","hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":4,"vocab_size":3,"eos_token_id":[1,2]}`))
	f.Add([]byte(`{"model_type":"llama","rope_scaling":{"type":"yarn"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data, "fuzz/config.json")
		if err == nil && (c.Hidden <= 0 || c.HeadDim <= 0 || c.KVHeads <= 0 || c.Heads%c.KVHeads != 0) {
			t.Fatalf("accepted an impossible config %+v", c)
		}
	})
}

// TestCheckCheckpointRefusesUnbackedSizes edits the fixture's config.json to claim sizes its
// checkpoint does not hold: each is refused from the headers, naming the field or the tensor,
// without allocating anything of the claimed size.
func TestCheckCheckpointRefusesUnbackedSizes(t *testing.T) {
	raw, err := os.ReadFile(fixtureConfig)
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open("../../testdata/tiny-skills/model/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests := []struct {
		field string
		value any
		want  []string
	}{
		{"num_hidden_layers", 1_000_000_000, []string{"num_hidden_layers = 1000000000", "holds only"}},
		{"vocab_size", 1 << 40, []string{"model.embed_tokens.weight", "[1099511627776 128]"}},
		{"intermediate_size", 1_000_000_000_000, []string{"model.layers.0.mlp.gate_proj.weight", "[1000000000000 128]"}},
		{"hidden_size", 4096, []string{"model.embed_tokens.weight", "[259 4096]"}},
	}
	for _, tc := range tests {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		m[tc.field] = tc.value
		b, _ := json.Marshal(m)
		c, err := parseConfig(b, "edited/config.json")
		if err != nil {
			t.Fatalf("%s: %v", tc.field, err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err = c.CheckCheckpoint(f, "edited")
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("%s = %v: error %v, want ErrInvalid", tc.field, tc.value, err)
		}
		for _, w := range append(tc.want, "edited") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tc.field, err, w)
			}
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
			t.Errorf("%s: the check allocated %d bytes", tc.field, grew)
		}
	}
	c, _ := parseConfig(raw, "config.json")
	if err := c.CheckCheckpoint(f, "fixture"); err != nil {
		t.Errorf("the fixture's own config: %v", err)
	}
}
