package model_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

// variantsDir holds the model variants written by bench/make_variants.py: small seeded checkpoints
// for the code paths the tiny-skills Llama does not exercise, each with a float64 reference
// computed by an independent implementation of transformers' forward pass.
const variantsDir = "testdata/variants"

// variantCase describes one variant and the configuration the engine must read from it.
type variantCase struct {
	name string
	// want holds the Config fields that select code paths (EOS, BOS, PAD and MaxPositions are
	// not compared).
	want model.Config
	// biased lists the linear modules (leaf names) that carry a bias.
	biased []string
}

var variantCases = []variantCase{
	{
		// Qwen2: q/k/v biases without an o_proj bias, tied lm_head (no lm_head.weight in the
		// file), top-level rope_theta, grouped-query attention, head_dim 24 != 64/4.
		name: "qwen2",
		want: model.Config{ModelType: "qwen2", Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 24,
			Intermediate: 64, Vocab: 300, RopeTheta: 1e6, RMSNormEps: 1e-6, TieWordEmbeddings: true, QKVBias: true},
		biased: []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
	},
	{
		// Llama with attention_bias and mlp_bias, no num_key_value_heads (multi-head attention),
		// rope_parameters in the transformers-5 style.
		name: "llama-bias",
		want: model.Config{ModelType: "llama", Hidden: 32, Layers: 2, Heads: 4, KVHeads: 4, HeadDim: 8,
			Intermediate: 64, Vocab: 300, RopeTheta: 500000, RMSNormEps: 1e-5, QKVBias: true, OBias: true, MLPBias: true},
		biased: []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
			"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
	},
	{
		// Mistral with sliding_window null and a single key/value head (multi-query attention).
		name: "mistral",
		want: model.Config{ModelType: "mistral", Hidden: 32, Layers: 2, Heads: 4, KVHeads: 1, HeadDim: 8,
			Intermediate: 64, Vocab: 300, RopeTheta: 10000, RMSNormEps: 1e-5},
	},
}

// variantRef is a variant's reference.json and reference.safetensors.
type variantRef struct {
	Sequences    [][]int `json:"sequences"`
	GreedyPrompt []int   `json:"greedy_prompt"`
	GreedyTokens []int   `json:"greedy_tokens"`
	f            *safetensors.File
}

func loadVariant(t *testing.T, name string) (*model.Model, *variantRef) {
	t.Helper()
	dir := filepath.Join(variantsDir, name)
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	ref := &variantRef{}
	if err := json.Unmarshal(b, ref); err != nil {
		t.Fatalf("%s/reference.json: %v", dir, err)
	}
	if len(ref.Sequences) == 0 || len(ref.GreedyTokens) == 0 {
		t.Fatalf("%s/reference.json: no sequences or no greedy tokens", dir)
	}
	if ref.f, err = safetensors.Open(filepath.Join(dir, "reference.safetensors")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.f.Close() })
	return m, ref
}

// maxRelErr returns max|got-want| / max|want|.
func maxRelErr(t *testing.T, what string, got, want []float32) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, reference has %d", what, len(got), len(want))
	}
	var maxRef, maxErr float64
	for i := range want {
		maxRef = math.Max(maxRef, math.Abs(float64(want[i])))
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			t.Fatalf("%s: value %d is %v, reference %v", what, i, got[i], want[i])
		}
		maxErr = math.Max(maxErr, d)
	}
	return maxErr / maxRef
}

// argmax returns the index of the largest value, the lowest index on a tie (as torch.argmax).
func argmax(row []float32) int {
	best := 0
	for j, x := range row {
		if x > row[best] {
			best = j
		}
	}
	return best
}

