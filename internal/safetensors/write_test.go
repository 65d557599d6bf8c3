package safetensors

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// writeT writes tensors to a file in a temp dir and opens it.
func writeT(t *testing.T, tensors []Tensor, meta map[string]string) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := WriteFile(path, tensors, meta); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	return openT(t, path)
}

func TestRoundTrip(t *testing.T) {
	inf := float32(math.Inf(1))
	vals := []float32{0, 1, -2, 0.5, 1.0 / 3, 65504, 65520, 1e-8, float32(math.Ldexp(1, -24)), -inf, 3.14159265, 1 + 1.0/256}
	tests := []struct {
		dtype DType
		// want holds the exact values read back.
		want []float32
		// bits holds the stored 16-bit patterns (nil for F32).
		bits []uint16
	}{
		{F32, vals, nil},
		{F16, []float32{0, 1, -2, 0.5, 0.333251953125, 65504, inf, 0, float32(math.Ldexp(1, -24)), -inf, 3.140625, 1.00390625},
			[]uint16{0x0000, 0x3c00, 0xc000, 0x3800, 0x3555, 0x7bff, 0x7c00, 0x0000, 0x0001, 0xfc00, 0x4248, 0x3c04}},
		{BF16, []float32{0, 1, -2, 0.5, 0.333984375, 65536, 65536, math.Float32frombits(0x322c0000), float32(math.Ldexp(1, -24)), -inf, 3.140625, 1},
			[]uint16{0x0000, 0x3f80, 0xc000, 0x3f00, 0x3eab, 0x4780, 0x4780, 0x322c, 0x3380, 0xff80, 0x4049, 0x3f80}},
	}
	for _, tc := range tests {
		t.Run(string(tc.dtype), func(t *testing.T) {
			in := []Tensor{
				{Name: "b.weight", DType: tc.dtype, Shape: []int{3, 4}, Data: vals},
				{Name: "a.scalar", DType: tc.dtype, Shape: nil, Data: []float32{1}},
				{Name: "c.empty", DType: tc.dtype, Shape: []int{0, 5}, Data: nil},
			}
			meta := map[string]string{"format": "pt", "note": "<&>"}
			f := writeT(t, in, meta)
			if got, want := f.Names(), []string{"a.scalar", "b.weight", "c.empty"}; !reflect.DeepEqual(got, want) {
				t.Fatalf("names %v, want %v", got, want)
			}
			if got := f.Metadata(); !reflect.DeepEqual(got, meta) {
				t.Fatalf("metadata %v, want %v", got, meta)
			}
			info, _ := f.Info("b.weight")
			if info.DType != tc.dtype || !reflect.DeepEqual(info.Shape, []int{3, 4}) {
				t.Fatalf("info %v", info)
			}
			got, err := f.Float32("b.weight")
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if !equalBits(got, want) {
				t.Fatalf("read back %v, want %v", got, want)
			}
			if tc.bits != nil {
				raw, _ := f.Raw("b.weight")
				for i, w := range tc.bits {
					if g := binary.LittleEndian.Uint16(raw[2*i:]); g != w {
						t.Errorf("element %d (%g): stored %#04x, want %#04x", i, vals[i], g, w)
					}
				}
			}
			if s, _ := f.Float32("a.scalar"); !reflect.DeepEqual(s, []float32{1}) {
				t.Errorf("scalar %v, want [1]", s)
			}
			if e, _ := f.Float32("c.empty"); len(e) != 0 {
				t.Errorf("empty tensor has %d values", len(e))
			}
		})
	}
}

// equalBits compares float32 slices bit for bit.
func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestWriteLayout(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, []Tensor{
		{Name: "z", DType: F32, Shape: []int{1}, Data: []float32{2}},
		{Name: "a", DType: BF16, Shape: []int{2}, Data: []float32{1, -1}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	n := binary.LittleEndian.Uint64(b)
	header := `{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`
	pad := (8 - len(header)%8) % 8
	if want := len(header) + pad; n != uint64(want) || n%8 != 0 {
		t.Fatalf("header length %d, want %d", n, want)
	}
	if got := string(b[8 : 8+n]); got != header+string(bytes.Repeat([]byte{' '}, pad)) {
		t.Fatalf("header %q, want %q + %d spaces", got, header, pad)
	}
	data := b[8+n:]
	want := []byte{0x80, 0x3f, 0x80, 0xbf, 0, 0, 0, 0x40}
	if !bytes.Equal(data, want) {
		t.Fatalf("data % x, want % x", data, want)
	}
}

func TestWriteFileLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.safetensors")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, []Tensor{{Name: "w", DType: F32, Shape: []int{2}, Data: []float32{1}}}, nil)
	assertErr(t, err, ErrInvalid, path, `"w"`, "2 elements", "Data has 1")
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("dir holds %d entries after failed write, want only the old file", len(entries))
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("old file overwritten: %q", b)
	}
}

func TestWriteInvalid(t *testing.T) {
	ok := Tensor{Name: "ok", DType: F32, Shape: []int{1}, Data: []float32{1}}
	tests := []struct {
		name   string
		tensor Tensor
		target error
		want   string
	}{
		{"integer dtype", Tensor{Name: "blk.w", DType: I32, Shape: []int{1}, Data: []float32{1}}, ErrUnsupportedDType, `"I32"`},
		{"unknown dtype", Tensor{Name: "blk.w", DType: "F31", Shape: []int{1}, Data: []float32{1}}, ErrUnsupportedDType, `"F31"`},
		{"reserved name", Tensor{Name: "__metadata__", DType: F32, Shape: []int{1}, Data: []float32{1}}, ErrInvalid, "reserved"},
		{"duplicate name", Tensor{Name: "ok", DType: F16, Shape: []int{1}, Data: []float32{1}}, ErrInvalid, "duplicate"},
		{"negative dim", Tensor{Name: "blk.w", DType: F32, Shape: []int{-1, -1}, Data: []float32{1}}, ErrInvalid, "negative"},
		{"too few values", Tensor{Name: "blk.w", DType: BF16, Shape: []int{2, 2}, Data: []float32{1}}, ErrInvalid, "4 elements, Data has 1"},
		{"overflowing shape", Tensor{Name: "blk.w", DType: F32, Shape: []int{1 << 31, 1 << 31, 1 << 31}}, ErrInvalid, "overflows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(&buf, []Tensor{ok, tc.tensor}, nil)
			assertErr(t, err, tc.target, `"`+tc.tensor.Name+`"`, tc.want)
			if buf.Len() != 0 {
				t.Fatalf("%d bytes written before the error", buf.Len())
			}
		})
	}
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.safetensors")
	for _, v := range []float32{1, 2} {
		if err := WriteFile(path, []Tensor{{Name: "w", DType: F32, Shape: []int{1}, Data: []float32{v}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("dir holds %d entries, want 1", len(entries))
	}
	got, err := openT(t, path).Float32("w")
	if err != nil || !reflect.DeepEqual(got, []float32{2}) {
		t.Fatalf("read %v, %v; want [2]", got, err)
	}
}
