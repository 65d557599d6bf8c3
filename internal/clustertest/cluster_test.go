package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/embedded"
	"github.com/iteris-dev/iteris/protocol"
)

const config = "examples/merge4.yaml"

// embeddedAdapter runs the config through the in-process embedded cluster (what `iteris merge`
// does) and returns adapter_model.safetensors.
func embeddedAdapter(t *testing.T, workers int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := embedded.New(embedded.Config{Workers: workers, Version: "test", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := os.ReadFile(filepath.Join(Root(), config))
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Client().Submit(ctx, protocol.Submit{Config: b, Path: config, Dir: Root(), Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client().Wait(ctx, job, nil); err != nil {
		t.Fatal(err)
	}
	files, err := c.Client().Fetch(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name == "adapter_model.safetensors" {
			return f.Data
		}
	}
	t.Fatal("no adapter_model.safetensors")
	return nil
}

// waitSubmit waits for an `iteris submit --wait` process and returns the adapter it wrote.
func waitSubmit(t *testing.T, p *Proc, out string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("iteris submit: %v\n%s", err, p.Log())
	}
	b, err := os.ReadFile(filepath.Join(out, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loaded reads a worker's loaded.json.
type loaded struct {
	Lo, Hi  int
	Tensors []struct {
		Name  string
		Bytes int64
	}
}

func readLoaded(t *testing.T, dir string) loaded {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "loaded.json"))
	if err != nil {
		t.Fatal(err)
	}
	var l loaded
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// checkShardReads asserts that a worker read exactly its shard's tensors.
func checkShardReads(t *testing.T, dir string, layers int) {
	t.Helper()
	l := readLoaded(t, dir)
	if l.Hi <= l.Lo {
		t.Fatalf("%s: shard [%d, %d)", dir, l.Lo, l.Hi)
	}
	for _, ts := range l.Tensors {
		n := ts.Name
		ok := (n == "model.embed_tokens.weight" && l.Lo == 0) || ((n == "model.norm.weight" || n == "lm_head.weight") && l.Hi == layers)
		for i := l.Lo; i < l.Hi; i++ {
			ok = ok || strings.HasPrefix(n, fmt.Sprintf("model.layers.%d.", i))
		}
		if !ok || ts.Bytes <= 0 {
			t.Errorf("%s: the worker of layers [%d, %d) read %s (%d bytes)", dir, l.Lo, l.Hi, n, ts.Bytes)
		}
	}
	if want := 9*(l.Hi-l.Lo) + map[bool]int{true: 1}[l.Lo == 0] + map[bool]int{true: 2}[l.Hi == layers]; len(l.Tensors) != want {
		t.Errorf("%s: read %d tensors, want %d for layers [%d, %d)", dir, len(l.Tensors), want, l.Lo, l.Hi)
	}
}

// TestLoopbackClusterMatchesEmbedded runs the tiny-skills merge on separate processes (the
// pinned nats-server, 3 coordinators, 2 workers, iteris submit --wait) and compares the adapter
// with the embedded run's, byte for byte; each worker read only its shard.
func TestLoopbackClusterMatchesEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and six iteris processes")
	}
	want := embeddedAdapter(t, 2)
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2})
	out := filepath.Join(t.TempDir(), "out")
	got := waitSubmit(t, c.Submit(config, out, "--workers", "2"), out)
	if !bytes.Equal(got, want) {
		t.Fatalf("adapter_model.safetensors from the loopback cluster (%d bytes) differs from the embedded run's (%d bytes)", len(got), len(want))
	}
	for _, id := range []string{"w0", "w1"} {
		checkShardReads(t, c.WorkerDir(id), 4)
	}
}

// TestWorkerStartedAfterSubmit submits before any worker runs; the job waits, then runs when the
// workers start, and gives the same adapter.
func TestWorkerStartedAfterSubmit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and six iteris processes")
	}
	want := embeddedAdapter(t, 2)
	c := StartCluster(t, Options{Coordinators: 3, Workers: 0})
	out := filepath.Join(t.TempDir(), "out")
	sub := c.Submit(config, out, "--workers", "2")
	ctx := context.Background()
	Eventually(t, 30*time.Second, "the job is queued", func() error {
		j, err := c.Job(ctx)
		if err != nil {
			return err
		}
		if j.State != "queued" {
			return fmt.Errorf("job is %s", j.State)
		}
		return nil
	})
	c.StartWorker("w0")
	c.StartWorker("w1")
	got := waitSubmit(t, sub, out)
	if !bytes.Equal(got, want) {
		t.Fatalf("adapter_model.safetensors (%d bytes) differs from the embedded run's (%d bytes)", len(got), len(want))
	}
}
