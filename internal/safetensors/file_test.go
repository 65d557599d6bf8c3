package safetensors

import (
	"errors"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fixtureDir is the tiny-skills ground truth copied into the repository.
var fixtureDir = filepath.Join("..", "..", "testdata", "tiny-skills")

// openT opens a file and closes it when the test ends.
func openT(t *testing.T, path string) *File {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close(%s): %v", path, err)
		}
	})
	return f
}

func TestFixtureModels(t *testing.T) {
	f32 := openT(t, filepath.Join(fixtureDir, "model", "model.safetensors"))
	b16 := openT(t, filepath.Join(fixtureDir, "model-bf16", "model.safetensors"))

	// 4 layers x (2 norms + 7 linears) + embed + final norm + lm_head.
	const wantTensors = 4*9 + 3
	for _, f := range []*File{f32, b16} {
		if got := len(f.Names()); got != wantTensors {
			t.Errorf("%s: %d tensors, want %d", f.Path(), got, wantTensors)
		}
		if got := f.Metadata(); !reflect.DeepEqual(got, map[string]string{"format": "pt"}) {
			t.Errorf("%s: metadata %v, want format=pt", f.Path(), got)
		}
	}
	if !reflect.DeepEqual(f32.Names(), b16.Names()) {
		t.Fatalf("name lists differ:\n%v\n%v", f32.Names(), b16.Names())
	}
	shapes := []struct {
		name  string
		shape []int
	}{
		{"model.embed_tokens.weight", []int{259, 128}},
		{"lm_head.weight", []int{259, 128}},
		{"model.norm.weight", []int{128}},
		{"model.layers.0.self_attn.q_proj.weight", []int{128, 128}},
		{"model.layers.0.self_attn.k_proj.weight", []int{64, 128}},
		{"model.layers.3.mlp.gate_proj.weight", []int{344, 128}},
		{"model.layers.3.mlp.down_proj.weight", []int{128, 344}},
	}
	for _, tc := range shapes {
		for _, f := range []*File{f32, b16} {
			info, ok := f.Info(tc.name)
			if !ok {
				t.Errorf("%s: no tensor %q", f.Path(), tc.name)
				continue
			}
			if !reflect.DeepEqual(info.Shape, tc.shape) {
				t.Errorf("%s: %s shape %v, want %v", f.Path(), tc.name, info.Shape, tc.shape)
			}
		}
	}

	for _, name := range f32.Names() {
		fi, _ := f32.Info(name)
		bi, _ := b16.Info(name)
		if fi.DType != F32 || bi.DType != BF16 {
			t.Fatalf("%s: dtypes %s/%s, want F32/BF16", name, fi.DType, bi.DType)
		}
		vals, err := f32.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := b16.Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		bvals, err := b16.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) != fi.NumElements() || len(raw) != 2*len(vals) || len(bvals) != len(vals) {
			t.Fatalf("%s: %d f32 values, %d bf16 bytes, %d bf16 values, want %d elements",
				name, len(vals), len(raw), len(bvals), fi.NumElements())
		}
		for i, v := range vals {
			want := Float32ToBFloat16(v)
			got := uint16(raw[2*i]) | uint16(raw[2*i+1])<<8
			if got != want {
				t.Fatalf("%s[%d]: stored bf16 %#04x, Float32ToBFloat16(%g) = %#04x", name, i, got, v, want)
			}
			if bvals[i] != BFloat16ToFloat32(want) {
				t.Fatalf("%s[%d]: Float32 gave %g, want %g", name, i, bvals[i], BFloat16ToFloat32(want))
			}
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s[%d] = %g, fixture weights are finite", name, i, v)
			}
		}
	}
}

func TestFileLookupErrors(t *testing.T) {
	path := filepath.Join(fixtureDir, "model", "model.safetensors")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Float32("no.such.tensor")
	assertErr(t, err, ErrNotFound, path, "no.such.tensor")
	_, err = f.Raw("no.such.tensor")
	assertErr(t, err, ErrNotFound, path, "no.such.tensor")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = f.Float32("lm_head.weight")
	assertErr(t, err, ErrClosed, path, "lm_head.weight")
}

// assertErr checks that err wraps target and mentions every one of want.
func assertErr(t *testing.T, err, target error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("error %q does not wrap %q", err, target)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func BenchmarkFloat32(b *testing.B) {
	for _, dir := range []string{"model", "model-bf16"} {
		b.Run(dir, func(b *testing.B) {
			f, err := Open(filepath.Join(fixtureDir, dir, "model.safetensors"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			info, _ := f.Info("model.embed_tokens.weight")
			b.SetBytes(info.Size())
			for b.Loop() {
				if _, err := f.Float32("model.embed_tokens.weight"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	data := make([]float32, 1<<20)
	for i := range data {
		data[i] = float32(i) * 1e-3
	}
	for _, dt := range []DType{F32, BF16, F16} {
		b.Run(string(dt), func(b *testing.B) {
			b.SetBytes(int64(len(data)) * 4)
			for b.Loop() {
				if err := Write(io.Discard, []Tensor{{Name: "w", DType: dt, Shape: []int{len(data)}, Data: data}}, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
