package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateFixtures(t *testing.T) {
	s, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// good.yaml's paths are relative to the repository root.
	if err := s.Resolve(filepath.Join("..", "..")).Validate(); err != nil {
		t.Fatalf("Validate(good.yaml from the repository root) = %v", err)
	}
	// From this directory they do not exist: every path is named.
	err = s.Validate()
	for i, key := range []string{"base_model", "adapters[0].path", "adapters[0].calibration", "adapters[3].path", "adapters[3].calibration"} {
		want := []int{3, 6, 6, 9, 10}[i]
		checkErr(t, err, "testdata/good.yaml", key, want, "does not exist")
	}
	if n := len(flatten(err)); n != 9 {
		t.Errorf("got %d errors, want 9 (base model, 4 adapters, 4 calibration files):\n%v", n, err)
	}
}

// tree is a temporary directory with a base model, two adapters and their
// calibration files, all valid for Validate.
type tree struct{ dir string }

func newTree(t *testing.T) tree {
	t.Helper()
	tr := tree{t.TempDir()}
	tr.write(t, "base/config.json", "{}")
	tr.write(t, "base/model.safetensors", "x")
	for _, a := range []string{"a1", "a2"} {
		tr.write(t, a+"/adapter_config.json", "{}")
		tr.write(t, a+"/adapter_model.safetensors", "x")
		tr.write(t, a+".jsonl", "{}\n")
	}
	return tr
}

func (tr tree) path(rel string) string { return filepath.Join(tr.dir, rel) }

