package embedded_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/embedded"
	"github.com/iteris-dev/iteris/internal/inputs"
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

var _ = inputs.ErrInput

func TestEmbeddedMergeMatchesSingleProcess(t *testing.T) {
	config, err := os.ReadFile(filepath.Join(root, "examples/merge4.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := mergeSingle(t, config)
	for _, n := range []int{1, 2} {
		files := mergeEmbedded(t, config, n)
		got := files["adapter_model.safetensors"]
		if !bytes.Equal(got, want) {
			t.Errorf("%d workers: adapter_model.safetensors (%d bytes) differs from the single-process one (%d bytes)", n, len(got), len(want))
		}
		for _, f := range []string{"adapter_config.json", "README.md", "merge_report.json", "iteris_config.yaml"} {
			if len(files[f]) == 0 {
				t.Errorf("%d workers: no %s", n, f)
			}
		}
	}
}
