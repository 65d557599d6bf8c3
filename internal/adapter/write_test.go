package adapter

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// readConfigJSON decodes the adapter_config.json written into dir.
func readConfigJSON(t *testing.T, dir string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// listDir returns the sorted entry names of dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// modules returns an adapter's modules in sorted order.
func modules(a *Adapter) []*Module {
	var mods []*Module
	for _, n := range a.Names() {
		mods = append(mods, a.Modules[n])
	}
	return mods
}

// TestWriteRoundTrip writes trained adapters (scale 2, folded into lora_B)
// and PEFT merges (scale 1) and reads them back: A is unchanged, B is
// Scale*B, and the effective updates are bit-identical.
func TestWriteRoundTrip(t *testing.T) {
	base := modelShapes(t)
	for _, src := range []string{adapterDir("rev"), adapterDir("srt"), mergeDir("svd_mean"), mergeDir("cat_sum")} {
		t.Run(filepath.Base(src), func(t *testing.T) {
			orig := loadT(t, src)
			dir := filepath.Join(t.TempDir(), "out")
			opt := WriteOptions{
				BaseModel: "testdata/tiny-skills/model", Base: base,
				Metadata: map[string]string{"iteris": "test"},
				Files:    map[string][]byte{"README.md": []byte("# merged\n")},
			}
			if err := Write(dir, modules(orig), opt); err != nil {
				t.Fatal(err)
			}
			if got, want := listDir(t, dir), []string{"README.md", ConfigFile, WeightsFile}; !reflect.DeepEqual(got, want) {
				t.Fatalf("files %v, want %v", got, want)
			}
			if got := listDir(t, filepath.Dir(dir)); !reflect.DeepEqual(got, []string{"out"}) {
				t.Fatalf("parent holds %v, want only out", got)
			}
			back := loadT(t, dir)
			if err := back.Validate(base); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Names(), orig.Names()) {
				t.Fatal("module names differ")
			}
			for _, n := range orig.Names() {
				o, b := orig.Modules[n], back.Modules[n]
				if b.Scale != 1 || b.Alpha != float64(o.R) || b.R != o.R || b.In != o.In || b.Out != o.Out {
					t.Fatalf("%s: r %d alpha %v scale %v", n, b.R, b.Alpha, b.Scale)
				}
				if !reflect.DeepEqual(b.A, o.A) {
					t.Fatalf("%s: lora_A changed", n)
				}
				for i := range o.B {
					if want := float32(o.Scale * float64(o.B[i])); b.B[i] != want {
						t.Fatalf("%s: lora_B[%d] = %v, want %v", n, i, b.B[i], want)
					}
				}
				if !reflect.DeepEqual(back.Delta(n), orig.Delta(n)) {
					t.Fatalf("%s: effective update changed", n)
				}
			}
			cfg := readConfigJSON(t, dir)
			r := float64(orig.Modules[orig.Names()[0]].R)
			want := map[string]any{
				"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": r,
				"use_rslora": false, "use_dora": false, "bias": "none", "fan_in_fan_out": false, "lora_bias": false,
				"inference_mode": true, "base_model_name_or_path": "testdata/tiny-skills/model",
				"rank_pattern": map[string]any{}, "alpha_pattern": map[string]any{}, "modules_to_save": nil,
				"target_modules": []any{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"},
			}
			for k, v := range want {
				if !reflect.DeepEqual(cfg[k], v) {
					t.Errorf("config %s = %#v, want %#v", k, cfg[k], v)
				}
			}
			f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.Metadata(); !reflect.DeepEqual(got, map[string]string{"format": "pt", "iteris": "test"}) {
				t.Fatalf("metadata %v", got)
			}
			if got := len(f.Names()); got != 56 {
				t.Fatalf("%d tensors, want 56", got)
			}
		})
	}
}

// TestWriteDTypes writes F16 and BF16 factors: what is read back is the
// folded factor rounded to the dtype.
func TestWriteDTypes(t *testing.T) {
	orig := loadT(t, adapterDir("nxt"))
	for _, tc := range []struct {
		dt    safetensors.DType
		round func(float32) float32
	}{
		{safetensors.F16, func(v float32) float32 { return safetensors.Float16ToFloat32(safetensors.Float32ToFloat16(v)) }},
		{safetensors.BF16, func(v float32) float32 { return safetensors.BFloat16ToFloat32(safetensors.Float32ToBFloat16(v)) }},
		{safetensors.F32, func(v float32) float32 { return v }},
	} {
		t.Run(string(tc.dt), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			if err := Write(dir, modules(orig), WriteOptions{DType: tc.dt, Base: modelShapes(t)}); err != nil {
				t.Fatal(err)
			}
			back := loadT(t, dir)
			f, _ := safetensors.Open(filepath.Join(dir, WeightsFile))
			info, _ := f.Info("base_model.model.model.layers.0.mlp.up_proj.lora_B.weight")
			f.Close()
			if info.DType != tc.dt {
				t.Fatalf("stored dtype %s, want %s", info.DType, tc.dt)
			}
			worst := 0.0
			for _, n := range orig.Names() {
				o, b := orig.Modules[n], back.Modules[n]
				for i := range o.A {
					if want := tc.round(o.A[i]); b.A[i] != want {
						t.Fatalf("%s A[%d] = %v, want %v", n, i, b.A[i], want)
					}
				}
				for i := range o.B {
					if want := tc.round(float32(2 * float64(o.B[i]))); b.B[i] != want {
						t.Fatalf("%s B[%d] = %v, want %v", n, i, b.B[i], want)
					}
				}
				worst = math.Max(worst, relFrob(back.Delta(n), orig.Delta(n)))
			}
			t.Logf("%s: worst relative error of the effective update %.3g", tc.dt, worst)
		})
	}
}

