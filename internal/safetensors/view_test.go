package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestViewsAliasTheMapping reads every tensor of the fixture's float32 and bfloat16 models in
// place and checks each value against the converting reader.
func TestViewsAliasTheMapping(t *testing.T) {
	f32 := openT(t, filepath.Join(fixtureDir, "model", "model.safetensors"))
	b16 := openT(t, filepath.Join(fixtureDir, "model-bf16", "model.safetensors"))
	for _, name := range f32.Names() {
		want, err := f32.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		got, mapped, err := f32.Float32View(name)
		if err != nil {
			t.Fatalf("Float32View(%s): %v", name, err)
		}
		if !mapped {
			t.Errorf("%s: F32 view is a copy; the fixture's data is aligned and mapped", name)
		}
		sameBits32(t, name, got, want)

		bits, mapped, err := b16.Uint16View(name)
		if err != nil {
			t.Fatalf("Uint16View(%s): %v", name, err)
		}
		if !mapped {
			t.Errorf("%s: BF16 view is a copy; the fixture's data is aligned and mapped", name)
		}
		wantB, err := b16.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		widened := make([]float32, len(bits))
		for i, h := range bits {
			widened[i] = BFloat16ToFloat32(h)
		}
		sameBits32(t, name+" (bf16)", widened, wantB)
	}
}

func sameBits32(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestViewsCopyUnalignedData places tensors at odd offsets: the views cannot alias the mapping
// and return copies with the same values.
func TestViewsCopyUnalignedData(t *testing.T) {
	header := `{` + entry("pad", "U8", "[1]", "[0,1]") + `,` + entry("h", "BF16", "[3]", "[1,7]") + `,` +
		entry("pad2", "U8", "[1]", "[7,8]") + `,` + entry("w", "F32", "[2]", "[8,16]") + `}`
	for len(header)%8 != 0 {
		header += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	b = append(b, 0xff)
	for _, h := range []uint16{0x3f80, 0xc000, 0x7f80} { // 1, -2, +Inf
		b = binary.LittleEndian.AppendUint16(b, h)
	}
	b = append(b, 0xee)
	for _, v := range []float32{0.5, -3} {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	path := filepath.Join(t.TempDir(), "odd.safetensors")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f := openT(t, path)
	h, mapped, err := f.Uint16View("h")
	if err != nil {
		t.Fatal(err)
	}
	if mapped || len(h) != 3 || h[0] != 0x3f80 || h[1] != 0xc000 || h[2] != 0x7f80 {
		t.Errorf("Uint16View(h) = %#x, mapped %v; want a copy [0x3f80 0xc000 0x7f80]", h, mapped)
	}
	w, mapped, err := f.Float32View("w")
	if err != nil {
		t.Fatal(err)
	}
	// The data section starts at 8 + len(header), a multiple of 8, so w at offset 8 is aligned.
	if !mapped || len(w) != 2 || w[0] != 0.5 || w[1] != -3 {
		t.Errorf("Float32View(w) = %v, mapped %v; want the mapped [0.5 -3]", w, mapped)
	}
}

func TestViewErrors(t *testing.T) {
	path := filepath.Join(fixtureDir, "model-bf16", "model.safetensors")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const name = "model.layers.0.mlp.up_proj.weight"
	if _, _, err := f.Float32View(name); !errors.Is(err, ErrUnsupportedDType) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "BF16") {
		t.Errorf("Float32View of a BF16 tensor: %v; want ErrUnsupportedDType naming %s and BF16", err, name)
	}
	if _, _, err := f.Uint16View("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("Uint16View of a missing tensor: %v; want ErrNotFound naming it", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Uint16View(name); !errors.Is(err, ErrClosed) {
		t.Errorf("Uint16View after Close: %v; want ErrClosed", err)
	}
	if err := f.Release(name); !errors.Is(err, ErrClosed) {
		t.Errorf("Release after Close: %v; want ErrClosed", err)
	}
	f32 := openT(t, filepath.Join(fixtureDir, "model", "model.safetensors"))
	if _, _, err := f32.Uint16View(name); !errors.Is(err, ErrUnsupportedDType) || !strings.Contains(err.Error(), "F32") {
		t.Errorf("Uint16View of an F32 tensor: %v; want ErrUnsupportedDType naming F32", err)
	}
}

// TestReleaseKeepsValues drops a tensor's pages from the resident set and reads it again.
func TestReleaseKeepsValues(t *testing.T) {
	ck, err := OpenCheckpoint(filepath.Join(fixtureDir, "model"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	const name = "lm_head.weight"
	want, err := ck.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	view, mapped, err := ck.Float32View(name)
	if err != nil || !mapped {
		t.Fatalf("Float32View: mapped %v, %v", mapped, err)
	}
	if err := ck.Release(name); err != nil {
		t.Fatal(err)
	}
	sameBits32(t, name+" after Release", view, want)
	if err := ck.Release("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Release of a missing tensor: %v; want ErrNotFound", err)
	}
	if _, _, err := ck.Uint16View("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Checkpoint.Uint16View of a missing tensor: %v; want ErrNotFound", err)
	}
}
