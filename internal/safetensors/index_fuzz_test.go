package safetensors

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// FuzzCheckpointIndex drives the model.safetensors.index.json parser: any index must either open
// or fail with an error wrapping ErrMalformed or ErrNotFound, and an opened checkpoint must serve
// every tensor it lists.
func FuzzCheckpointIndex(f *testing.F) {
	f.Add([]byte(`{"metadata": {"total_size": 16}, "weight_map": {"a": "shard-1.safetensors", "b": "shard-1.safetensors"}}`))
	f.Add([]byte(`{"weight_map": {"a": "shard-1.safetensors", "zz": "missing.safetensors"}}`))
	f.Add([]byte(`{"weight_map": {"a": "../shard-1.safetensors"}}`))
	f.Add([]byte(`{"metadata": null, "weight_map": {"a": 3}}`))
	f.Add([]byte(`{"weight_map": {"a": "shard-1.safetensors", "a": "shard-1.safetensors"}}`))
	f.Add([]byte(`[]`))
	dir := f.TempDir()
	shard := []Tensor{{Name: "a", DType: F32, Shape: []int{2}, Data: []float32{1, 2}}, {Name: "b", DType: BF16, Shape: []int{2}, Data: []float32{3, 4}}}
	if err := WriteFile(filepath.Join(dir, "shard-1.safetensors"), shard, nil); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, index []byte) {
		if err := os.WriteFile(filepath.Join(dir, IndexFileName), index, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := OpenCheckpoint(dir)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotFound) && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrNotFound", err)
			}
			return
		}
		defer c.Close()
		for _, n := range c.Names() {
			if _, err := c.Float32(n); err != nil {
				t.Fatalf("listed tensor %q: %v", n, err)
			}
		}
	})
}