// TestWriteTargetForms checks the target_modules form: the leaf list when it
// selects exactly the written modules of the base, else an exact regular
// expression.
func TestWriteTargetForms(t *testing.T) {
	base := modelShapes(t)
	pick := func(filter func(string) bool) []*Module {
		var mods []*Module
		for i, n := range base.LinearNames() {
			if filter(n) {
				out, in, _ := base.LinearShape(n)
				mods = append(mods, randModule(n, 4, in, out, uint32(i+7)))
			}
		}
		return mods
	}
	layer := func(n string) int {
		var l int
		fmt.Sscanf(n, "model.layers.%d.", &l)
		return l
	}
	tests := []struct {
		name string
		mods []*Module
		base Shapes
		want any
	}{
		{
			name: "all q and k projections",
			mods: pick(func(n string) bool { return leaf(n) == "q_proj" || leaf(n) == "k_proj" }),
			base: base,
			want: []any{"k_proj", "q_proj"},
		},
		{
			name: "q_proj of layers 0-2 only",
			mods: pick(func(n string) bool { return leaf(n) == "q_proj" && layer(n) < 3 }),
			base: base,
			want: `model\.layers\.0\.self_attn\.q_proj|model\.layers\.1\.self_attn\.q_proj|model\.layers\.2\.self_attn\.q_proj`,
		},
		{
			name: "no base to check against",
			mods: pick(func(n string) bool { return leaf(n) == "v_proj" && layer(n) == 3 }),
			want: `model\.layers\.3\.self_attn\.v_proj`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			if err := Write(dir, tc.mods, WriteOptions{Base: tc.base}); err != nil {
				t.Fatal(err)
			}
			if got := readConfigJSON(t, dir)["target_modules"]; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("target_modules %#v, want %#v", got, tc.want)
			}
			a := loadT(t, dir)
			covered := map[string]bool{}
			for _, m := range tc.mods {
				covered[m.Name] = true
			}
			for _, n := range base.LinearNames() {
				if a.Config.Targets(n) != covered[n] {
					t.Errorf("%s: targeted %v, covered %v", n, a.Config.Targets(n), covered[n])
				}
			}
		})
	}
}

