package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/internal/spec"
)

// subset writes a copy of a fixture adapter keeping only modules whose name passes keep, with an
// optional edit of the factors.
func subset(t *testing.T, name string, keep func(string) bool, edit func(*adapter.Module)) string {
	t.Helper()
	a, err := adapter.Load(filepath.Join(fixture, "adapters", name))
	if err != nil {
		t.Fatal(err)
	}
	var mods []*adapter.Module
	for _, n := range a.Names() {
		if keep(n) {
			m := *a.Modules[n]
			m.A, m.B = append([]float32(nil), m.A...), append([]float32(nil), m.B...)
			if edit != nil {
				edit(&m)
			}
			mods = append(mods, &m)
		}
	}
	dir := filepath.Join(t.TempDir(), name)
	if err := adapter.Write(dir, mods, adapter.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// withNaN copies a fixture adapter and puts a NaN into one tensor.
func withNaN(t *testing.T, name, key string) string {
	t.Helper()
	src := filepath.Join(fixture, "adapters", name)
	dir := filepath.Join(t.TempDir(), name+"-nan")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(filepath.Join(src, "adapter_config.json"))
	os.WriteFile(filepath.Join(dir, "adapter_config.json"), cfg, 0o644)
	f, err := safetensors.Open(filepath.Join(src, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		x, _ := f.Float32(n)
		if n == key {
			x[5] = float32(math.NaN())
		}
		ts = append(ts, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: info.Shape, Data: x})
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

type adapterEntry struct{ name, path, calib string }

func specOf(t *testing.T, method, params string, entries ...adapterEntry) *spec.Spec {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "base_model: %s/model\nmethod: %s\nadapters:\n", fixture, method)
	for _, e := range entries {
		fmt.Fprintf(&b, "  - {name: %s, path: %s, calibration: %s}\n", e.name, e.path, e.calib)
	}
	if params != "" {
		fmt.Fprintf(&b, "parameters: {%s}\n", params)
	}
	s, err := spec.Parse([]byte(b.String()), "bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fixtureEntry(name string) adapterEntry {
	return adapterEntry{name, filepath.Join(fixture, "adapters", name), filepath.Join(fixture, "data", name, "calib.jsonl")}
}

func TestRunRefusesBadInputsBeforeWork(t *testing.T) {
	tmp := t.TempDir()
	empty := filepath.Join(tmp, "empty.jsonl")
	os.WriteFile(empty, []byte("\n\n"), 0o644)
	short := filepath.Join(tmp, "short.jsonl")
	os.WriteFile(short, []byte(`{"task":"rev","prompt":"<<abc="}`+"\n"+`{"task":"rev","prompt":"<<xyz="}`+"\n"), 0o644)
	attnOnly := subset(t, "rev", func(n string) bool { return strings.Contains(n, "self_attn") }, nil)
	mlpOnly := subset(t, "upc", func(n string) bool { return strings.Contains(n, "mlp") }, nil)
	// An adapter of another base model: hidden 64 instead of 128 on every A.
	other := subset(t, "nxt", func(string) bool { return true }, func(m *adapter.Module) {
		if m.In == 128 {
			m.In = 64
			m.A = m.A[:m.R*64]
		}
	})
	rev, upc := fixtureEntry("rev"), fixtureEntry("upc")
	tests := []struct {
		name  string
		s     *spec.Spec
		want  []string
		check error
	}{
		{"missing adapter dir", specOf(t, "iteris", "", rev, adapterEntry{"ghost", filepath.Join(tmp, "ghost"), upc.calib}),
			[]string{"ghost"}, spec.ErrConfig},
		{"adapters of another base model", specOf(t, "iteris", "", rev, adapterEntry{"other", other, upc.calib}),
			[]string{"other", "model.layers.0.mlp.gate_proj", "[8 64]"}, adapter.ErrShapeMismatch},
		{"target modules do not overlap", specOf(t, "iteris", "", adapterEntry{"attn", attnOnly, rev.calib}, adapterEntry{"mlp", mlpOnly, upc.calib}),
			[]string{"do not overlap", "attn targets", "mlp targets"}, ErrInput},
		{"empty calibration file", specOf(t, "iteris", "", rev, adapterEntry{"upc", upc.path, empty}),
			[]string{empty, "no items"}, nil},
		{"samples larger than the file", specOf(t, "iteris", "samples: 3", rev, adapterEntry{"upc", upc.path, short}),
			[]string{"samples is 3", short, "only 2 items"}, ErrInput},
		{"NaN in an adapter", specOf(t, "regmean", "", rev, adapterEntry{"upcnan", withNaN(t, "upc", "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"), upc.calib}),
			[]string{"upcnan", "model.layers.1.mlp.up_proj.lora_B.weight", "NaN"}, adapter.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			_, err := Run(context.Background(), Options{Spec: tc.s, Out: out})
			if err == nil {
				t.Fatal("merge succeeded, want an error")
			}
			if tc.check != nil && !errors.Is(err, tc.check) {
				t.Errorf("error %v is not %v", err, tc.check)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if _, serr := os.Stat(out); !os.IsNotExist(serr) {
				t.Errorf("output directory was created: %v", serr)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".out.tmp-*")); len(left) > 0 {
				t.Errorf("temporary output left behind: %v", left)
			}
		})
	}
}

func TestRunRefusesNonEmptyOut(t *testing.T) {
	s := specOf(t, "cat", "", fixtureEntry("rev"))
	out := t.TempDir()
	marker := filepath.Join(out, "keep.txt")
	os.WriteFile(marker, []byte("mine"), 0o644)
	_, err := Run(context.Background(), Options{Spec: s, Out: out})
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("error %v, want ErrInput mentioning --force", err)
	}
	if b, _ := os.ReadFile(marker); string(b) != "mine" {
		t.Fatal("existing output was touched")
	}
	if _, err := Run(context.Background(), Options{Spec: s, Out: out, Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Error("--force kept the old contents")
	}
	if _, err := adapter.Load(out); err != nil {
		t.Errorf("--force output does not load: %v", err)
	}
}
