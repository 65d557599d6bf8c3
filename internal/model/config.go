// Package model loads Llama-family causal language models (llama, mistral, qwen2) from Hugging Face
// checkpoints and runs them on the CPU in float32, exactly as transformers does: embeddings,
// RMSNorm, rotary embeddings, causal grouped-query attention, the SiLU-gated MLP, the final norm and
// lm_head. LoRA adapters can be applied merged into the weights or unmerged, and the inputs of the
// linear modules can be observed as the model runs (what feature capture for a merge needs).
//
// Sequences of different lengths are packed row after row without padding: every linear layer runs
// on all tokens of a batch at once, and attention runs per sequence, so no token ever sees another
// sequence or a pad token.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Sentinel errors; they are wrapped with the file and field or tensor they concern.
var (
	// ErrUnsupported reports a model feature this engine does not implement.
	ErrUnsupported = errors.New("unsupported model")
	// ErrInvalid reports a malformed config or checkpoint.
	ErrInvalid = errors.New("invalid model")
)

// Config is the part of a Hugging Face config.json that the engine uses.
type Config struct {
	// ModelType is config.json's model_type: llama, mistral or qwen2.
	ModelType string
	// Hidden is hidden_size.
	Hidden int
	// Layers is num_hidden_layers.
	Layers int
	// Heads is num_attention_heads.
	Heads int
	// KVHeads is num_key_value_heads (grouped-query attention); equals Heads when absent.
	KVHeads int
	// HeadDim is head_dim, or Hidden/Heads when absent.
	HeadDim int
	// Intermediate is intermediate_size (the MLP width).
	Intermediate int
	// Vocab is vocab_size.
	Vocab int
	// RopeTheta is the rotary base, from rope_theta or rope_parameters.rope_theta.
	RopeTheta float64
	// RMSNormEps is rms_norm_eps.
	RMSNormEps float64
	// TieWordEmbeddings reuses the embedding matrix as lm_head.
	TieWordEmbeddings bool
	// QKVBias is true when q/k/v projections carry a bias (qwen2, or llama attention_bias).
	QKVBias bool
	// OBias is true when o_proj carries a bias (llama attention_bias).
	OBias bool
	// MLPBias is true when the MLP projections carry biases (llama mlp_bias).
	MLPBias bool
	// BOS is bos_token_id, or -1.
	BOS int
	// EOS holds eos_token_id (an id or a list of ids).
	EOS []int
	// PAD is pad_token_id, or -1.
	PAD int
	// MaxPositions is max_position_embeddings (0 when absent); see MaxLength.
	MaxPositions int
}

// Defaults of max_position_embeddings when config.json has none, as transformers' config classes
// set them.
var defaultMaxPositions = map[string]int{"llama": 2048, "mistral": 4096 * 32, "qwen2": 32768}

// MaxLength is the longest sequence the model accepts: max_position_embeddings, or
// transformers' default for the model type when config.json has none. The engine refuses
// positions beyond it (rotary embeddings are not trained there), which also bounds every
// sequence's attention (see AttentionBlock).
func (c Config) MaxLength() int {
	if c.MaxPositions > 0 {
		return c.MaxPositions
	}
	return defaultMaxPositions[c.ModelType]
}

