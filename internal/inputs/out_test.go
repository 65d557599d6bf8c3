package inputs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/spec"
)

// layout is a tree of inputs: root/models/base, root/adapters/{a,b}, root/data/calib.jsonl and
// the config root/merge.yaml.
type layout struct{ root, base, a, b, data, calib, cfg string }

func newLayout(t *testing.T) layout {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l := layout{root: root, base: filepath.Join(root, "models", "base"), a: filepath.Join(root, "adapters", "a"),
		b: filepath.Join(root, "adapters", "b"), data: filepath.Join(root, "data"), cfg: filepath.Join(root, "merge.yaml")}
	l.calib = filepath.Join(l.data, "calib.jsonl")
	for _, d := range []string{l.base, l.a, l.b, l.data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "file"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(l.calib, []byte("{}\n"), 0o644)
	os.WriteFile(l.cfg, []byte("x"), 0o644)
	return l
}

func (l layout) spec(t *testing.T) *spec.Spec {
	t.Helper()
	y := fmt.Sprintf("base_model: %s\nmethod: iteris\nadapters:\n  - {name: a, path: %s, calibration: %s}\n  - {name: b, path: %s, calibration: %s}\n",
		l.base, l.a, l.calib, l.b, l.calib)
	s, err := spec.Parse([]byte(y), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unwritable returns a directory in which no entry can be created, even by root.
func unwritable(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(d, 0o755) })
	if f, err := os.CreateTemp(d, "w"); err == nil { // root ignores the mode: use sysfs
		f.Close()
		os.Remove(f.Name())
		return "/sys"
	}
	return d
}

func TestCheckOut(t *testing.T) {
	l := newLayout(t)
	link := filepath.Join(l.root, "link-to-a")
	if err := os.Symlink(l.a, link); err != nil {
		t.Fatal(err)
	}
	nonEmpty := filepath.Join(l.root, "full")
	os.MkdirAll(nonEmpty, 0o755)
	os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644)
	aFile := filepath.Join(l.root, "a-file")
	os.WriteFile(aFile, nil, 0o644)
	ro := unwritable(t)
	tests := []struct {
		name  string
		out   string
		force bool
		want  []string // parts of the error; nil: accepted
	}{
		{"new directory", filepath.Join(l.root, "out", "merged"), false, nil},
		{"existing empty directory", t.TempDir(), false, nil},
		{"non-empty without force", nonEmpty, false, []string{nonEmpty, "not empty", "--force"}},
		{"non-empty with force", nonEmpty, true, nil},
		{"a file", aFile, true, []string{aFile, "not a directory"}},
		{"an adapter's folder", l.a, true, []string{l.a, "is adapters[0].path"}},
		{"the base model's folder", l.base, true, []string{l.base, "is base_model"}},
		{"a calibration file's folder", l.data, true, []string{l.data, "contains adapters[0].calibration", l.calib}},
		{"a folder holding the adapters", filepath.Join(l.root, "adapters"), true, []string{"contains adapters[0].path"}},
		{"a folder holding everything", l.root, true, []string{"contains the config file", l.cfg}},
		{"inside the base model", filepath.Join(l.base, "merged"), true, []string{"lies inside base_model", l.base}},
		{"a link to an adapter", link, true, []string{link, "is adapters[0].path", l.a}},
		{"below a link to an adapter", filepath.Join(link, "new"), false, []string{"lies inside adapters[0].path", l.a}},
		{"unwritable parent", filepath.Join(ro, "iteris-merged"), false, []string{"cannot create entries in " + ro}},
		{"empty", "", false, []string{"no output directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckOut(l.spec(t), tc.out, tc.force)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInput) {
				t.Fatalf("error %v is not ErrInput", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(l.root, "out")); !os.IsNotExist(err) {
		t.Errorf("CheckOut created a directory: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(l.root, ".*")); len(left) > 0 {
		t.Errorf("probe entries left behind: %v", left)
	}
}

// TestCheckOutWorkingDirectory refuses OUT_DIR = . and its parents, which a rename cannot
// replace.
func TestCheckOutWorkingDirectory(t *testing.T) {
	l := newLayout(t)
	wd := filepath.Join(l.root, "work", "here")
	os.MkdirAll(wd, 0o755)
	os.WriteFile(filepath.Join(wd, "notes.txt"), nil, 0o644)
	t.Chdir(wd)
	for _, out := range []string{".", "./", "..", wd} {
		err := CheckOut(l.spec(t), out, true)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "working directory") || !strings.Contains(err.Error(), wd) {
			t.Errorf("OUT_DIR %q: %v, want a refusal naming the working directory %s", out, err, wd)
		}
	}
	if err := CheckOut(l.spec(t), "merged", true); err != nil {
		t.Errorf("OUT_DIR inside the working directory: %v", err)
	}
}