func (tr tree) write(t *testing.T, rel, content string) {
	t.Helper()
	p := tr.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (tr tree) remove(t *testing.T, rel string) {
	t.Helper()
	if err := os.RemoveAll(tr.path(rel)); err != nil {
		t.Fatal(err)
	}
}

// config is the tree's merge config (relative paths; resolve against
// tr.dir) for method.
func config(method string) string {
	return "base_model: base\nmethod: " + method + "\nadapters:\n" +
		"  - {path: a1, calibration: a1.jsonl}\n" +
		"  - {path: a2, calibration: a2.jsonl}\n"
}

func TestValidatePaths(t *testing.T) {
	tests := []struct {
		name   string
		method string
		change func(t *testing.T, tr tree)
		key    string // "" when Validate must succeed
		line   int
		msg    string
	}{
		{"all present", "iteris", func(*testing.T, tree) {}, "", 0, ""},
		{"sharded base", "iteris", func(t *testing.T, tr tree) {
			tr.remove(t, "base/model.safetensors")
			tr.write(t, "base/model.safetensors.index.json", "{}")
		}, "", 0, ""},
		{"weight-only method ignores calibration", "cat", func(t *testing.T, tr tree) { tr.remove(t, "a1.jsonl") }, "", 0, ""},
		{"base missing", "iteris", func(t *testing.T, tr tree) { tr.remove(t, "base") }, "base_model", 1, "base model directory " + "DIR/base: does not exist"},
		{"base is a file", "iteris", func(t *testing.T, tr tree) { tr.remove(t, "base"); tr.write(t, "base", "x") }, "base_model", 1, "DIR/base is not a directory"},
		{"base without config.json", "iteris", func(t *testing.T, tr tree) { tr.remove(t, "base/config.json") }, "base_model", 1, "DIR/base has no config.json"},
		{"base without weights", "iteris", func(t *testing.T, tr tree) { tr.remove(t, "base/model.safetensors") }, "base_model", 1, "DIR/base has no model.safetensors or model.safetensors.index.json"},
		{"adapter missing", "cat", func(t *testing.T, tr tree) { tr.remove(t, "a2") }, "adapters[1].path", 5, "adapter directory DIR/a2: does not exist"},
		{"adapter without config", "cat", func(t *testing.T, tr tree) { tr.remove(t, "a1/adapter_config.json") }, "adapters[0].path", 4, "DIR/a1 has no adapter_config.json"},
		{"adapter without weights", "regmean", func(t *testing.T, tr tree) { tr.remove(t, "a1/adapter_model.safetensors") }, "adapters[0].path", 4, "DIR/a1 has no adapter_model.safetensors"},
		{"calibration missing", "iteris", func(t *testing.T, tr tree) { tr.remove(t, "a2.jsonl") }, "adapters[1].calibration", 5, "calibration file DIR/a2.jsonl: does not exist"},
		{"calibration empty", "regmean", func(t *testing.T, tr tree) { tr.write(t, "a1.jsonl", "") }, "adapters[0].calibration", 4, "DIR/a1.jsonl: is empty"},
		{"calibration is a directory", "iteris", func(t *testing.T, tr tree) {
			tr.remove(t, "a1.jsonl")
			if err := os.Mkdir(tr.path("a1.jsonl"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "adapters[0].calibration", 4, "DIR/a1.jsonl: is not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			tc.change(t, tr)
			s := parse(t, config(tc.method)).Resolve(tr.dir)
			err := s.Validate()
			if tc.key == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			checkErr(t, err, "cfg.yaml", tc.key, tc.line, strings.ReplaceAll(tc.msg, "DIR", tr.dir))
			if n := len(flatten(err)); n != 1 {
				t.Errorf("got %d errors, want 1: %v", n, err)
			}
		})
	}
}

func TestValidateHubIDHint(t *testing.T) {
	s := parse(t, "base_model: meta-llama/Llama-3-8B\nmethod: cat\nadapters: [{path: "+t.TempDir()+"}]\n")
	err := s.Validate()
	checkErr(t, err, "cfg.yaml", "base_model", 1, "meta-llama/Llama-3-8B: does not exist (Hugging Face hub ids are not downloaded: give a local directory)")
}

func TestValidateSpecInCode(t *testing.T) {
	tr := newTree(t)
	s := &Spec{
		BaseModel:  tr.path("base"),
		Method:     MethodIterIS,
		Adapters:   []AdapterSpec{{Name: "x", Path: tr.path("a1"), Calibration: tr.path("a1.jsonl"), Weight: 1}},
		Parameters: defaultParameters(MethodIterIS),
		Output:     defaultOutput(),
		Cluster:    defaultCluster(),
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	if w := s.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %q", w)
	}

	s.Parameters.Samples = 0
	s.Parameters.Objective = ""
	s.Output.Rank = -2
	s.Adapters = append(s.Adapters, AdapterSpec{Name: "x", Path: tr.path("a2"), Calibration: tr.path("a2.jsonl"), Weight: 0})
	err := s.Validate()
	checkErr(t, err, "", "parameters.samples", 0, "must be a positive integer, got 0")
	checkErr(t, err, "", "parameters.objective", 0, `"" is not allowed; expected one of delta, full`)
	checkErr(t, err, "", "output.rank", 0, "must be auto, full or a positive integer, got -2")
	checkErr(t, err, "", "adapters[1].name", 0, `"x" is already the name of adapters[0]; names must be unique`)
	if n := len(flatten(err)); n != 4 {
		t.Errorf("got %d errors, want 4: %v", n, err)
	}
	if !strings.HasPrefix(flatten(err)[0].Error(), "adapters[1].name: ") {
		t.Errorf("error without a file or line reads %q", flatten(err)[0].Error())
	}
	s.Path = "code.yaml"
	if got := flatten(s.Validate())[0].Error(); !strings.HasPrefix(got, "code.yaml: adapters[1].name: ") {
		t.Errorf("error with a file but no line reads %q", got)
	}
	if w := s.Warnings(); len(w) != 1 || w[0] != "code.yaml: adapters[1].weight: is 0: the adapter contributes nothing" {
		t.Errorf("Warnings = %q", w)
	}
}

// TestValidateRelativeToConfigHint: relative paths are relative to the working directory; when
// one exists only relative to the config file's folder, the error says so.
func TestValidateRelativeToConfigHint(t *testing.T) {
	tr := newTree(t)
	t.Chdir(t.TempDir()) // the inputs are not below the working directory
	s, err := Parse([]byte(config("iteris")), filepath.Join(tr.dir, "cfg.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Validate()
	errs := flatten(err)
	if len(errs) != 5 { // base, two adapters, two calibration files
		t.Fatalf("%d errors, want 5: %v", len(errs), err)
	}
	for _, e := range errs {
		if !strings.Contains(e.Error(), "exists: paths in the config are relative to the working directory") || !strings.Contains(e.Error(), tr.dir) {
			t.Errorf("error %q lacks the hint naming %s", e, tr.dir)
		}
	}
	if !strings.Contains(err.Error(), filepath.Join(tr.dir, "a2.jsonl")+" exists") {
		t.Errorf("the calibration hint does not name the file: %v", err)
	}
}
