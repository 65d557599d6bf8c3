package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/embedded"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/output"
	"github.com/iteris-dev/iteris/internal/pipeline"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/internal/synth"
	"github.com/iteris-dev/iteris/layerplan"
	"github.com/iteris-dev/iteris/protocol"
)

// TestClusterBenchmark measures the cluster against the single-process driver (bench/cluster.sh
// runs it; it is skipped unless ITERIS_CLUSTER_BENCH=1): wall time of the single process and of
// the embedded cluster with 1, 2 and 4 workers in the same run, the bytes each step moved, and
// the peak RSS of each worker process of a loopback cluster beside the plan's estimate. It prints
// markdown tables. ITERIS_CLUSTER_BENCH_TINY_ONLY=1 runs the tiny-skills case only: the 155.7M
// case runs 4*RUNS + 1 merges of about a minute each on 2 cores.
func TestClusterBenchmark(t *testing.T) {
	if os.Getenv("ITERIS_CLUSTER_BENCH") != "1" {
		t.Skip("set ITERIS_CLUSTER_BENCH=1 (bench/cluster.sh)")
	}
	// The products on OpenBLAS when it is installed, as `iteris merge` runs them (a test binary
	// otherwise stays on gonum's pure-Go BLAS).
	be, err := linalg.Init(linalg.ModeAuto)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("blas: %s\n", be)
	runs := 3
	if v, err := strconv.Atoi(os.Getenv("RUNS")); err == nil && v > 0 {
		runs = v
	}
	benchCase(t, "tiny-skills merge4 (full objective, sweep)", Root(), fullConfig(Root()), runs)
	if os.Getenv("ITERIS_CLUSTER_BENCH_TINY_ONLY") == "1" {
		fmt.Printf("\nITERIS_CLUSTER_BENCH_TINY_ONLY=1: the 155.7M case is not run\n")
		return
	}
	benchCase(t, "155.7M Llama, 4 random rank-16 adapters, 16 x 64 tokens each (delta objective, sweep)", benchDir(t), synthConfig(t), runs)
}

func fullConfig(root string) string {
	b, _ := os.ReadFile(filepath.Join(root, "examples/merge4.yaml"))
	s := strings.Replace(string(b), "objective: residual", "objective: full", 1)
	return s
}

func benchDir(t *testing.T) string {
	dir := os.Getenv("ITERIS_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "iteris-bench-cluster")
	}
	return dir
}

// synthConfig generates the 155.7M model, four adapters and their calibration files.
func synthConfig(t *testing.T) string {
	dir := benchDir(t)
	if err := synth.WriteModel(filepath.Join(dir, "model"), synth.Bench155M); err != nil {
		t.Fatal(err)
	}
	cfg := "base_model: model\nmethod: iteris\nadapters:\n"
	for i := 0; i < 4; i++ {
		a := fmt.Sprintf("adapter%d", i)
		if err := synth.WriteAdapter(filepath.Join(dir, a), synth.Bench155M, 16, uint64(10+i)); err != nil {
			t.Fatal(err)
		}
		if err := synth.WriteCalibration(filepath.Join(dir, a+".jsonl"), 16, 64, synth.Bench155M.Vocab, uint64(20+i)); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("  - {name: t%d, path: %s, calibration: %s.jsonl}\n", i, a, a)
	}
	// The delta objective: its solve stays at the adapters' rank, so the merge is capture and
	// hand-off (what the cluster adds to), not float64 dense solves and SVDs of 1024 x 2816 updates
	// (the full objective took about a quarter of an hour per merge here).
	return cfg + "parameters: {samples: 16, objective: delta, schedule: sweep}\noutput: {rank: auto}\n"
}

