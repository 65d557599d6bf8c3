package inputs

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/spec"
)

const fixture = "../../testdata/tiny-skills"

// inputsTree is a private copy of the fixture's model, two adapters and their calibration files.
type inputsTree struct{ root, model, rev, upc, revCalib, upcCalib string }

func newInputsTree(t *testing.T) inputsTree {
	t.Helper()
	root := t.TempDir()
	tr := inputsTree{root: root, model: filepath.Join(root, "model"), rev: filepath.Join(root, "rev"), upc: filepath.Join(root, "upc"),
		revCalib: filepath.Join(root, "rev.jsonl"), upcCalib: filepath.Join(root, "upc.jsonl")}
	for src, dst := range map[string]string{"model": tr.model, "adapters/rev": tr.rev, "adapters/upc": tr.upc} {
		if err := os.CopyFS(dst, os.DirFS(filepath.Join(fixture, src))); err != nil {
			t.Fatal(err)
		}
	}
	for name, dst := range map[string]string{"rev": tr.revCalib, "upc": tr.upcCalib} {
		b, err := os.ReadFile(filepath.Join(fixture, "data", name, "calib.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(dst, b, 0o644)
	}
	return tr
}

func (tr inputsTree) spec(t *testing.T, method, extra string) *spec.Spec {
	t.Helper()
	y := fmt.Sprintf("base_model: %s\nmethod: %s\nadapters:\n  - {name: rev, path: %s, calibration: %s}\n  - {name: upc, path: %s, calibration: %s}\n%s",
		tr.model, method, tr.rev, tr.revCalib, tr.upc, tr.upcCalib, extra)
	s, err := spec.Parse([]byte(y), filepath.Join(tr.root, "merge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// editJSON rewrites one field of a JSON file.
func editJSON(t *testing.T, path, field string, value any) {
	t.Helper()
	b, _ := os.ReadFile(path)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m[field] = value
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sparseRank replaces an adapter's weights by a header declaring rank r on every module of
// the fixture's layer 0 q_proj (128x128), with a hole for data.
func sparseRank(t *testing.T, dir string, r int) {
	t.Helper()
	editJSON(t, filepath.Join(dir, "adapter_config.json"), "r", r)
	name := "base_model.model.model.layers.0.self_attn.q_proj"
	n := int64(r) * 128 * 4
	h, _ := json.Marshal(map[string]any{
		name + ".lora_A.weight": map[string]any{"dtype": "F32", "shape": []int{r, 128}, "data_offsets": []int64{0, n}},
		name + ".lora_B.weight": map[string]any{"dtype": "F32", "shape": []int{128, r}, "data_offsets": []int64{n, 2 * n}},
	})
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	f, err := os.Create(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(h)))
	f.Write(append(l[:], h...))
	if err := f.Truncate(int64(8+len(h)) + 2*n); err != nil {
		t.Fatal(err)
	}
}

// TestPrepareSizeBearingFieldsAtLimits puts every size-bearing field Prepare reads (ranks,
// shapes, layer counts, vocabulary, lengths, counts, output rank) at or far beyond its limit: each
// is refused (or, for output.rank, clamped) from headers and metadata, naming the file and the
// limit, without allocating anything of the size claimed.
func TestPrepareSizeBearingFieldsAtLimits(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(t *testing.T, tr inputsTree)
		extra  string
		target error
		want   []string
	}{
		{"adapter rank 97 million (99 GB sparse file)", func(t *testing.T, tr inputsTree) { sparseRank(t, tr.upc, 97_000_000) }, "", nil,
			[]string{"adapter upc", "rank 97000000", "min(out, in) = 128"}},
		{"config.json num_hidden_layers 10^9", func(t *testing.T, tr inputsTree) {
			editJSON(t, filepath.Join(tr.model, "config.json"), "num_hidden_layers", 1_000_000_000)
		}, "", nil, []string{"num_hidden_layers = 1000000000", "holds only"}},
		{"config.json vocab_size 2^40", func(t *testing.T, tr inputsTree) {
			editJSON(t, filepath.Join(tr.model, "config.json"), "vocab_size", 1<<40)
		}, "", nil, []string{"model.embed_tokens.weight", "[1099511627776 128]"}},
		{"input_ids of 10^6 tokens", func(t *testing.T, tr inputsTree) {
			ids := strings.Repeat("65,", 999_999) + "65"
			os.WriteFile(tr.upcCalib, []byte(`{"input_ids": [`+ids+`]}`+"\n"), 0o644)
		}, "parameters: {samples: 1}\n", ErrInput, []string{":1", "1000000 tokens", "64 positions"}},
		{"a 1 MB prompt", func(t *testing.T, tr inputsTree) {
			os.WriteFile(tr.upcCalib, []byte(`{"prompt": "`+strings.Repeat("x", 1<<20)+`"}`+"\n"), 0o644)
		}, "parameters: {samples: 1}\n", ErrInput, []string{":1", "1048577 tokens", "64 positions"}},
		{"samples 10^9", func(*testing.T, inputsTree) {}, "parameters: {samples: 1000000000}\n", ErrInput,
			[]string{"samples is 1000000000", "only 64 items"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newInputsTree(t)
			tc.edit(t, tr)
			s := tr.spec(t, "iteris", tc.extra)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Prepare(context.Background(), Config{Spec: s})
			runtime.ReadMemStats(&after)
			if err == nil || (tc.target != nil && !errors.Is(err, tc.target)) {
				t.Fatalf("error %v, want %v", err, tc.target)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %.400q does not name %q", err, w)
				}
			}
			// The inputs that are really there (a 3 MB model, two 300 KB adapters, and the
			// text of the calibration file) bound what may be allocated.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 96<<20 {
				t.Errorf("Prepare allocated %d bytes", grew)
			}
		})
	}
	t.Run("output.rank 2^62", func(t *testing.T) {
		tr := newInputsTree(t)
		var warned []string
		in, err := Prepare(context.Background(), Config{Spec: tr.spec(t, "iteris", "output: {rank: 4611686018427387904}\n"),
			Warn: func(f string, a ...any) { warned = append(warned, fmt.Sprintf(f, a...)) }})
		if err != nil {
			t.Fatal(err)
		}
		for name, r := range in.Ranks {
			out, inw, _ := in.Shapes.LinearShape(name)
			if r != min(out, inw) {
				t.Errorf("%s: output rank %d, want min(out, in) = %d", name, r, min(out, inw))
			}
		}
		if in.RankClamped != 28 || len(warned) != 1 || !strings.Contains(warned[0], "output.rank 4611686018427387904") {
			t.Errorf("%d clamped, warnings %q", in.RankClamped, warned)
		}
	})
}