func TestVariantConfig(t *testing.T) {
	for _, tc := range variantCases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := loadVariant(t, tc.name)
			got := m.Config
			got.BOS, got.EOS, got.PAD, got.MaxPositions = 0, nil, 0, 0
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("config\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestVariantForwardMatchesReference(t *testing.T) {
	for _, tc := range variantCases {
		t.Run(tc.name, func(t *testing.T) {
			m, ref := loadVariant(t, tc.name)
			// All sequences in one packed batch.
			out, err := m.Forward(ref.Sequences, model.ForwardOptions{LayerInputs: true, FinalNorm: true, Logits: true})
			if err != nil {
				t.Fatal(err)
			}
			H, V := m.Config.Hidden, m.Config.Vocab
			var worstHidden, worstLogits float64
			for s, seq := range ref.Sequences {
				o, n := out.Offsets[s], len(seq)
				check := func(what string, got []float32, width int) float64 {
					t.Helper()
					key := fmt.Sprintf("seq%d.%s", s, what)
					want, err := ref.f.Float32(key)
					if err != nil {
						t.Fatal(err)
					}
					e := maxRelErr(t, key, got[o*width:(o+n)*width], want)
					if e > 1e-4 {
						t.Errorf("%s: max error %.3g x max |ref| exceeds 1e-4", key, e)
					}
					return e
				}
				for k := range m.Layers {
					worstHidden = math.Max(worstHidden, check(fmt.Sprintf("layer%d.input", k), out.LayerInputs[k], H))
				}
				worstHidden = math.Max(worstHidden, check("final_norm", out.FinalNorm, H))
				worstLogits = math.Max(worstLogits, check("logits", out.Logits, V))
			}
			t.Logf("max error / max |ref|: hidden states %.3g, logits %.3g", worstHidden, worstLogits)
		})
	}
}

func TestVariantShapesAndBiases(t *testing.T) {
	for _, tc := range variantCases {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := loadVariant(t, tc.name)
			s := model.ShapesOf(m.Config)
			if !slices.Equal(s.LinearNames(), m.LinearNames()) {
				t.Fatalf("ShapesOf names %v, loaded model has %v", s.LinearNames(), m.LinearNames())
			}
			if want := 7 * m.Config.Layers; len(m.LinearNames()) != want {
				t.Errorf("%d linear modules, want %d", len(m.LinearNames()), want)
			}
			for _, name := range m.LinearNames() {
				so, si, ok := s.LinearShape(name)
				mo, mi, _ := m.LinearShape(name)
				if !ok || so != mo || si != mi {
					t.Errorf("%s: ShapesOf says %dx%d (ok=%v), loaded model %dx%d", name, so, si, ok, mo, mi)
				}
				l, _ := m.Linear(name)
				leaf := strings.SplitN(name, ".", 4)[3] // model.layers.N.<leaf>
				if wantBias := slices.Contains(tc.biased, leaf); (l.Bias != nil) != wantBias {
					t.Errorf("%s: has bias %v, want %v", name, l.Bias != nil, wantBias)
				}
			}
			if tied := m.LMHead.W.Shares(m.Embed); tied != m.Config.TieWordEmbeddings {
				t.Errorf("lm_head shares the embedding matrix: %v, tie_word_embeddings %v", tied, m.Config.TieWordEmbeddings)
			}
		})
	}
}

func TestVariantGenerateMatchesFullForward(t *testing.T) {
	// Greedy generation with the key/value cache, all prompts of different lengths in one batch,
	// must pick what re-running the whole sequence picks at every step; the first prompt's
	// continuation must also equal the reference implementation's greedy continuation.
	const steps = 5
	for _, tc := range variantCases {
		t.Run(tc.name, func(t *testing.T) {
			m, ref := loadVariant(t, tc.name)
			if !slices.Equal(ref.GreedyPrompt, ref.Sequences[0]) || len(ref.GreedyTokens) != steps {
				t.Fatalf("reference.json: greedy prompt %v and %d tokens, want sequence 0 and %d", ref.GreedyPrompt, len(ref.GreedyTokens), steps)
			}
			got, err := m.Generate(ref.Sequences, model.GenerateOptions{MaxNew: []int{steps}})
			if err != nil {
				t.Fatal(err)
			}
			V := m.Config.Vocab
			for i, p := range ref.Sequences {
				seq := slices.Clone(p)
				for step := 0; step < steps; step++ {
					out, err := m.Forward([][]int{seq}, model.ForwardOptions{Logits: true})
					if err != nil {
						t.Fatal(err)
					}
					seq = append(seq, argmax(out.Logits[(len(seq)-1)*V:len(seq)*V]))
				}
				if full := seq[len(p):]; !slices.Equal(got[i], full) {
					t.Errorf("prompt %d: Generate gave %v, full forward each step %v", i, got[i], full)
				}
			}
			if !slices.Equal(got[0], ref.GreedyTokens) {
				t.Errorf("prompt 0: Generate gave %v, reference greedy continuation %v", got[0], ref.GreedyTokens)
			}
		})
	}
}
