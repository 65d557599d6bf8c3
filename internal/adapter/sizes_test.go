package adapter

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
)

// sparseAdapter writes an adapter whose safetensors header declares the given F32 factors and
// whose data is a hole of the declared size: a self-consistent file that costs no disk, as a
// hostile or corrupted upload would be.
func sparseAdapter(t *testing.T, r int, modules map[string][2]int) string {
	t.Helper()
	dir := t.TempDir()
	writeSparse(t, dir, r, modules)
	return dir
}

// writeSparse writes (or overwrites) the adapter files of sparseAdapter in dir.
func writeSparse(t *testing.T, dir string, r int, modules map[string][2]int) {
	t.Helper()
	cfg := `{"peft_type": "LORA", "r": ` + itoa(r) + `, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj"]}`
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	header := map[string]any{}
	off := int64(0)
	add := func(key string, shape ...int) {
		n := int64(4)
		for _, d := range shape {
			n *= int64(d)
		}
		header[key] = map[string]any{"dtype": "F32", "shape": shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	for name, sh := range modules { // sh = [out, in]
		add(keyPrefix+name+".lora_A.weight", r, sh[1])
		add(keyPrefix+name+".lora_B.weight", sh[0], r)
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	f, err := os.Create(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(h)))
	if _, err := f.Write(append(n[:], h...)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(8+len(h)) + off); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestLoadRefusesAbsurdSizesFromHeader: factors that are self-consistent but absurd for their
// module (r = 97 million on 128x128, a 99 GB sparse file) or for the base model are refused from
// the header, before any tensor data is read or converted.
func TestLoadRefusesAbsurdSizesFromHeader(t *testing.T) {
	q := "model.layers.0.self_attn.q_proj"
	base := shapeMap{q: {128, 128}, "model.layers.0.self_attn.k_proj": {64, 128}}
	tests := []struct {
		name    string
		r       int
		modules map[string][2]int
		base    Shapes
		want    []string
	}{
		{"rank 97 million on a 128x128 module", 97_000_000, map[string][2]int{q: {128, 128}}, nil,
			[]string{"lora_A.weight", "rank 97000000", "min(out, in) = 128"}},
		{"rank 200 on a 128x128 module", 200, map[string][2]int{q: {128, 128}}, base,
			[]string{q, "rank 200", "min(out, in) = 128"}},
		{"input width of another model", 8, map[string][2]int{q: {128, 1 << 30}}, base,
			[]string{q, "[8 1073741824]", "[128 128]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := sparseAdapter(t, tc.r, tc.modules)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := LoadFor(dir, tc.base)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrShapeMismatch) {
				t.Fatalf("error %v, want ErrShapeMismatch", err)
			}
			for _, w := range append(tc.want, filepath.Join(dir, WeightsFile)) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("refusing the header allocated %d bytes: tensor data was read", grew)
			}
		})
	}
}

// FuzzLoadForSizes writes headers with fuzzed (r, in, out) for one module of a 128x128 base and
// checks that LoadFor never panics, that it reads data only for a module that fits the base at
// a rank of at most 128, and that it refuses everything else from the header.
func FuzzLoadForSizes(f *testing.F) {
	f.Add(uint32(8), uint32(128), uint32(128))
	f.Add(uint32(97_000_000), uint32(128), uint32(128))
	f.Add(uint32(8), uint32(1<<30), uint32(128))
	f.Add(uint32(129), uint32(128), uint32(128))
	f.Add(uint32(0), uint32(128), uint32(128))
	q := "model.layers.0.self_attn.q_proj"
	base := shapeMap{q: {128, 128}}
	dir, err := os.MkdirTemp("", "fuzz-adapter-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	f.Fuzz(func(t *testing.T, r, in, out uint32) {
		// Keep the declared file under 1 TiB of holes (the filesystem's limit is the test's,
		// not the loader's).
		if uint64(r)*(uint64(in)+uint64(out))*4 > 1<<40 || r == 0 || in == 0 || out == 0 {
			t.Skip()
		}
		writeSparse(t, dir, int(r), map[string][2]int{q: {int(out), int(in)}})
		before := allocated()
		a, err := LoadFor(dir, base)
		grew := allocated() - before
		fits := r <= 128 && in == 128 && out == 128
		if fits != (err == nil) {
			t.Fatalf("r %d in %d out %d: err %v", r, in, out, err)
		}
		if err == nil && a.Modules[q].R != int(r) {
			t.Fatalf("loaded rank %d, want %d", a.Modules[q].R, r)
		}
		if grew > 16<<20 {
			t.Fatalf("r %d in %d out %d: allocated %d bytes", r, in, out, grew)
		}
	})
}

// allocated returns the bytes allocated on the heap so far (cheaper than ReadMemStats: no
// stop-the-world).
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