// rawConfig mirrors config.json; pointer fields tell absent from zero.
type rawConfig struct {
	Architectures     []string         `json:"architectures"`
	ModelType         string           `json:"model_type"`
	HiddenSize        int              `json:"hidden_size"`
	NumLayers         int              `json:"num_hidden_layers"`
	NumHeads          int              `json:"num_attention_heads"`
	NumKVHeads        *int             `json:"num_key_value_heads"`
	HeadDim           *int             `json:"head_dim"`
	Intermediate      int              `json:"intermediate_size"`
	VocabSize         int              `json:"vocab_size"`
	RopeTheta         *float64         `json:"rope_theta"`
	RopeScaling       json.RawMessage  `json:"rope_scaling"`
	RopeParameters    *json.RawMessage `json:"rope_parameters"`
	RMSNormEps        *float64         `json:"rms_norm_eps"`
	TieWordEmbeddings *bool            `json:"tie_word_embeddings"`
	AttentionBias     bool             `json:"attention_bias"`
	MLPBias           bool             `json:"mlp_bias"`
	HiddenAct         string           `json:"hidden_act"`
	BOS               json.RawMessage  `json:"bos_token_id"`
	EOS               json.RawMessage  `json:"eos_token_id"`
	PAD               json.RawMessage  `json:"pad_token_id"`
	MaxPositions      int              `json:"max_position_embeddings"`
	SlidingWindow     json.RawMessage  `json:"sliding_window"`
	UseSlidingWindow  *bool            `json:"use_sliding_window"`
	PretrainingTP     *int             `json:"pretraining_tp"`
	QuantConfig       json.RawMessage  `json:"quantization_config"`
}

// LoadConfig reads and validates a config.json.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("model config: %w", err)
	}
	return parseConfig(b, path)
}