// TestWriteMixedRanks checks r (most common rank), rank_pattern and
// alpha_pattern keyed by full module names (layers.1 must not catch
// layers.11), and quoting when a name is not a literal regular expression.
func TestWriteMixedRanks(t *testing.T) {
	q := func(l int) string { return fmt.Sprintf("model.layers.%d.self_attn.q_proj", l) }
	tests := []struct {
		name  string
		names []string
		ranks []int
		wantR float64
		// wantPattern is the expected rank_pattern (= alpha_pattern).
		wantPattern map[string]any
	}{
		{
			name:        "layers.1 and layers.11 differ",
			names:       []string{q(0), q(1), q(2), q(10), q(11), q(12)},
			ranks:       []int{8, 4, 8, 8, 16, 8},
			wantR:       8,
			wantPattern: map[string]any{q(1): 4.0, q(11): 16.0},
		},
		{
			name:        "tie takes the smaller rank",
			names:       []string{q(0), q(1), q(2), q(3)},
			ranks:       []int{8, 4, 4, 8},
			wantR:       4,
			wantPattern: map[string]any{q(0): 8.0, q(3): 8.0},
		},
		{
			name:        "names that are not literal patterns are quoted",
			names:       []string{"h.x+y", "h.xxy", "h.xy"},
			ranks:       []int{4, 8, 8},
			wantR:       8,
			wantPattern: map[string]any{`h\.x\+y`: 4.0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := shapeMap{}
			var mods []*Module
			for i, n := range tc.names {
				base[n] = [2]int{24, 20}
				m := randModule(n, tc.ranks[i], 20, 24, uint32(3*i+1))
				m.Scale = 0.5 + float64(i)
				mods = append(mods, m)
			}
			dir := filepath.Join(t.TempDir(), "out")
			if err := Write(dir, mods, WriteOptions{Base: base}); err != nil {
				t.Fatal(err)
			}
			cfg := readConfigJSON(t, dir)
			if cfg["r"] != tc.wantR || cfg["lora_alpha"] != tc.wantR {
				t.Fatalf("r %v lora_alpha %v, want %v", cfg["r"], cfg["lora_alpha"], tc.wantR)
			}
			if !reflect.DeepEqual(cfg["rank_pattern"], tc.wantPattern) || !reflect.DeepEqual(cfg["alpha_pattern"], tc.wantPattern) {
				t.Fatalf("rank_pattern %v alpha_pattern %v, want %v", cfg["rank_pattern"], cfg["alpha_pattern"], tc.wantPattern)
			}
			a := loadT(t, dir)
			for i, m := range mods {
				b := a.Modules[m.Name]
				if b.R != tc.ranks[i] || b.Scale != 1 {
					t.Fatalf("%s: r %d scale %v, want %d 1", m.Name, b.R, b.Scale, tc.ranks[i])
				}
				if e := relFrob(b.Delta(), m.Delta()); e > 1e-7 {
					t.Fatalf("%s: effective update off by %.3g", m.Name, e)
				}
			}
		})
	}
}

