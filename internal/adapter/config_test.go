package adapter

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// parseT parses a config given as JSON text.
func parseT(t *testing.T, text string) Config {
	t.Helper()
	c, err := parseConfig([]byte(text), "test.json")
	if err != nil {
		t.Fatalf("parseConfig(%s): %v", text, err)
	}
	return c
}

// TestPatterns checks rank_pattern / alpha_pattern resolution against PEFT's
// get_pattern_key: keys tried in file order, the first matching
// re.match(rf"(.*\.)?({key})$", name) wins, else r / lora_alpha; and the
// resulting scale with and without rsLoRA.
func TestPatterns(t *testing.T) {
	const (
		q1  = "model.layers.1.self_attn.q_proj"
		q11 = "model.layers.11.self_attn.q_proj"
		q0  = "model.layers.0.self_attn.q_proj"
		k1  = "model.layers.1.self_attn.k_proj"
		up1 = "model.layers.1.mlp.up_proj"
	)
	type want struct {
		name  string
		r     int
		alpha float64
		scale float64
	}
	tests := []struct {
		name   string
		config string
		want   []want
	}{
		{
			name:   "defaults",
			config: `{"r": 8, "lora_alpha": 16}`,
			want:   []want{{q1, 8, 16, 2}, {up1, 8, 16, 2}},
		},
		{
			name:   "PEFT defaults when r and lora_alpha are absent",
			config: `{}`,
			want:   []want{{q1, 8, 8, 1}},
		},
		{
			name:   "leaf key selects every layer",
			config: `{"r": 8, "lora_alpha": 16, "rank_pattern": {"q_proj": 4}, "alpha_pattern": {"q_proj": 2}}`,
			want:   []want{{q1, 4, 2, 0.5}, {q11, 4, 2, 0.5}, {k1, 8, 16, 2}},
		},
		{
			name:   "layers.1 does not select layers.11",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"layers.1.self_attn.q_proj": 16}, "alpha_pattern": {"model.layers.1.self_attn.q_proj": 64}}`,
			want:   []want{{q1, 16, 64, 4}, {q11, 8, 8, 1}, {q0, 8, 8, 1}, {k1, 8, 8, 1}},
		},
		{
			name:   "full module name is exact",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"model.layers.11.self_attn.q_proj": 2}}`,
			want:   []want{{q11, 2, 8, 4}, {q1, 8, 8, 1}},
		},
		{
			name:   "key must end at a dot boundary",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"_proj": 2, "proj": 3, "elf_attn.q_proj": 5}}`,
			want:   []want{{q1, 8, 8, 1}, {up1, 8, 8, 1}},
		},
		{
			name:   "key must reach the end of the name",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"layers.1": 2, "self_attn": 3}}`,
			want:   []want{{q1, 8, 8, 1}},
		},
		{
			name:   "first key in file order wins (general first)",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"q_proj": 4, "layers.1.self_attn.q_proj": 16}}`,
			want:   []want{{q1, 4, 8, 2}, {q11, 4, 8, 2}},
		},
		{
			name:   "first key in file order wins (specific first)",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"layers.1.self_attn.q_proj": 16, "q_proj": 4}}`,
			want:   []want{{q1, 16, 8, 0.5}, {q11, 4, 8, 2}},
		},
		{
			name:   "repeated key keeps its first place and last value",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"q_proj": 4, "layers.1.self_attn.q_proj": 16, "q_proj": 2}}`,
			want:   []want{{q1, 2, 8, 4}},
		},
		{
			name:   "regular expression keys",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"layers\\.(0|1)\\.self_attn\\.[qk]_proj": 4, "mlp\\..*": 2}}`,
			want:   []want{{q0, 4, 8, 2}, {q1, 4, 8, 2}, {k1, 4, 8, 2}, {q11, 8, 8, 1}, {up1, 2, 8, 4}},
		},
		{
			name:   "dot in a key is a regular expression wildcard, as in PEFT",
			config: `{"r": 8, "lora_alpha": 8, "rank_pattern": {"self_attn.q.proj": 4}}`,
			want:   []want{{q1, 4, 8, 2}},
		},
		{
			name:   "rsLoRA",
			config: `{"r": 16, "lora_alpha": 8, "use_rslora": true, "rank_pattern": {"q_proj": 4}, "alpha_pattern": {"k_proj": 2}}`,
			want:   []want{{up1, 16, 8, 2}, {q1, 4, 8, 4}, {k1, 16, 2, 0.5}},
		},
		{
			name:   "fractional alpha",
			config: `{"r": 4, "lora_alpha": 1.5}`,
			want:   []want{{q1, 4, 1.5, 0.375}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(tc.config), &m); err != nil {
				t.Fatal(err)
			}
			text := tc.config[:len(tc.config)-1]
			if len(m) > 0 {
				text += ","
			}
			text += `"peft_type": "LORA", "target_modules": ["q_proj"]}`
			c := parseT(t, text)
			for _, w := range tc.want {
				if r, a, s := c.RankFor(w.name), c.AlphaFor(w.name), c.ScaleFor(w.name); r != w.r || a != w.alpha || s != w.scale {
					t.Errorf("%s: r %d alpha %v scale %v, want %d %v %v", w.name, r, a, s, w.r, w.alpha, w.scale)
				}
			}
		})
	}
}

