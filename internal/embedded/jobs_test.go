package embedded_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/embedded"
	"github.com/iteris-dev/iteris/internal/pipeline"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/protocol"
)

func startCluster(t *testing.T, n int) *embedded.Cluster {
	t.Helper()
	c, err := embedded.New(embedded.Config{Workers: n, Version: "test", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestJobsQueueWithoutMixing submits three jobs at once to a cluster of two workers: each job
// takes both workers, so they queue and run one after another, and each gives the adapter its
// config gives alone.
func TestJobsQueueWithoutMixing(t *testing.T) {
	c := startCluster(t, 2)
	abs, _ := filepath.Abs(root)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	configs := [][]byte{config("cat"), config("regmean"), config("ties")}
	var jobs []string
	for _, cfg := range configs {
		job, err := c.Client().Submit(ctx, protocol.Submit{Config: cfg, Path: "merge.yaml", Dir: abs, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job)
	}
	st, err := c.Client().Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Jobs) != 3 {
		t.Fatalf("%d jobs in the status, want 3", len(st.Jobs))
	}
	for i, job := range jobs {
		if _, err := c.Client().Wait(ctx, job, nil); err != nil {
			t.Fatal(err)
		}
		files, err := c.Client().Fetch(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		want := mergeSingle(t, configs[i])
		for _, f := range files {
			if f.Name == "adapter_model.safetensors" && !bytes.Equal(f.Data, want) {
				t.Errorf("job %d (%s): adapter differs from the single-process merge of its config", i, job)
			}
		}
	}
}

// TestRefusedConfigLeavesClusterIdle submits configs that iteris merge refuses: the cluster
// refuses them at submit with the single-process message, records no job and dispatches nothing.
func TestRefusedConfigLeavesClusterIdle(t *testing.T) {
	c := startCluster(t, 2)
	abs, _ := filepath.Abs(root)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bad := map[string][]byte{
		"missing adapter":  bytes.Replace(config("iteris"), []byte("adapters/rev"), []byte("adapters/nope"), 1),
		"too many samples": append(config("iteris"), []byte("parameters: {samples: 1000}\n")...),
		"unknown key":      append(config("cat"), []byte("bogus: 1\n")...),
	}
	for name, cfg := range bad {
		t.Run(name, func(t *testing.T) {
			single := singleError(t, cfg, abs)
			_, err := c.Client().Submit(ctx, protocol.Submit{Config: cfg, Path: "merge.yaml", Dir: abs})
			var re *client.RefusedError
			if !errors.As(err, &re) || re.Code != protocol.CodeInvalidConfig {
				t.Fatalf("submit: %v, want an invalid_config refusal", err)
			}
			if re.Message != single {
				t.Errorf("cluster says\n  %s\nthe single-process merge says\n  %s", re.Message, single)
			}
		})
	}
	st, err := c.Client().Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Jobs) != 0 {
		t.Errorf("%d jobs recorded after refusals, want 0", len(st.Jobs))
	}
	for _, w := range st.Workers {
		if w.Job != "" {
			t.Errorf("worker %s holds %s after refusals", w.Worker, w.Job)
		}
	}
}

// singleError returns the single-process merge's error message for a config, run from dir as
// `iteris merge` would be (relative paths as given).
func singleError(t *testing.T, cfg []byte, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	t.Chdir(dir)
	s, err := spec.Parse(cfg, "merge.yaml")
	if err != nil {
		return err.Error()
	}
	_, err = pipeline.Run(context.Background(), pipeline.Options{Spec: s, Out: out})
	if err == nil {
		t.Fatal("the single-process merge accepted the config")
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Errorf("the refused single-process merge created %s", out)
	}
	return strings.TrimSpace(err.Error())
}
