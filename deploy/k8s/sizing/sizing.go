// Package sizing writes the stand-in of a production merge that the gpu overlay is sized for: a
// Llama-3.1-8B-shaped base model (config.json of the real model's dimensions, the tiny-skills
// tokenizer, a bfloat16 weights file whose header lists every tensor of the config, its data a
// hole of a sparse file) and four rank-16 LoRA adapters on q_proj and v_proj
// whose factors are zero (sparse files), with 64 calibration prompts of 200 bytes per task.
// `iteris plan` reads only config.json, the checkpoint's header (which it checks against the
// config), the adapters and the prompts, so its estimate for this
// stand-in is the estimate for the real model with adapters of that shape; nothing else can run
// on it.
package sizing

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Shape of the stand-in (Llama-3.1-8B).
const (
	Layers       = 32
	Hidden       = 4096
	Intermediate = 14336
	Heads        = 32
	KVHeads      = 8
	Vocab        = 128256
	Rank         = 16
	Prompts      = 64
	PromptBytes  = 200
)

// Tasks are the stand-in adapters' names.
var Tasks = []string{"math", "code", "summarize", "translate"}

// Write writes the stand-in under dir: dir/llama-3.1-8b (base), dir/adapters/NAME,
// dir/data/NAME.jsonl; tokenizer is a directory holding tokenizer.json and
// tokenizer_config.json (the tiny-skills model's).
func Write(dir, tokenizer string) error {
	base := filepath.Join(dir, "llama-3.1-8b")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(tokenizer, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(base, f), b, 0o644); err != nil {
			return err
		}
	}
	if err := writeJSON(filepath.Join(base, "config.json"), modelConfig()); err != nil {
		return err
	}
	if err := writeSafetensors(filepath.Join(base, "model.safetensors"), "BF16", 2, baseTensors()); err != nil {
		return err
	}
	for i, name := range Tasks {
		if err := writeAdapter(filepath.Join(dir, "adapters", name)); err != nil {
			return err
		}
		if err := writePrompts(filepath.Join(dir, "data", name+".jsonl"), name, i); err != nil {
			return err
		}
	}
	return nil
}

func modelConfig() map[string]any {
	return map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": Hidden, "intermediate_size": Intermediate, "num_hidden_layers": Layers,
		"num_attention_heads": Heads, "num_key_value_heads": KVHeads, "head_dim": Hidden / Heads,
		"vocab_size": Vocab, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
		"rope_theta": 500000.0, "tie_word_embeddings": false, "hidden_act": "silu",
		"attention_bias": false, "mlp_bias": false, "bos_token_id": 256, "eos_token_id": 257,
		"torch_dtype": "bfloat16",
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// tensor is one entry of a safetensors header.
type tensor struct {
	name  string
	shape []int
}

// baseTensors lists the weights of the stand-in's base model (what config.json implies: the
// embeddings, the final norm, the output head and each layer's two norms and seven linear
// modules, without biases).
func baseTensors() []tensor {
	q, kv := Hidden, KVHeads*Hidden/Heads
	ts := []tensor{{"model.embed_tokens.weight", []int{Vocab, Hidden}}, {"model.norm.weight", []int{Hidden}},
		{"lm_head.weight", []int{Vocab, Hidden}}}
	for l := 0; l < Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts, tensor{p + "input_layernorm.weight", []int{Hidden}}, tensor{p + "post_attention_layernorm.weight", []int{Hidden}},
			tensor{p + "self_attn.q_proj.weight", []int{q, Hidden}}, tensor{p + "self_attn.k_proj.weight", []int{kv, Hidden}},
			tensor{p + "self_attn.v_proj.weight", []int{kv, Hidden}}, tensor{p + "self_attn.o_proj.weight", []int{Hidden, q}},
			tensor{p + "mlp.gate_proj.weight", []int{Intermediate, Hidden}}, tensor{p + "mlp.up_proj.weight", []int{Intermediate, Hidden}},
			tensor{p + "mlp.down_proj.weight", []int{Hidden, Intermediate}})
	}
	return ts
}

// writeSafetensors writes a safetensors file of dtype (size bytes per value) whose data are
// zeros, as a sparse file.
func writeSafetensors(path, dtype string, size int64, ts []tensor) error {
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var off int64
	for _, t := range ts {
		n := size
		for _, d := range t.shape {
			n *= int64(d)
		}
		header[t.name] = map[string]any{"dtype": dtype, "shape": t.shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	h, err := json.Marshal(header)
	if err != nil {
		return err
	}
	if pad := len(h) % 8; pad != 0 {
		h = append(h, strings.Repeat(" ", 8-pad)...)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := f.Write(append(n[:], h...)); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(int64(8+len(h)) + off); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeAdapter(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := map[string]any{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": Rank, "lora_alpha": 2 * Rank,
		"target_modules": []string{"q_proj", "v_proj"}, "lora_dropout": 0.0, "bias": "none", "use_rslora": false,
		"use_dora": false, "fan_in_fan_out": false, "modules_to_save": nil, "base_model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct"}
	if err := writeJSON(filepath.Join(dir, "adapter_config.json"), cfg); err != nil {
		return err
	}
	var ts []tensor
	for l := 0; l < Layers; l++ {
		for _, m := range []struct {
			name string
			out  int
		}{{"q_proj", Hidden}, {"v_proj", KVHeads * Hidden / Heads}} {
			p := fmt.Sprintf("base_model.model.model.layers.%d.self_attn.%s.", l, m.name)
			ts = append(ts, tensor{p + "lora_A.weight", []int{Rank, Hidden}}, tensor{p + "lora_B.weight", []int{m.out, Rank}})
		}
	}
	return writeSafetensors(filepath.Join(dir, "adapter_model.safetensors"), "F32", 4, ts)
}

// writePrompts writes Prompts calibration prompts of PromptBytes letters each.
func writePrompts(path, task string, seed int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	for i := 0; i < Prompts; i++ {
		p := make([]byte, PromptBytes)
		for j := range p {
			p[j] = byte('a' + (i*7+j*3+seed)%26)
		}
		line, err := json.Marshal(map[string]string{"task": task, "prompt": string(p), "answer": "x"})
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