// TestTargets checks target_modules and exclude_modules matching.
func TestTargets(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		selected []string
		not      []string
	}{
		{
			name:     "list is a suffix match at a dot",
			config:   `"target_modules": ["q_proj", "mlp.down_proj"]`,
			selected: []string{"q_proj", "model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj"},
			not:      []string{"model.layers.0.self_attn.xq_proj", "model.layers.0.self_attn.q_proj.base", "model.layers.0.block_mlp.down_proj"},
		},
		{
			name:     "string is a full regular-expression match",
			config:   `"target_modules": ".*layers\\.[01]\\..*_proj"`,
			selected: []string{"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj"},
			not:      []string{"model.layers.11.mlp.up_proj", "model.layers.0.self_attn.q_proj.lora"},
		},
		{
			name:     "alternation is grouped before anchoring",
			config:   `"target_modules": "model\\.layers\\.0\\.self_attn\\.q_proj|model\\.layers\\.1\\.mlp\\.up_proj"`,
			selected: []string{"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj"},
			not:      []string{"model.layers.0.self_attn.q_proj_x", "x.model.layers.1.mlp.up_proj"},
		},
		{
			name:     "all-linear",
			config:   `"target_modules": "all-linear"`,
			selected: []string{"model.layers.0.self_attn.q_proj", "anything"},
		},
		{
			name:     "exclude list",
			config:   `"target_modules": ["q_proj"], "exclude_modules": ["layers.1.self_attn.q_proj"]`,
			selected: []string{"model.layers.11.self_attn.q_proj", "model.layers.0.self_attn.q_proj"},
			not:      []string{"model.layers.1.self_attn.q_proj"},
		},
		{
			name:     "exclude regex",
			config:   `"target_modules": ["q_proj"], "exclude_modules": ".*\\.1\\..*"`,
			selected: []string{"model.layers.11.self_attn.q_proj"},
			not:      []string{"model.layers.1.self_attn.q_proj"},
		},
		{
			name:   "empty list targets nothing",
			config: `"target_modules": []`,
			not:    []string{"model.layers.0.self_attn.q_proj"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := parseT(t, `{"peft_type": "LORA", `+tc.config+`}`)
			for _, n := range tc.selected {
				if !c.Targets(n) {
					t.Errorf("%q not targeted", n)
				}
			}
			for _, n := range tc.not {
				if c.Targets(n) {
					t.Errorf("%q targeted", n)
				}
			}
		})
	}
}

// TestHandBuiltConfig checks that a Config built or changed in code resolves
// patterns too (sorted key order, since a map has none).
func TestHandBuiltConfig(t *testing.T) {
	c := Config{R: 8, LoraAlpha: 8, RankPattern: map[string]int{"layers.1.self_attn.q_proj": 4}, TargetModulesRegex: `.*q_proj`}
	if c.RankFor("model.layers.1.self_attn.q_proj") != 4 || c.RankFor("model.layers.11.self_attn.q_proj") != 8 || !c.Targets("a.q_proj") {
		t.Fatal("hand-built config resolves wrongly")
	}
	p := parseT(t, `{"peft_type": "LORA", "target_modules": ["q_proj"], "rank_pattern": {"q_proj": 2}}`)
	p.RankPattern = map[string]int{"k_proj": 3}
	if p.RankFor("a.k_proj") != 3 || p.RankFor("a.q_proj") != 8 {
		t.Fatalf("changed config resolves k %d q %d", p.RankFor("a.k_proj"), p.RankFor("a.q_proj"))
	}
	if !reflect.DeepEqual(p.RankPatternKeys, []string{"q_proj"}) {
		t.Fatalf("keys %v", p.RankPatternKeys)
	}
}