func benchCase(t *testing.T, name, dir, config string, runs int) {
	s, err := spec.Parse([]byte(config), "bench.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s = s.Resolve(dir)
	single := median(runs, func() float64 {
		t0 := time.Now()
		out := filepath.Join(t.TempDir(), "out")
		if _, err := pipeline.Run(context.Background(), pipeline.Options{Spec: s, Out: out, Version: "bench"}); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0).Seconds()
	})
	fmt.Printf("\n### %s\n\n| path | wall s (median of %d) | ratio to single process |\n|---|---|---|\n", name, runs)
	fmt.Printf("| single process (`--workers 0`) | %.2f | 1.00 |\n", single)
	var report *output.Report
	for _, n := range []int{1, 2, 4} {
		w := median(runs, func() float64 {
			t0 := time.Now()
			report = benchEmbeddedRun(t, config, dir, n)
			return time.Since(t0).Seconds()
		})
		fmt.Printf("| embedded cluster, %d worker(s) | %.2f | %.2f |\n", n, w, w/single)
	}
	fmt.Printf("\nbytes moved per step (embedded, 4 workers):\n\n| step | bytes in | bytes out |\n|---|---|---|\n")
	for _, st := range report.Cluster.Steps {
		fmt.Printf("| %s | %s | %s |\n", st.Step, layerplan.FormatSize(st.BytesIn), layerplan.FormatSize(st.BytesOut))
	}
	workerRSS(t, dir, config, s)
}

func median(n int, f func() float64) float64 {
	var xs []float64
	for i := 0; i < n; i++ {
		xs = append(xs, f())
	}
	for i := range xs {
		for j := i + 1; j < len(xs); j++ {
			if xs[j] < xs[i] {
				xs[i], xs[j] = xs[j], xs[i]
			}
		}
	}
	return xs[len(xs)/2]
}

// benchEmbeddedRun merges through an in-process cluster and returns the report.
func benchEmbeddedRun(t *testing.T, config, dir string, n int) *output.Report {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := embedded.New(embedded.Config{Workers: n, Version: "bench", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	job, err := c.Client().Submit(ctx, protocol.Submit{Config: []byte(config), Path: "bench.yaml", Dir: dir, Workers: n})
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
	var r output.Report
	for _, f := range files {
		if f.Name == "merge_report.json" {
			if err := json.Unmarshal(f.Data, &r); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &r
}

// workerRSS runs the merge on a loopback cluster of 2 worker processes and prints each worker's
// peak RSS beside the plan's estimate of its shard.
func workerRSS(t *testing.T, dir, config string, s *spec.Spec) {
	// Each worker offers 10% more than the plan's largest shard: its Go memory limit (the
	// --memory budget) then holds the heap near the estimate, as on a node sized by the plan.
	in, err := mergejob.PlanInput(s)
	if err != nil {
		t.Fatal(err)
	}
	big := int64(64 << 30)
	plan, err := layerplan.Build(in, []layerplan.Worker{{ID: "w0", Memory: big}, {ID: "w1", Memory: big}})
	if err != nil {
		t.Fatal(err)
	}
	var largest int64
	for _, sh := range plan.Shards {
		largest = max(largest, sh.Footprint.Peak)
	}
	memory := fmt.Sprintf("%dMiB", (largest*11/10+(1<<20)-1)>>20)
	c := StartCluster(t, Options{Coordinators: 1, Workers: 2, WorkerMemory: memory, Lease: time.Minute})
	path := filepath.Join(t.TempDir(), "bench.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	p := Start(t, "submit", dir, "submit", path, out, "--nats", c.NATS.URL(), "--wait", "--progress", "none", "--workers", "2", "--insecure")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("submit: %v\n%s", err, p.Log())
	}
	fmt.Printf("\nloopback cluster, 2 worker processes (--memory %s, the Go memory limit):\n\n| worker | layers | peak RSS | plan estimate |\n|---|---|---|---|\n", memory)
	for i, w := range c.Workers {
		l := readLoaded(t, c.WorkerDir(w.Name))
		est := int64(0)
		for _, sh := range plan.Shards {
			if sh.Lo == l.Lo && sh.Hi == l.Hi {
				est = sh.Footprint.Peak
			}
		}
		fmt.Printf("| w%d | [%d, %d) | %s | %s |\n", i, l.Lo, l.Hi, layerplan.FormatSize(w.PeakRSS()), layerplan.FormatSize(est))
	}
}