// TestWriteRefusals checks that bad input is refused before anything is
// written, with the sentinel and a message naming the module or tensor.
func TestWriteRefusals(t *testing.T) {
	base := shapeMap{"m.a": {6, 5}, "m.b": {6, 5}}
	good := func() *Module { return randModule("m.a", 2, 5, 6, 9) }
	with := func(edit func(m *Module)) []*Module {
		m := good()
		edit(m)
		return []*Module{m}
	}
	tests := []struct {
		name   string
		mods   []*Module
		opt    WriteOptions
		prep   func(t *testing.T, dir string)
		target error
		parts  []string
	}{
		{name: "no modules", target: ErrInvalid, parts: []string{"no modules"}},
		{name: "nil module", mods: []*Module{good(), nil}, target: ErrInvalid, parts: []string{"module 1 is nil"}},
		{name: "empty name", mods: with(func(m *Module) { m.Name = "" }), target: ErrInvalid, parts: []string{"empty module name"}},
		{name: "malformed name", mods: with(func(m *Module) { m.Name = "m..a" }), target: ErrInvalid, parts: []string{`"m..a"`}},
		{name: "LoRA key in name", mods: with(func(m *Module) { m.Name = "m.a.lora_A.x" }), target: ErrInvalid, parts: []string{`"m.a.lora_A.x"`}},
		{name: "duplicate", mods: []*Module{good(), good()}, target: ErrInvalid, parts: []string{`"m.a" given twice`}},
		{name: "zero rank", mods: with(func(m *Module) { m.R = 0 }), target: ErrShapeMismatch, parts: []string{`"m.a"`, "r 0"}},
		{name: "A length", mods: with(func(m *Module) { m.A = m.A[:9] }), target: ErrShapeMismatch, parts: []string{`"m.a"`, "A has 9 values"}},
		{name: "B length", mods: with(func(m *Module) { m.B = append(m.B, 1) }), target: ErrShapeMismatch, parts: []string{`"m.a"`, "B has 13"}},
		{name: "zero scale", mods: with(func(m *Module) { m.Scale = 0 }), target: ErrInvalid, parts: []string{`"m.a"`, "Scale 0"}},
		{name: "NaN scale", mods: with(func(m *Module) { m.Scale = math.NaN() }), target: ErrInvalid, parts: []string{`"m.a"`, "Scale NaN"}},
		{name: "NaN factor", mods: with(func(m *Module) { m.A[3] = float32(math.NaN()) }), target: ErrInvalid,
			parts: []string{`"base_model.model.m.a.lora_A.weight"`, "index 3"}},
		{name: "overflow after folding the scale", mods: with(func(m *Module) { m.B[4] = 3e38; m.Scale = 10 }), target: ErrInvalid,
			parts: []string{`"base_model.model.m.a.lora_B.weight"`, "+Inf", "index 4"}},
		{name: "beyond F16", mods: with(func(m *Module) { m.A[2] = 70000 }), opt: WriteOptions{DType: safetensors.F16}, target: ErrInvalid,
			parts: []string{`"base_model.model.m.a.lora_A.weight"`, "index 2", "F16"}},
		{name: "beyond BF16", mods: with(func(m *Module) { m.B[0] = math.MaxFloat32 }), opt: WriteOptions{DType: safetensors.BF16}, target: ErrInvalid,
			parts: []string{`"base_model.model.m.a.lora_B.weight"`, "index 0", "BF16"}},
		{name: "F64", mods: with(func(*Module) {}), opt: WriteOptions{DType: safetensors.F64}, target: ErrUnsupported, parts: []string{"F64"}},
		{name: "shape against base", mods: with(func(m *Module) { m.Name = "m.b"; m.In, m.A = 4, m.A[:8] }), opt: WriteOptions{Base: base},
			target: ErrShapeMismatch, parts: []string{`"m.b"`, "lora_A [2 4]", "[6 5]"}},
		{name: "module not in base", mods: with(func(m *Module) { m.Name = "m.c" }), opt: WriteOptions{Base: base},
			target: ErrUnknownModule, parts: []string{`"m.c"`}},
		{name: "extra file path", mods: with(func(*Module) {}), opt: WriteOptions{Files: map[string][]byte{"../x": nil}}, target: ErrInvalid, parts: []string{`"../x"`}},
		{name: "extra file clobbers config", mods: with(func(*Module) {}), opt: WriteOptions{Files: map[string][]byte{ConfigFile: nil}}, target: ErrInvalid, parts: []string{ConfigFile}},
		{name: "destination not empty", mods: with(func(*Module) {}), prep: func(t *testing.T, dir string) {
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("x"), 0o644)
		}, target: ErrNotEmpty, parts: []string{`"keep.txt"`}},
		{name: "destination is a file", mods: with(func(*Module) {}), prep: func(t *testing.T, dir string) {
			os.WriteFile(dir, []byte("x"), 0o644)
		}, target: ErrNotEmpty, parts: []string{"not a directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "out")
			if tc.prep != nil {
				tc.prep(t, dir)
			}
			before := listDir(t, parent)
			err := Write(dir, tc.mods, tc.opt)
			wantErr(t, err, tc.target, append([]string{dir}, tc.parts...)...)
			if after := listDir(t, parent); !reflect.DeepEqual(after, before) {
				t.Fatalf("parent holds %v after the error, had %v", after, before)
			}
			if tc.prep != nil && tc.target == ErrNotEmpty {
				if fi, _ := os.Stat(dir); fi.IsDir() {
					if got := listDir(t, dir); !reflect.DeepEqual(got, []string{"keep.txt"}) {
						t.Fatalf("destination changed: %v", got)
					}
				}
			}
		})
	}
}

// TestWriteEmptyDir writes into an existing empty directory.
func TestWriteEmptyDir(t *testing.T) {
	dir := t.TempDir()
	m := randModule("m.a", 3, 4, 5, 1)
	if err := Write(dir, []*Module{m}, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	a := loadT(t, dir)
	if got := a.Modules["m.a"]; !reflect.DeepEqual(got.A, m.A) || !reflect.DeepEqual(got.B, m.B) || got.Scale != 1 {
		t.Fatal("factors changed")
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
}

// TestWriteDirCleanup checks that a failure while filling the directory
// removes what was written: the directory too when Write created it, only
// the files when it existed (empty) before.
func TestWriteDirCleanup(t *testing.T) {
	boom := errors.New("boom")
	for _, existed := range []bool{false, true} {
		parent := t.TempDir()
		dir := filepath.Join(parent, "out")
		if existed {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		err := fillDir(dir, []string{WeightsFile, ConfigFile}, func() error {
			if err := os.WriteFile(filepath.Join(dir, WeightsFile), []byte("half"), 0o644); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("existed %v: err %v", existed, err)
		}
		want := []string(nil)
		if existed {
			want = []string{"out"}
			if got := listDir(t, dir); len(got) != 0 {
				t.Fatalf("the existing directory holds %v", got)
			}
		}
		if got := listDir(t, parent); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("existed %v: parent holds %v, want %v", existed, got, want)
		}
	}
}