// TestLoadPatterns loads adapters whose ranks vary per module: the
// rank_pattern of the config must agree with the tensors, and the scales
// follow alpha_pattern and rsLoRA.
func TestLoadPatterns(t *testing.T) {
	names := []string{
		"model.layers.1.self_attn.q_proj",
		"model.layers.11.self_attn.q_proj",
		"model.layers.11.mlp.down_proj",
	}
	ranks := []int{4, 8, 2}
	base := shapeMap{names[0]: {16, 12}, names[1]: {16, 12}, names[2]: {12, 20}}
	tests := []struct {
		name   string
		config map[string]any
		scales []float64
		err    error
		parts  []string
	}{
		{
			name: "anchored full names",
			config: map[string]any{"r": 8, "lora_alpha": 16,
				"rank_pattern":  map[string]any{"model.layers.1.self_attn.q_proj": 4, "down_proj": 2},
				"alpha_pattern": map[string]any{"layers.11.mlp.down_proj": 1}},
			scales: []float64{4, 2, 0.5},
		},
		{
			name: "rsLoRA",
			config: map[string]any{"r": 8, "lora_alpha": 16, "use_rslora": true,
				"rank_pattern": map[string]any{"layers.1.self_attn.q_proj": 4, "down_proj": 2}},
			scales: []float64{8, 16 / math.Sqrt(8), 16 / math.Sqrt(2)},
		},
		{
			name:   "a leaf pattern would give layers.11 rank 4",
			config: map[string]any{"r": 8, "lora_alpha": 16, "rank_pattern": map[string]any{"q_proj": 4, "down_proj": 2}},
			err:    ErrShapeMismatch,
			parts:  []string{`"base_model.model.model.layers.11.self_attn.q_proj.lora_A.weight" has rank 8`, `rank_pattern["q_proj"] = 4`},
		},
		{
			name:   "without rank_pattern",
			config: map[string]any{"r": 8, "lora_alpha": 16},
			err:    ErrShapeMismatch,
			parts:  []string{`"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight" has rank 4`, "r = 8"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mods []*Module
			for i, n := range names {
				out, in, _ := base.LinearShape(n)
				mods = append(mods, randModule(n, ranks[i], in, out, uint32(i+1)))
			}
			dir := filepath.Join(t.TempDir(), "a")
			if err := Write(dir, mods, WriteOptions{Base: base}); err != nil {
				t.Fatal(err)
			}
			tc.config["peft_type"] = "LORA"
			tc.config["target_modules"] = []string{"q_proj", "down_proj"}
			data, _ := json.Marshal(tc.config)
			if err := os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := Load(dir)
			if tc.err != nil {
				wantErr(t, err, tc.err, tc.parts...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Validate(base); err != nil {
				t.Fatal(err)
			}
			for i, n := range names {
				if m := a.Modules[n]; m.R != ranks[i] || math.Abs(m.Scale-tc.scales[i]) > 1e-15 {
					t.Errorf("%s: r %d scale %v, want %d %v", n, m.R, m.Scale, ranks[i], tc.scales[i])
				}
			}
		})
	}
}

// FuzzConfig feeds arbitrary bytes to parseConfig: it must never panic,
// every error must wrap ErrInvalid or ErrUnsupported, and an accepted
// config must resolve ranks, alphas and targets without panicking.
func FuzzConfig(f *testing.F) {
	for _, dir := range append(fixtureAdapters, fixtureMerges...) {
		for _, p := range []string{adapterDir(dir), mergeDir(dir)} {
			if data, err := os.ReadFile(filepath.Join(p, ConfigFile)); err == nil {
				f.Add(data)
			}
		}
	}
	for _, s := range []string{
		`{}`, `[]`, `null`, `{"peft_type":"LORA"}`, `{"peft_type":"LORA","target_modules":"all-linear"}`,
		`{"peft_type":"LORA","target_modules":["q_proj"],"rank_pattern":{"q_proj":4,"(a|b)+":2},"alpha_pattern":{"x":1e308}}`,
		`{"peft_type":"LORA","target_modules":".*","r":1e400}`, `{"peft_type":"LORA","r":-1}`,
		`{"peft_type":"LORA","target_modules":["q"],"use_rslora":true,"r":3,"lora_alpha":-2.5}`,
		`{"peft_type":"LORA","target_modules":"(","exclude_modules":")"}`, `{"a":1}{"b":2}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data, "fuzz.json")
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v wraps neither ErrInvalid nor ErrUnsupported", err)
			}
			return
		}
		if c.R < 1 || c.PeftType != "LORA" || math.IsNaN(c.LoraAlpha) || math.IsInf(c.LoraAlpha, 0) {
			t.Fatalf("accepted config with r %d alpha %v type %q", c.R, c.LoraAlpha, c.PeftType)
		}
		for _, n := range []string{"model.layers.0.self_attn.q_proj", "q_proj", "", "a.b.c"} {
			if c.RankFor(n) < 1 {
				t.Fatalf("rank %d for %q", c.RankFor(n), n)
			}
			_ = c.AlphaFor(n)
			_ = c.ScaleFor(n)
			_ = c.Targets(n)
		}
	})
}
