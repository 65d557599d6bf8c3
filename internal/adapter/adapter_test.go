package adapter

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// TestLoadFixtures loads the four trained adapters and checks what the
// fixture README states: r 8, lora_alpha 16 (scale 2) on the seven linear
// modules of all four layers, shapes agreeing with the base model.
func TestLoadFixtures(t *testing.T) {
	base := modelShapes(t)
	leaves := []string{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"}
	for _, name := range fixtureAdapters {
		t.Run(name, func(t *testing.T) {
			a := loadT(t, adapterDir(name))
			if got := len(a.Modules); got != 28 {
				t.Fatalf("%d modules, want 28", got)
			}
			if err := a.Validate(base); err != nil {
				t.Fatal(err)
			}
			if err := a.HasNaN(); err != nil {
				t.Fatal(err)
			}
			if a.Config.R != 8 || a.Config.LoraAlpha != 16 || a.Config.UseRSLoRA || a.Config.PeftType != "LORA" {
				t.Fatalf("config r %d alpha %v rslora %v type %q", a.Config.R, a.Config.LoraAlpha, a.Config.UseRSLoRA, a.Config.PeftType)
			}
			names := a.Names()
			if names[0] != "model.layers.0.mlp.down_proj" || names[27] != "model.layers.3.self_attn.v_proj" {
				t.Fatalf("names %q ... %q", names[0], names[27])
			}
			for _, n := range names {
				m := a.Modules[n]
				out, in, _ := base.LinearShape(n)
				if m.R != 8 || m.Alpha != 16 || m.Scale != 2 || m.In != in || m.Out != out {
					t.Fatalf("%s: r %d alpha %v scale %v in %d out %d, want 8 16 2 %d %d", n, m.R, m.Alpha, m.Scale, m.In, m.Out, in, out)
				}
				if m.KeyA != "base_model.model."+n+".lora_A.weight" || m.KeyB != "base_model.model."+n+".lora_B.weight" {
					t.Fatalf("keys %q %q", m.KeyA, m.KeyB)
				}
			}
			for _, l := range leaves {
				if !a.Config.Targets("model.layers.2.mlp."+l) || a.Config.Targets("model.layers.2.mlp.x"+l) {
					t.Fatalf("target_modules matching of %q", l)
				}
			}
			// Delta is Scale * B * A.
			m := a.Modules["model.layers.1.self_attn.k_proj"]
			d := a.Delta(m.Name)
			if len(d) != 64*128 {
				t.Fatalf("delta has %d values, want 64*128", len(d))
			}
			for _, at := range [][2]int{{0, 0}, {63, 127}, {17, 42}} {
				var s float64
				for k := 0; k < 8; k++ {
					s += float64(m.B[at[0]*8+k]) * float64(m.A[k*128+at[1]])
				}
				if got, want := d[at[0]*128+at[1]], float32(2*s); got != want {
					t.Fatalf("delta[%d,%d] = %v, want %v", at[0], at[1], got, want)
				}
			}
			if a.Delta("model.layers.9.self_attn.k_proj") != nil {
				t.Fatal("Delta of a missing module is not nil")
			}
		})
	}
}

// TestLoadPEFTMerges loads PEFT's add_weighted_adapter outputs (scale 1:
// r = lora_alpha = 8, or 32 for cat) and checks the cat combination against
// the trained adapters: PEFT's cat concatenates the scaled factors, so its
// update is the weighted sum of the adapters' updates.
func TestLoadPEFTMerges(t *testing.T) {
	base := modelShapes(t)
	merged := map[string]*Adapter{}
	for _, name := range fixtureMerges {
		a := loadT(t, mergeDir(name))
		wantR := 8
		if strings.HasPrefix(name, "cat_") {
			wantR = 32
		}
		if len(a.Modules) != 28 {
			t.Fatalf("%s: %d modules, want 28", name, len(a.Modules))
		}
		if err := a.Validate(base); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, m := range a.Modules {
			if m.R != wantR || m.Scale != 1 {
				t.Fatalf("%s: %s r %d scale %v, want %d 1", name, m.Name, m.R, m.Scale, wantR)
			}
		}
		merged[name] = a
	}
	var singles []*Adapter
	for _, name := range fixtureAdapters {
		singles = append(singles, loadT(t, adapterDir(name)))
	}
	worst := map[string]float64{}
	for _, mod := range merged["cat_sum"].Names() {
		var sum []float32
		for _, a := range singles {
			d := a.Delta(mod)
			if sum == nil {
				sum = make([]float32, len(d))
			}
			for i, v := range d {
				sum[i] += v
			}
		}
		mean := make([]float32, len(sum))
		for i, v := range sum {
			mean[i] = v / 4
		}
		for name, want := range map[string][]float32{"cat_sum": sum, "cat_mean": mean} {
			e := relFrob(merged[name].Delta(mod), want)
			if e > 1e-5 {
				t.Errorf("%s %s: relative error %.3g of the update against the sum of the adapters' updates", name, mod, e)
			}
			worst[name] = math.Max(worst[name], e)
		}
	}
	t.Logf("cat merges vs weighted sums of the adapters' updates, worst relative error: %v", worst)
}

// TestValidateOtherBase checks that an adapter of another base names the
// module and both shapes.
func TestValidateOtherBase(t *testing.T) {
	a := loadT(t, adapterDir("rev"))
	tests := []struct {
		name   string
		base   shapeMap
		target error
		parts  []string
	}{
		{
			name: "wider model",
			base: func() shapeMap {
				s := modelShapes(t)
				for n, sh := range s {
					s[n] = [2]int{sh[0] * 2, sh[1] * 2}
				}
				return s
			}(),
			target: ErrShapeMismatch,
			parts: []string{WeightsFile, `"model.layers.0.mlp.down_proj"`, "lora_A [8 344]", "lora_B [128 8]",
				"[128 344]", "[256 688]", "and 27 more modules"},
		},
		{
			name: "one module transposed",
			base: func() shapeMap {
				s := modelShapes(t)
				s["model.layers.2.mlp.up_proj"] = [2]int{128, 344}
				return s
			}(),
			target: ErrShapeMismatch,
			parts:  []string{`"model.layers.2.mlp.up_proj"`, "lora_A [8 128]", "lora_B [344 8]", "[344 128]", "[128 344]"},
		},
		{
			name: "fewer layers",
			base: func() shapeMap {
				s := modelShapes(t)
				for n := range s {
					if strings.HasPrefix(n, "model.layers.3.") {
						delete(s, n)
					}
				}
				return s
			}(),
			target: ErrUnknownModule,
			parts:  []string{`"model.layers.3.mlp.down_proj"`, "not a linear module of the base model", "and 6 more modules"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := a.Validate(tc.base)
			wantErr(t, err, tc.target, tc.parts...)
			if !errors.Is(err, ErrShapeMismatch) {
				t.Fatalf("%v does not wrap ErrShapeMismatch", err)
			}
		})
	}
	wantErr(t, a.Validate(nil), ErrInvalid, "no base model")
}

// TestRefusals mutates copies of a trained adapter, one refusal each, and
// checks the sentinel and that the message names the file and the field or
// key.
func TestRefusals(t *testing.T) {
	const (
		qA = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
		qB = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
	)
	set := func(field string, v any) func(m map[string]any) {
		return func(m map[string]any) { m[field] = v }
	}
	del := func(field string) func(m map[string]any) {
		return func(m map[string]any) { delete(m, field) }
	}
	tests := []struct {
		name    string
		config  func(map[string]any)
		weights func(map[string]safetensors.Tensor)
		files   func(t *testing.T, dir string)
		target  error
		file    string // file the message must name
		parts   []string
	}{
		// Config fields.
		{name: "peft_type", config: set("peft_type", "IA3"), target: ErrUnsupported, file: ConfigFile, parts: []string{"field peft_type", `"IA3"`}},
		{name: "peft_type missing", config: del("peft_type"), target: ErrInvalid, file: ConfigFile, parts: []string{"field peft_type", "missing"}},
		{name: "use_dora", config: set("use_dora", true), target: ErrUnsupported, file: ConfigFile, parts: []string{"field use_dora", "DoRA"}},
		{name: "lora_bias", config: set("lora_bias", true), target: ErrUnsupported, file: ConfigFile, parts: []string{"field lora_bias"}},
		{name: "bias all", config: set("bias", "all"), target: ErrUnsupported, file: ConfigFile, parts: []string{"field bias", `"all"`}},
		{name: "bias lora_only", config: set("bias", "lora_only"), target: ErrUnsupported, file: ConfigFile, parts: []string{"field bias", `"lora_only"`}},
		{name: "modules_to_save", config: set("modules_to_save", []string{"lm_head"}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field modules_to_save", "lm_head"}},
		{name: "fan_in_fan_out", config: set("fan_in_fan_out", true), target: ErrUnsupported, file: ConfigFile, parts: []string{"field fan_in_fan_out"}},
		{name: "layers_to_transform list", config: set("layers_to_transform", []int{0, 1}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field layers_to_transform", "[0,1]"}},
		{name: "layers_to_transform int", config: set("layers_to_transform", 0), target: ErrUnsupported, file: ConfigFile, parts: []string{"field layers_to_transform"}},
		{name: "layer_replication", config: set("layer_replication", [][]int{{0, 2}, {1, 3}}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field layer_replication"}},
		{name: "target_parameters", config: set("target_parameters", []string{"experts.w1"}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field target_parameters"}},
		{name: "trainable_token_indices", config: set("trainable_token_indices", []int{3, 4}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field trainable_token_indices"}},
		{name: "use_qalora", config: set("use_qalora", true), target: ErrUnsupported, file: ConfigFile, parts: []string{"field use_qalora"}},
		{name: "alora", config: set("alora_invocation_tokens", []int{7}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field alora_invocation_tokens"}},
		{name: "arrow", config: set("arrow_config", map[string]any{"top_k": 2}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field arrow_config"}},
		{name: "bdlora", config: set("use_bdlora", map[string]any{"nblocks": 2}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field use_bdlora"}},
		{name: "pissa", config: set("init_lora_weights", "pissa_niter_4"), target: ErrUnsupported, file: ConfigFile, parts: []string{"field init_lora_weights", "pissa_niter_4"}},
		{name: "olora", config: set("init_lora_weights", "olora"), target: ErrUnsupported, file: ConfigFile, parts: []string{"field init_lora_weights"}},
		{name: "loftq", config: set("init_lora_weights", "loftq"), target: ErrUnsupported, file: ConfigFile, parts: []string{"field init_lora_weights"}},
		{name: "corda", config: set("init_lora_weights", "corda"), target: ErrUnsupported, file: ConfigFile, parts: []string{"field init_lora_weights"}},
		{name: "target regex Go cannot compile", config: set("target_modules", `.*(?=q_proj)`), target: ErrUnsupported, file: ConfigFile, parts: []string{"field target_modules"}},
		{name: "rank_pattern key Go cannot compile", config: set("rank_pattern", map[string]any{`q(?!x)`: 4}), target: ErrUnsupported, file: ConfigFile, parts: []string{"field rank_pattern", `q(?!x)`}},
		{name: "r not a number", config: set("r", "8"), target: ErrInvalid, file: ConfigFile, parts: []string{"field r", "want a number"}},
		{name: "r zero", config: set("r", 0), target: ErrInvalid, file: ConfigFile, parts: []string{"field r", "positive integer"}},
		{name: "r fractional", config: set("r", 8.5), target: ErrInvalid, file: ConfigFile, parts: []string{"field r", "8.5"}},
		{name: "lora_alpha", config: set("lora_alpha", "16"), target: ErrInvalid, file: ConfigFile, parts: []string{"field lora_alpha"}},
		{name: "use_rslora", config: set("use_rslora", "yes"), target: ErrInvalid, file: ConfigFile, parts: []string{"field use_rslora"}},
		{name: "rank_pattern not an object", config: set("rank_pattern", []int{1}), target: ErrInvalid, file: ConfigFile, parts: []string{"field rank_pattern"}},
		{name: "alpha_pattern value", config: set("alpha_pattern", map[string]any{"q_proj": "x"}), target: ErrInvalid, file: ConfigFile, parts: []string{"field alpha_pattern", `"q_proj"`}},
		{name: "target_modules missing", config: del("target_modules"), target: ErrInvalid, file: ConfigFile, parts: []string{"field target_modules", "missing"}},
		{name: "target_modules number", config: set("target_modules", 5), target: ErrInvalid, file: ConfigFile, parts: []string{"field target_modules"}},
		{name: "module not targeted", config: set("target_modules", []string{"q_proj", "k_proj", "v_proj", "o_proj"}), target: ErrInvalid, file: WeightsFile,
			parts: []string{`"model.layers.0.mlp.down_proj"`, "target_modules", ConfigFile}},
		{name: "module excluded", config: set("exclude_modules", []string{"layers.2.mlp.up_proj"}), target: ErrInvalid, file: WeightsFile,
			parts: []string{`"model.layers.2.mlp.up_proj"`, "exclude_modules"}},
		{name: "module outside target regex", config: set("target_modules", `.*\.layers\.[0-2]\..*`), target: ErrInvalid, file: WeightsFile,
			parts: []string{`"model.layers.3.mlp.down_proj"`, "target_modules"}},
		{name: "r disagrees with tensors", config: set("r", 4), target: ErrShapeMismatch, file: WeightsFile,
			parts: []string{`"base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"`, "rank 8", "r = 4", ConfigFile}},
		{name: "rank_pattern disagrees with tensors", config: set("rank_pattern", map[string]any{"q_proj": 4}), target: ErrShapeMismatch, file: WeightsFile,
			parts: []string{`"` + qA + `"`, "rank 8", `rank_pattern["q_proj"] = 4`}},
		{name: "config not JSON", files: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"peft_type": "LORA",`), 0o644)
		}, target: ErrInvalid, file: ConfigFile, parts: []string{"not valid JSON"}},
		{name: "config an array", files: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`["LORA"]`), 0o644)
		}, target: ErrInvalid, file: ConfigFile, parts: []string{"want a JSON object"}},

		// Weight keys, shapes and values.
		{name: "embedding LoRA", weights: func(ts map[string]safetensors.Tensor) {
			k := "base_model.model.model.embed_tokens.lora_embedding_A"
			ts[k] = safetensors.Tensor{DType: safetensors.F32, Shape: []int{8, 259}, Data: make([]float32, 8*259)}
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{`"base_model.model.model.embed_tokens.lora_embedding_A"`, "embedding"}},
		{name: "DoRA magnitude", weights: func(ts map[string]safetensors.Tensor) {
			k := "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"
			ts[k] = safetensors.Tensor{DType: safetensors.F32, Shape: []int{128}, Data: make([]float32, 128)}
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{`"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"`, "DoRA"}},
		{name: "lora bias", weights: func(ts map[string]safetensors.Tensor) {
			k := "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias"
			ts[k] = safetensors.Tensor{DType: safetensors.F32, Shape: []int{128}, Data: make([]float32, 128)}
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{`"base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias"`, "bias"}},
		{name: "modules_to_save weight", weights: func(ts map[string]safetensors.Tensor) {
			k := "base_model.model.lm_head.modules_to_save.default.weight"
			ts[k] = safetensors.Tensor{DType: safetensors.F32, Shape: []int{259, 128}, Data: make([]float32, 259*128)}
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{`"base_model.model.lm_head.modules_to_save.default.weight"`, "not a lora_A/lora_B weight"}},
		{name: "key without prefix", weights: func(ts map[string]safetensors.Tensor) {
			ts["model.layers.0.self_attn.q_proj.lora_A.weight"] = ts[qA]
			delete(ts, qA)
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{`"model.layers.0.self_attn.q_proj.lora_A.weight"`, "base_model.model."}},
		{name: "conv LoRA", weights: func(ts map[string]safetensors.Tensor) {
			x := ts[qA]
			x.Shape = []int{8, 128, 1}
			ts[qA] = x
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{`"` + qA + `"`, "[8 128 1]", "linear"}},
		{name: "lora_B missing", weights: func(ts map[string]safetensors.Tensor) { delete(ts, qB) },
			target: ErrInvalid, file: WeightsFile, parts: []string{`"` + qA + `"`, "no matching lora_B"}},
		{name: "lora_A missing", weights: func(ts map[string]safetensors.Tensor) { delete(ts, qA) },
			target: ErrInvalid, file: WeightsFile, parts: []string{`"` + qB + `"`, "no matching lora_A"}},
		{name: "ranks of A and B differ", weights: func(ts map[string]safetensors.Tensor) {
			ts[qB] = safetensors.Tensor{DType: safetensors.F32, Shape: []int{128, 4}, Data: make([]float32, 128*4)}
		}, target: ErrShapeMismatch, file: WeightsFile, parts: []string{`"` + qA + `"`, `"` + qB + `"`, "[8 128]", "[128 4]"}},
		{name: "F64 factor", weights: func(ts map[string]safetensors.Tensor) {
			x := ts[qA]
			x.DType = safetensors.F64
			ts[qA] = x
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{`"` + qA + `"`, "F64"}},
		{name: "NaN", weights: func(ts map[string]safetensors.Tensor) {
			ts[qB].Data[37] = float32(math.NaN())
		}, target: ErrInvalid, file: WeightsFile, parts: []string{`"` + qB + `"`, "NaN", "index 37"}},
		{name: "Inf", weights: func(ts map[string]safetensors.Tensor) {
			ts[qA].Data[1000] = float32(math.Inf(-1))
		}, target: ErrInvalid, file: WeightsFile, parts: []string{`"` + qA + `"`, "-Inf", "index 1000"}},
		{name: "two adapter names", weights: func(ts map[string]safetensors.Tensor) {
			for k, v := range ts {
				delete(ts, k)
				name := "default"
				if strings.Contains(k, "layers.3.") {
					name = "other"
				}
				k = strings.Replace(k, ".lora_A.weight", ".lora_A."+name+".weight", 1)
				k = strings.Replace(k, ".lora_B.weight", ".lora_B."+name+".weight", 1)
				ts[k] = v
			}
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{"several adapters", ".lora_A.default.weight", ".other.weight"}},
		{name: "no tensors", weights: func(ts map[string]safetensors.Tensor) { clear(ts) },
			target: ErrInvalid, file: WeightsFile, parts: []string{"no LoRA tensors"}},

		// Files.
		{name: "pickle weights", files: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, WeightsFile))
			os.WriteFile(filepath.Join(dir, "adapter_model.bin"), []byte("PK"), 0o644)
		}, target: ErrUnsupported, file: "rev", parts: []string{"adapter_model.bin"}},
		{name: "weights missing", files: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, WeightsFile)) },
			target: os.ErrNotExist, file: WeightsFile},
		{name: "config missing", files: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ConfigFile)) },
			target: os.ErrNotExist, file: ConfigFile},
		{name: "truncated weights", files: func(t *testing.T, dir string) {
			p := filepath.Join(dir, WeightsFile)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)/2], 0o644)
		}, target: ErrInvalid, file: WeightsFile},
		{name: "integer dtype", files: func(t *testing.T, dir string) {
			writeRaw(t, filepath.Join(dir, WeightsFile), []rawTensor{
				{qA, "I8", []int{8, 128}, make([]byte, 8*128)},
				{qB, "F32", []int{128, 8}, f32Bytes(make([]float32, 128*8))},
			})
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{`"` + qA + `"`, "I8"}},
		{name: "unknown dtype", files: func(t *testing.T, dir string) {
			writeRaw(t, filepath.Join(dir, WeightsFile), []rawTensor{{qA, "F12", []int{8, 128}, make([]byte, 8*128)}})
		}, target: ErrUnsupported, file: WeightsFile, parts: []string{"F12"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyAdapter(t, adapterDir("rev"))
			if tc.config != nil {
				editConfig(t, dir, tc.config)
			}
			if tc.weights != nil {
				editWeights(t, dir, tc.weights)
			}
			if tc.files != nil {
				tc.files(t, dir)
			}
			a, err := Load(dir)
			if a != nil {
				t.Fatalf("Load returned an adapter with error %v", err)
			}
			file := tc.file
			if file == ConfigFile || file == WeightsFile {
				file = filepath.Join(dir, file)
			}
			wantErr(t, err, tc.target, append([]string{file}, tc.parts...)...)
			t.Log(err)
		})
	}
}

// TestTolerated loads variants that must be accepted: adapter-named keys,
// half-precision factors, explicit nulls and empty containers.
func TestTolerated(t *testing.T) {
	orig := loadT(t, adapterDir("upc"))
	tests := []struct {
		name    string
		config  func(map[string]any)
		weights func(map[string]safetensors.Tensor)
		// round is applied to the original factors to give the expected ones.
		round func(float32) float32
	}{
		{name: "adapter-named keys", weights: func(ts map[string]safetensors.Tensor) {
			for k, v := range ts {
				delete(ts, k)
				k = strings.Replace(k, ".lora_A.weight", ".lora_A.default.weight", 1)
				k = strings.Replace(k, ".lora_B.weight", ".lora_B.default.weight", 1)
				ts[k] = v
			}
		}},
		{name: "F16", weights: func(ts map[string]safetensors.Tensor) {
			for k, v := range ts {
				v.DType = safetensors.F16
				ts[k] = v
			}
		}, round: func(v float32) float32 { return safetensors.Float16ToFloat32(safetensors.Float32ToFloat16(v)) }},
		{name: "BF16", weights: func(ts map[string]safetensors.Tensor) {
			for k, v := range ts {
				v.DType = safetensors.BF16
				ts[k] = v
			}
		}, round: func(v float32) float32 { return safetensors.BFloat16ToFloat32(safetensors.Float32ToBFloat16(v)) }},
		{name: "nulls and empties", config: func(m map[string]any) {
			m["modules_to_save"] = []any{}
			m["layers_to_transform"] = nil
			m["rank_pattern"] = nil
			m["alpha_pattern"] = map[string]any{}
			m["bias"] = nil
			m["use_dora"] = nil
			m["init_lora_weights"] = "gaussian"
			m["arrow_config"] = map[string]any{}
			m["use_bdlora"] = false
			m["unknown_future_field"] = map[string]any{"x": []any{1, "y"}}
		}},
		{name: "target_modules all-linear", config: func(m map[string]any) { m["target_modules"] = "all-linear" }},
		{name: "target_modules regex", config: func(m map[string]any) { m["target_modules"] = `.*\.(self_attn|mlp)\.[a-z_]+_proj` }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyAdapter(t, adapterDir("upc"))
			if tc.config != nil {
				editConfig(t, dir, tc.config)
			}
			if tc.weights != nil {
				editWeights(t, dir, tc.weights)
			}
			a := loadT(t, dir)
			if !reflect.DeepEqual(a.Names(), orig.Names()) {
				t.Fatalf("names differ")
			}
			for _, n := range a.Names() {
				got, want := a.Modules[n], orig.Modules[n]
				if got.Scale != 2 || got.R != 8 {
					t.Fatalf("%s: scale %v r %d", n, got.Scale, got.R)
				}
				for _, f := range []struct{ g, w []float32 }{{got.A, want.A}, {got.B, want.B}} {
					for i := range f.w {
						w := f.w[i]
						if tc.round != nil {
							w = tc.round(w)
						}
						if f.g[i] != w {
							t.Fatalf("%s[%d] = %v, want %v", n, i, f.g[i], w)
						}
					}
				}
			}
		})
	}
}

// TestHasNaN checks the message of HasNaN on factors changed in memory.
func TestHasNaN(t *testing.T) {
	a := loadT(t, adapterDir("nxt"))
	m := a.Modules["model.layers.2.self_attn.o_proj"]
	m.B[5] = float32(math.Inf(1))
	wantErr(t, a.HasNaN(), ErrInvalid, filepath.Join(adapterDir("nxt"), WeightsFile),
		`"base_model.model.model.layers.2.self_attn.o_proj.lora_B.weight"`, "+Inf", "index 5")
	m.B[5] = 0
	if err := a.HasNaN(); err != nil {
		t.Fatal(err)
	}
}
