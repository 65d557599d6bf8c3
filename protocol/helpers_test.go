package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name (a hex dump, 16 bytes a line) or rewrites it with -update.
// It returns the bytes the golden file holds.
func golden(t *testing.T, name string, got []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(hexDump(got)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./protocol -update to create it)", err)
	}
	want, err := parseHexDump(string(text))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: the encoding drifted (%d bytes, golden %d); first difference at byte %d\n got: %s\nwant: %s\n"+
			"if the change is intended, bump the format version and run go test ./protocol -update",
			path, len(got), len(want), firstDiff(got, want), hexAround(got, firstDiff(got, want)), hexAround(want, firstDiff(got, want)))
	}
	return want
}

func hexDump(b []byte) string {
	var sb strings.Builder
	for off := 0; off < len(b); off += 16 {
		fmt.Fprintf(&sb, "%08x: %s\n", off, hex.EncodeToString(b[off:min(off+16, len(b))]))
	}
	return sb.String()
}

func parseHexDump(s string) ([]byte, error) {
	var out []byte
	for i, line := range strings.Split(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		_, h, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, fmt.Errorf("line %d: no ': '", i+1)
		}
		b, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		out = append(out, b...)
	}
	return out, nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func hexAround(b []byte, i int) string {
	lo, hi := max(0, i-8), min(len(b), i+8)
	return fmt.Sprintf("[%d:%d] %x", lo, hi, b[lo:hi])
}

// wantErr checks that err wraps target and mentions every string of subs.
func wantErr(t *testing.T, err, target error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("error %q does not wrap %v", err, target)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
}

// pattern returns n bytes of a fixed, compressible pattern: pseudo-random 6-bit values, each
// repeated 8 times.
func pattern(n int) []byte {
	b := make([]byte, n)
	x := uint32(12345)
	for i := range b {
		if i%8 == 0 {
			x = x*1664525 + 1013904223
		}
		b[i] = byte(x>>24) & 0x3f
	}
	return b
}

// sampleBatches is a small rows value with two tasks, special float values and several sequences.
func sampleBatches() []Batch {
	return []Batch{
		{Task: 0, Width: 3, Lens: []int{2, 1}, Start: []int{0, 5},
			Data: []float32{1, -2, 0.5, float32(math.Inf(1)), 0, float32(math.Copysign(0, -1)), 3.25, 1e-38, -7}},
		{Task: 0, Width: 3, Lens: []int{1}, Start: []int{7}, Data: []float32{9, 8, 7}},
		{Task: 2, Width: 2, Lens: []int{1, 1, 2}, Start: []int{0, 0, 3},
			Data: []float32{1, 2, 3, 4, 5, 6, 7, float32(math.NaN())}},
	}
}

// sampleFactors has two sites (given out of order) and records.
func sampleFactors() Factors {
	return Factors{
		Sites: []Site{
			{Name: "model.layers.1.mlp.down_proj", Out: 2, Rank: 1, In: 3, B: []float64{1, -1}, A: []float64{0.5, 0.25, math.Inf(-1)}},
			{Name: "model.layers.0.self_attn.q_proj", Out: 1, Rank: 2, In: 1, B: []float64{1e-300, 2}, A: []float64{3, 4}},
		},
		Records: []byte(`{"model.layers.0.self_attn.q_proj":{"residual":0.5}}`),
	}
}

func sampleSequences() [][][]int {
	return [][][]int{
		{{256, 60, 60, 110, 257}, {256, 1}},
		{},
		{{0}, {2147483647, 3, 4}},
	}
}
