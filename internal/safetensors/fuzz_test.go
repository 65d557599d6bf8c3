package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// fuzzFixtures are real files whose headers seed the fuzzers.
var fuzzFixtures = []string{
	filepath.Join(fixtureDir, "model", "model.safetensors"),
	filepath.Join(fixtureDir, "model-bf16", "model.safetensors"),
	filepath.Join(fixtureDir, "adapters", "rev", "adapter_model.safetensors"),
}

// fixtureHeader returns a fixture's header bytes and data section length.
func fixtureHeader(f *testing.F, path string) ([]byte, int64) {
	f.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	h, dataLen, ok := splitFile(b)
	if !ok {
		f.Fatalf("%s: bad length prefix", path)
	}
	return h, dataLen
}

// fuzzSeedFiles returns small whole-file seeds: each fixture's header with
// its data cut to 64 bytes (invalid), each fixture's names and dtypes
// rewritten as a small valid file, a file with metadata and every malformed
// case. Whole multi-megabyte fixtures would slow the fuzzer to a crawl.
func fuzzSeedFiles(f *testing.F) [][]byte {
	f.Helper()
	var seeds [][]byte
	dir := f.TempDir()
	for i, p := range fuzzFixtures {
		h, _ := fixtureHeader(f, p)
		seeds = append(seeds, fileBytes(string(h), 64))
		file, err := Open(p)
		if err != nil {
			f.Fatal(err)
		}
		var small []Tensor
		for j, name := range file.Names() {
			ti, _ := file.Info(name)
			small = append(small, Tensor{Name: name, DType: ti.DType, Shape: []int{j % 3}, Data: make([]float32, j%3)})
		}
		file.Close()
		path := filepath.Join(dir, fmt.Sprintf("small%d.safetensors", i))
		if err := WriteFile(path, small, file.Metadata()); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	var buf bytes.Buffer
	if err := Write(&buf, []Tensor{
		{Name: "a", DType: F16, Shape: []int{2}, Data: []float32{1, 2}},
		{Name: "b", DType: BF16, Shape: []int{1, 1}, Data: []float32{3}},
		{Name: "c", DType: F32, Shape: []int{}, Data: []float32{4}},
		{Name: "d", DType: F64, Shape: []int{1}, Data: []float32{5}},
	}, map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, buf.Bytes())
	seeds = append(seeds, fileBytes(`{`+entry("ids", "I64", "[1]", "[0,8]")+`,`+entry("q", "F4", "[4]", "[8,10]")+`}`, 10))
	for _, tc := range malformedCases {
		seeds = append(seeds, tc.file)
	}
	return seeds
}

// splitFile returns the header and data length of a whole-file seed, or
// false when the length prefix does not fit.
func splitFile(b []byte) ([]byte, int64, bool) {
	if len(b) < 8 {
		return nil, 0, false
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return nil, 0, false
	}
	return b[8 : 8+n], int64(len(b)) - 8 - int64(n), true
}

func FuzzParseHeader(f *testing.F) {
	for _, p := range fuzzFixtures {
		h, dataLen := fixtureHeader(f, p)
		f.Add(h, dataLen)
	}
	for _, b := range fuzzSeedFiles(f) {
		if h, dataLen, ok := splitFile(b); ok {
			f.Add(h, dataLen)
		}
	}
	f.Fuzz(func(t *testing.T, header []byte, dataLen int64) {
		tensors, _, err := parseHeader(header, dataLen)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		base := 8 + int64(len(header))
		for name, ti := range tensors {
			if ti.Name != name || !ti.DType.Valid() {
				t.Fatalf("bad info %v under %q", ti, name)
			}
			if ti.Begin < base || ti.Begin > ti.End || ti.End > base+dataLen {
				t.Fatalf("%q: range [%d, %d) outside data [%d, %d)", name, ti.Begin, ti.End, base, base+dataLen)
			}
			if bits := int64(ti.NumElements()) * int64(ti.DType.Bits()); bits != 8*(ti.End-ti.Begin) {
				t.Fatalf("%q: %d bits for %d bytes", name, bits, ti.End-ti.Begin)
			}
		}
		if err := checkOverlap(tensors); err != nil {
			t.Fatalf("accepted overlapping tensors: %v", err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	for _, b := range fuzzSeedFiles(f) {
		f.Add(b)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.safetensors")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		file, err := Open(path)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		defer file.Close()
		for _, name := range file.Names() {
			ti, _ := file.Info(name)
			raw, err := file.Raw(name)
			if err != nil || int64(len(raw)) != ti.End-ti.Begin {
				t.Fatalf("Raw(%q): %d bytes, %v; want %d", name, len(raw), err, ti.End-ti.Begin)
			}
			vals, err := file.Float32(name)
			switch ti.DType {
			case F32, F16, BF16, F64:
				if err != nil || len(vals) != ti.NumElements() {
					t.Fatalf("Float32(%q): %d values, %v; want %d", name, len(vals), err, ti.NumElements())
				}
			default:
				if !errors.Is(err, ErrUnsupportedDType) {
					t.Fatalf("Float32(%q) of %s: %v, want ErrUnsupportedDType", name, ti.DType, err)
				}
			}
			checkViews(t, file, ti, vals)
		}
	})
}

// checkViews checks the in-place readers against Float32 (vals) for one tensor of a file that
// opened: the right dtypes give every element (mapped or copied), the others ErrUnsupportedDType.
func checkViews(t *testing.T, file *File, ti TensorInfo, vals []float32) {
	t.Helper()
	v32, _, err := file.Float32View(ti.Name)
	if (err == nil) != (ti.DType == F32) || err != nil && !errors.Is(err, ErrUnsupportedDType) {
		t.Fatalf("Float32View(%q) of %s: %v", ti.Name, ti.DType, err)
	}
	for i, v := range v32 {
		if math.Float32bits(v) != math.Float32bits(vals[i]) {
			t.Fatalf("Float32View(%q)[%d] = %v, Float32 gives %v", ti.Name, i, v, vals[i])
		}
	}
	v16, _, err := file.Uint16View(ti.Name)
	if (err == nil) != (ti.DType.Bits() == 16) || err != nil && !errors.Is(err, ErrUnsupportedDType) {
		t.Fatalf("Uint16View(%q) of %s: %v", ti.Name, ti.DType, err)
	}
	if err == nil && len(v16) != ti.NumElements() {
		t.Fatalf("Uint16View(%q): %d elements, want %d", ti.Name, len(v16), ti.NumElements())
	}
	if ti.DType == BF16 {
		for i, h := range v16 {
			if math.Float32bits(BFloat16ToFloat32(h)) != math.Float32bits(vals[i]) {
				t.Fatalf("Uint16View(%q)[%d] = %#x, Float32 gives %v", ti.Name, i, h, vals[i])
			}
		}
	}
	if err := file.Release(ti.Name); err != nil {
		t.Fatalf("Release(%q): %v", ti.Name, err)
	}
}
