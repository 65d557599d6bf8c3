package safetensors

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// writeShardedT writes tensors split over two shards plus an index into dir
// and returns the tensors by name.
func writeShardedT(t *testing.T, dir string) map[string]Tensor {
	t.Helper()
	shard1 := []Tensor{
		{Name: "layers.0.w", DType: F32, Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}},
		{Name: "layers.0.b", DType: BF16, Shape: []int{2}, Data: []float32{0.5, -0.25}},
	}
	shard2 := []Tensor{
		{Name: "layers.1.w", DType: F16, Shape: []int{3, 2}, Data: []float32{-1, -2, -3, -4, 0.125, 65504}},
		{Name: "unlisted", DType: F32, Shape: []int{1}, Data: []float32{9}},
	}
	for name, ts := range map[string][]Tensor{"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2} {
		if err := WriteFile(filepath.Join(dir, name), ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
	index := `{"metadata": {"total_size": 52, "format": "pt"}, "weight_map": {
		"layers.0.w": "model-00001-of-00002.safetensors",
		"layers.0.b": "model-00001-of-00002.safetensors",
		"layers.1.w": "model-00002-of-00002.safetensors"}}`
	writeFileT(t, filepath.Join(dir, IndexFileName), index)
	all := map[string]Tensor{}
	for _, x := range append(shard1, shard2[0]) {
		all[x.Name] = x
	}
	return all
}

// writeFileT writes a small file or fails the test.
func writeFileT(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointSharded(t *testing.T) {
	dir := t.TempDir()
	want := writeShardedT(t, dir)
	c, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Names(); !reflect.DeepEqual(got, []string{"layers.0.b", "layers.0.w", "layers.1.w"}) {
		t.Fatalf("names %v", got)
	}
	if got := len(c.Files()); got != 2 {
		t.Fatalf("%d shards open, want 2", got)
	}
	if got := c.Metadata(); !reflect.DeepEqual(got, map[string]string{"total_size": "52", "format": "pt"}) {
		t.Fatalf("metadata %v", got)
	}
	for name, w := range want {
		info, ok := c.Info(name)
		if !ok || info.DType != w.DType || !reflect.DeepEqual(info.Shape, w.Shape) {
			t.Errorf("%s: info %v %v, want %s%v", name, info, ok, w.DType, w.Shape)
		}
		got, err := c.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if !equalBits(got, w.Data) { // every value is exact in its dtype
			t.Errorf("%s: read %v, want %v", name, got, w.Data)
		}
	}
	_, err = c.Float32("unlisted")
	assertErr(t, err, ErrNotFound, IndexFileName, "unlisted")
}

func TestCheckpointSingle(t *testing.T) {
	dir := filepath.Join(fixtureDir, "model")
	c, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := openT(t, filepath.Join(dir, SingleFileName))
	if !reflect.DeepEqual(c.Names(), f.Names()) {
		t.Fatalf("checkpoint names differ from the file's")
	}
	a, err := c.Float32("model.norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f.Float32("model.norm.weight")
	if !equalBits(a, b) || len(a) != 128 {
		t.Fatalf("model.norm.weight differs between checkpoint and file")
	}
}

func TestCheckpointErrors(t *testing.T) {
	tests := []struct {
		name   string
		index  string // written over the generated index
		target error
		want   []string
	}{
		{"missing shard", `{"weight_map": {"layers.0.w": "model-00001-of-00002.safetensors", "layers.9.w": "gone.safetensors"}}`,
			ErrNotFound, []string{IndexFileName, "layers.9.w", "gone.safetensors"}},
		{"tensor not in shard", `{"weight_map": {"layers.1.w": "model-00001-of-00002.safetensors"}}`,
			ErrNotFound, []string{IndexFileName, "layers.1.w", "model-00001-of-00002.safetensors"}},
		{"no weight_map", `{"metadata": {}}`, ErrMalformed, []string{IndexFileName, "weight_map"}},
		{"duplicate tensor", `{"weight_map": {"layers.0.w": "model-00001-of-00002.safetensors", "layers.0.w": "model-00001-of-00002.safetensors"}}`,
			ErrMalformed, []string{IndexFileName, "layers.0.w", "duplicate"}},
		{"shard not a string", `{"weight_map": {"layers.0.w": 1}}`, ErrMalformed, []string{IndexFileName, "layers.0.w"}},
		{"shard outside dir", `{"weight_map": {"layers.0.w": "../model-00001-of-00002.safetensors"}}`,
			ErrMalformed, []string{IndexFileName, "layers.0.w", "../model"}},
		{"not json", `{"weight_map": `, ErrMalformed, []string{IndexFileName}},
		{"broken shard", `{"weight_map": {"layers.0.w": "broken.safetensors"}}`,
			ErrMalformed, []string{IndexFileName, "layers.0.w", "broken.safetensors", "shorter than"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeShardedT(t, dir)
			writeFileT(t, filepath.Join(dir, "broken.safetensors"), "1234")
			writeFileT(t, filepath.Join(dir, IndexFileName), tc.index)
			c, err := OpenCheckpoint(dir)
			if err == nil {
				c.Close()
			}
			assertErr(t, err, tc.target, append(tc.want, dir)...)
		})
	}
	_, err := OpenCheckpoint(t.TempDir())
	assertErr(t, err, ErrNotFound, SingleFileName, IndexFileName)
}
