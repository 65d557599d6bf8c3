package adapter

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// Fixture locations (ground truth, read only).
var (
	fixtureRoot     = filepath.Join("..", "..", "testdata", "tiny-skills")
	fixtureAdapters = []string{"nxt", "rev", "srt", "upc"}
	fixtureMerges   = []string{"cat_mean", "cat_sum", "linear_mean", "magnitude_prune", "svd_mean", "svd_sum", "ties"}
)

func adapterDir(name string) string { return filepath.Join(fixtureRoot, "adapters", name) }
func mergeDir(name string) string   { return filepath.Join(fixtureRoot, "merge4", "peft", name) }

// shapeMap is a Shapes built from a table of name -> [out, in].
type shapeMap map[string][2]int

func (s shapeMap) LinearShape(name string) (int, int, bool) {
	sh, ok := s[name]
	return sh[0], sh[1], ok
}

func (s shapeMap) LinearNames() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// modelShapes derives the linear modules of the tiny-skills base model from
// its safetensors file: every 2-D "<name>.weight" but the token embedding.
func modelShapes(t *testing.T) shapeMap {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(fixtureRoot, "model", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := shapeMap{}
	for _, key := range f.Names() {
		info, _ := f.Info(key)
		if !strings.HasSuffix(key, ".weight") || len(info.Shape) != 2 || strings.Contains(key, "embed_tokens") {
			continue
		}
		s[strings.TrimSuffix(key, ".weight")] = [2]int{info.Shape[0], info.Shape[1]}
	}
	if len(s) != 29 { // 4 layers x 7 projections + lm_head
		t.Fatalf("base model has %d linear modules, want 29", len(s))
	}
	return s
}

// loadT loads an adapter and fails the test on error.
func loadT(t *testing.T, dir string) *Adapter {
	t.Helper()
	a, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return a
}

// copyAdapter copies an adapter directory into a fresh temp dir.
func copyAdapter(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ConfigFile, WeightsFile} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// editConfig rewrites adapter_config.json in dir through edit.
func editConfig(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readTensors reads every tensor of an adapter's weights as float32.
func readTensors(t *testing.T, dir string) map[string]safetensors.Tensor {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]safetensors.Tensor{}
	for _, k := range f.Names() {
		info, _ := f.Info(k)
		data, err := f.Float32(k)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = safetensors.Tensor{Name: k, DType: info.DType, Shape: info.Shape, Data: data}
	}
	return out
}

// editWeights rewrites adapter_model.safetensors in dir through edit.
func editWeights(t *testing.T, dir string, edit func(map[string]safetensors.Tensor)) {
	t.Helper()
	ts := readTensors(t, dir)
	edit(ts)
	list := make([]safetensors.Tensor, 0, len(ts))
	for name, x := range ts {
		x.Name = name
		list = append(list, x)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, WeightsFile), list, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

// rawTensor is a tensor given as stored bytes, for dtypes WriteFile does not
// produce.
type rawTensor struct {
	name  string
	dtype string
	shape []int
	data  []byte
}

// writeRaw writes a safetensors file byte by byte.
func writeRaw(t *testing.T, path string, ts []rawTensor) {
	t.Helper()
	header := map[string]any{}
	var data []byte
	for _, x := range ts {
		header[x.name] = map[string]any{"dtype": x.dtype, "shape": x.shape, "data_offsets": []int{len(data), len(data) + len(x.data)}}
		data = append(data, x.data...)
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(append(out, h...), data...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// f32Bytes encodes float32 values little-endian.
func f32Bytes(x []float32) []byte {
	b := make([]byte, 0, 4*len(x))
	for _, v := range x {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// wantErr checks that err wraps target and mentions every string in parts.
func wantErr(t *testing.T, err, target error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("error %q does not wrap %q", err, target)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// relFrob returns ||got - want||_F / ||want||_F.
func relFrob(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(num / den)
}

// randModule builds a module with deterministic pseudo-random factors.
func randModule(name string, r, in, out int, seed uint32) *Module {
	next := func() float32 {
		seed = seed*1664525 + 1013904223
		return float32(int32(seed>>8)-(1<<23)) / float32(1<<23)
	}
	m := &Module{Name: name, R: r, In: in, Out: out, A: make([]float32, r*in), B: make([]float32, out*r), Alpha: float64(r), Scale: 1}
	for i := range m.A {
		m.A[i] = next()
	}
	for i := range m.B {
		m.B[i] = next()
	}
	return m
}
