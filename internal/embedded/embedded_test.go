package embedded_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/embedded"
	"github.com/iteris-dev/iteris/internal/pipeline"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/protocol"
)

const root = "../.."

// mergeEmbedded runs a config through an embedded cluster of n workers and returns its files.
func mergeEmbedded(t *testing.T, config []byte, n int) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := embedded.New(embedded.Config{Workers: n, Version: "test", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	abs, _ := filepath.Abs(root)
	job, err := c.Client().Submit(ctx, protocol.Submit{Config: config, Path: "merge.yaml", Dir: abs, Workers: n})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client().Wait(ctx, job, nil); err != nil {
		st, _ := c.Client().Status(context.Background(), job)
		t.Fatalf("%v; last status %+v", err, st)
	}
	files, err := c.Client().Fetch(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		out[f.Name] = f.Data
	}
	return out
}

// mergeSingle runs the config through the single-process driver and returns its adapter.
func mergeSingle(t *testing.T, config []byte) []byte {
	t.Helper()
	s, err := spec.Parse(config, "merge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(root)
	s = s.Resolve(abs)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := pipeline.Run(context.Background(), pipeline.Options{Spec: s, Out: out, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// config returns the merge4 config with a method and extra parameter lines.
func config(method string, params ...string) []byte {
	c := "base_model: testdata/tiny-skills/model\nmethod: " + method + "\nadapters:\n"
	for _, n := range []string{"rev", "upc", "nxt", "srt"} {
		c += "  - {name: " + n + ", path: testdata/tiny-skills/adapters/" + n + ", calibration: testdata/tiny-skills/data/" + n + "/calib.jsonl}\n"
	}
	if method != "iteris" && method != "regmean" {
		c = "base_model: testdata/tiny-skills/model\nmethod: " + method + "\nadapters:\n"
		for _, n := range []string{"rev", "upc", "nxt", "srt"} {
			c += "  - {name: " + n + ", path: testdata/tiny-skills/adapters/" + n + "}\n"
		}
	}
	if len(params) > 0 {
		c += "parameters:\n"
		for _, p := range params {
			c += "  " + p + "\n"
		}
	}
	return []byte(c)
}

// TestEveryMethodIsByteIdenticalOnAnyWorkerCount is the cluster's acceptance test: every method
// and schedule on tiny-skills, through the embedded cluster with 1, 2 and 4 workers, writes the
// adapter_model.safetensors of the single-process driver byte for byte.
func TestEveryMethodIsByteIdenticalOnAnyWorkerCount(t *testing.T) {
	tests := []struct {
		name   string
		config []byte
		short  bool
	}{
		{"iteris sweep full", config("iteris", "objective: full", "schedule: sweep"), true},
		{"iteris sweep delta", config("iteris", "objective: delta", "schedule: sweep"), false},
		{"iteris jacobi delta", config("iteris", "objective: delta", "schedule: jacobi", "iterations: 3"), true},
		{"iteris jacobi full", config("iteris", "objective: full", "schedule: jacobi", "iterations: 2"), false},
		{"iteris residual refine", config("iteris", "objective: residual", "schedule: sweep", "samples: 16", "refine: {steps: 3, lr: 1.0e-3}"), true},
		{"iteris residual closed form", config("iteris", "objective: residual", "schedule: sweep", "samples: 16", "truncation: svd", "refine: {steps: 0}"), false},
		{"regmean", config("regmean"), true},
		{"cat", config("cat"), true},
		{"linear", config("linear"), false},
		{"svd", config("svd"), false},
		{"ties", config("ties"), false},
		{"ties_svd", config("ties_svd"), false},
		{"magnitude_prune", config("magnitude_prune"), false},
		{"magnitude_prune_svd", config("magnitude_prune_svd"), false},
		{"dare_linear", config("dare_linear"), false},
		{"dare_ties", config("dare_ties"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && !tc.short {
				t.Skip("-short runs one of each kind")
			}
			want := mergeSingle(t, tc.config)
			for _, n := range []int{1, 2, 4} {
				got := mergeEmbedded(t, tc.config, n)["adapter_model.safetensors"]
				if !bytes.Equal(got, want) {
					t.Errorf("%d workers: adapter_model.safetensors (%d bytes) differs from the single-process one (%d bytes)", n, len(got), len(want))
				}
			}
		})
	}
}