// parseConfig parses config.json bytes; name is used in error messages.
func parseConfig(b []byte, name string) (Config, error) {
	var r rawConfig
	if err := json.Unmarshal(b, &r); err != nil {
		return Config{}, fmt.Errorf("%s: %w: not a JSON config object: %v", name, ErrInvalid, err)
	}
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s: %s", name, ErrInvalid, field, fmt.Sprintf(format, a...))
	}
	unsup := func(field, format string, a ...any) error {
		return fmt.Errorf("%s: %w: %s: %s", name, ErrUnsupported, field, fmt.Sprintf(format, a...))
	}
	c := Config{ModelType: r.ModelType}
	switch r.ModelType {
	case "llama", "mistral", "qwen2":
	case "":
		return c, bad("model_type", "missing")
	default:
		return c, unsup("model_type", "%q is not supported (supported: llama, mistral, qwen2)", r.ModelType)
	}
	for _, a := range r.Architectures {
		switch a {
		case "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM":
		default:
			return c, unsup("architectures", "%q is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", a)
		}
	}
	if r.HiddenAct != "" && r.HiddenAct != "silu" {
		return c, unsup("hidden_act", "%q is not supported (only silu)", r.HiddenAct)
	}
	if len(r.QuantConfig) > 0 && string(r.QuantConfig) != "null" {
		return c, unsup("quantization_config", "quantized checkpoints are not supported")
	}
	if r.PretrainingTP != nil && *r.PretrainingTP > 1 {
		return c, unsup("pretraining_tp", "%d is not supported (only 1)", *r.PretrainingTP)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", r.HiddenSize}, {"num_hidden_layers", r.NumLayers}, {"num_attention_heads", r.NumHeads},
		{"intermediate_size", r.Intermediate}, {"vocab_size", r.VocabSize}} {
		if f.v <= 0 {
			return c, bad(f.name, "must be a positive integer, got %d", f.v)
		}
	}
	c.Hidden, c.Layers, c.Heads = r.HiddenSize, r.NumLayers, r.NumHeads
	c.Intermediate, c.Vocab, c.MaxPositions = r.Intermediate, r.VocabSize, r.MaxPositions
	if c.MaxPositions < 0 {
		return c, bad("max_position_embeddings", "must be a positive integer, got %d", c.MaxPositions)
	}
	c.KVHeads = c.Heads
	if r.NumKVHeads != nil {
		c.KVHeads = *r.NumKVHeads
	}
	if c.KVHeads <= 0 || c.Heads%c.KVHeads != 0 {
		return c, bad("num_key_value_heads", "%d must be positive and divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	if r.HeadDim != nil {
		c.HeadDim = *r.HeadDim
	} else {
		if c.Hidden%c.Heads != 0 {
			return c, bad("hidden_size", "%d is not divisible by num_attention_heads %d and head_dim is absent", c.Hidden, c.Heads)
		}
		c.HeadDim = c.Hidden / c.Heads
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 {
		return c, bad("head_dim", "must be a positive even number, got %d", c.HeadDim)
	}
	// Rotary embedding: theta and type, from either the transformers-5 rope_parameters or the
	// older top-level rope_theta / rope_scaling.
	c.RopeTheta = 10000
	if r.RopeTheta != nil {
		c.RopeTheta = *r.RopeTheta
	}
	if r.RopeParameters != nil && string(*r.RopeParameters) != "null" {
		var rp map[string]any
		if err := json.Unmarshal(*r.RopeParameters, &rp); err != nil {
			return c, bad("rope_parameters", "not an object: %v", err)
		}
		if t, ok := rp["rope_type"]; ok && t != "default" {
			return c, unsup("rope_parameters.rope_type", "%v is not supported (only default)", t)
		}
		if t, ok := rp["rope_theta"]; ok {
			f, isNum := t.(float64)
			if !isNum {
				return c, bad("rope_parameters.rope_theta", "not a number: %v", t)
			}
			c.RopeTheta = f
		}
	}
	if len(r.RopeScaling) > 0 && string(r.RopeScaling) != "null" {
		var rs map[string]any
		if err := json.Unmarshal(r.RopeScaling, &rs); err != nil {
			return c, bad("rope_scaling", "not an object: %v", err)
		}
		t := rs["rope_type"]
		if t == nil {
			t = rs["type"]
		}
		if t != "default" {
			return c, unsup("rope_scaling", "rope scaling type %v is not supported (only default)", t)
		}
	}
	if c.RopeTheta <= 0 {
		return c, bad("rope_theta", "must be positive, got %v", c.RopeTheta)
	}
	c.RMSNormEps = 1e-6
	if r.RMSNormEps != nil {
		c.RMSNormEps = *r.RMSNormEps
	}
	if r.TieWordEmbeddings != nil {
		c.TieWordEmbeddings = *r.TieWordEmbeddings
	}
	switch r.ModelType {
	case "qwen2":
		c.QKVBias = true
		if r.UseSlidingWindow != nil && *r.UseSlidingWindow {
			return c, unsup("use_sliding_window", "sliding-window attention is not supported")
		}
	case "mistral":
		if len(r.SlidingWindow) > 0 && string(r.SlidingWindow) != "null" {
			return c, unsup("sliding_window", "sliding-window attention (%s) is not supported", string(r.SlidingWindow))
		}
	case "llama":
		c.QKVBias, c.OBias, c.MLPBias = r.AttentionBias, r.AttentionBias, r.MLPBias
	}
	var err error
	if c.BOS, err = oneID(r.BOS); err != nil {
		return c, bad("bos_token_id", "%v", err)
	}
	if c.PAD, err = oneID(r.PAD); err != nil {
		return c, bad("pad_token_id", "%v", err)
	}
	if len(r.EOS) > 0 && string(r.EOS) != "null" {
		var one int
		if json.Unmarshal(r.EOS, &one) == nil {
			c.EOS = []int{one}
		} else if err := json.Unmarshal(r.EOS, &c.EOS); err != nil {
			return c, bad("eos_token_id", "must be an id or a list of ids: %s", string(r.EOS))
		}
	}
	return c, nil
}

func oneID(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return -1, nil
	}
	var id int
	if err := json.Unmarshal(raw, &id); err != nil {
		var ids []int
		if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
			return ids[0], nil
		}
		return -1, fmt.Errorf("must be an integer id: %s", string(raw))
	}
	return id, nil
}

// IsEOS reports whether id is one of the end-of-sequence ids.
func (c Config) IsEOS(id int) bool {
	for _, e := range c.EOS {
		if e == id {
			return true
		}
	}
	return false
}

// configPath returns dir/config.json.
func configPath(dir string) string { return filepath.Join(dir, "config.json") }
