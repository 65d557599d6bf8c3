package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/metrics"
)

// quickJacobi is the paper's setting with two solves on the tiny-skills adapters: a quick merge
// with three steps (calibrate, jacobi 1, jacobi 2), so 6 tasks on 2 shards.
const quickJacobi = `base_model: testdata/tiny-skills/model
method: iteris
adapters:
  - {name: rev, path: testdata/tiny-skills/adapters/rev, calibration: testdata/tiny-skills/data/rev/calib.jsonl}
  - {name: upc, path: testdata/tiny-skills/adapters/upc, calibration: testdata/tiny-skills/data/upc/calib.jsonl}
parameters: {objective: delta, schedule: jacobi, iterations: 2, samples: 8}
`

// writeConfig writes a config into a temporary directory; its paths are relative to the
// repository root, where the cluster's processes run.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "merge.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// probe returns the status code and body of an endpoint.
func probe(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, string(b), err
}

// wantProbe returns a condition: the endpoint answers code.
func wantProbe(url string, code int) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		got, body, err := probe(ctx, url)
		if err != nil {
			return err
		}
		if got != code {
			return fmt.Errorf("GET %s: %d %q, want %d", url, got, strings.TrimSpace(body), code)
		}
		return nil
	}
}

// scrape gets a process's /metrics.
func scrape(t *testing.T, c *Cluster, name string) metrics.Families {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs, err := metrics.Scrape(ctx, "http://"+c.MetricsAddr(name)+"/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", name, err)
	}
	return fs
}

// check asserts one sample's value.
func check(t *testing.T, who string, fs metrics.Families, want float64, name string, labels ...string) {
	t.Helper()
	got, err := fs.Value(name, labels...)
	if err != nil {
		t.Errorf("%s: %v", who, err)
	} else if got != want {
		t.Errorf("%s: %s %q = %v, want %v", who, name, labels, got, want)
	}
}

// TestLoopbackMetricsAndHealth runs a merge on 3 coordinators and 2 workers with
// --metrics-addr, probes /healthz and /readyz of every process before, during and after it, and
// asserts the task counts every process reports once the merge is done.
func TestLoopbackMetricsAndHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and six iteris processes")
	}
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2, Metrics: true})
	coords, workers := []string{"c0", "c1", "c2"}, []string{"w0", "w1"}
	for _, name := range append(coords, workers...) {
		Eventually(t, 30*time.Second, name+" is alive", wantProbe("http://"+c.MetricsAddr(name)+"/healthz", 200))
	}
	for _, name := range coords {
		Eventually(t, 30*time.Second, name+" is ready", wantProbe("http://"+c.MetricsAddr(name)+"/readyz", 200))
	}
	for _, name := range workers { // no shard before a job
		if err := wantProbe("http://"+c.MetricsAddr(name)+"/readyz", 503)(); err != nil {
			t.Fatal(err)
		}
	}
	// While the job runs, each worker becomes ready once its shard is loaded.
	var mu sync.Mutex
	ready := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, name := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if wantProbe("http://"+c.MetricsAddr(name)+"/readyz", 200)() == nil {
					mu.Lock()
					ready[name] = true
					mu.Unlock()
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	out := filepath.Join(t.TempDir(), "out")
	waitSubmit(t, c.Submit(writeConfig(t, quickJacobi), out, "--workers", "2"), out)
	close(stop)
	wg.Wait()
	for _, name := range workers {
		if !ready[name] {
			t.Errorf("%s never answered /readyz with 200 while the job ran", name)
		}
	}

	leaders := 0.0
	for _, name := range coords {
		var fs metrics.Families
		// Followers apply the last commands a moment after the leader.
		Eventually(t, 10*time.Second, name+" reports the job done", func() error {
			fs = scrape(t, c, name)
			if v, err := fs.Value("iteris_jobs", "state", "done"); err != nil || v != 1 {
				return fmt.Errorf("iteris_jobs{state=done} = %v (%v)", v, err)
			}
			return nil
		})
		for _, kind := range []string{"calibrate", "jacobi"} {
			want := map[string]float64{"calibrate": 2, "jacobi": 4}[kind]
			check(t, name, fs, want, "iteris_tasks", "kind", kind, "state", "done")
			check(t, name, fs, want, "iteris_task_duration_seconds", "kind", kind)
			for _, st := range []string{"pending", "dispatched", "skipped"} {
				check(t, name, fs, 0, "iteris_tasks", "kind", kind, "state", st)
			}
			if v, _ := fs.Value("iteris_task_dispatches_total", "kind", kind); v < want {
				t.Errorf("%s: %v %s dispatches for %v tasks", name, v, kind, want)
			}
		}
		check(t, name, fs, 1, "iteris_step_duration_seconds", "kind", "calibrate")
		check(t, name, fs, 2, "iteris_step_duration_seconds", "kind", "jacobi")
		check(t, name, fs, 0, "iteris_tasks", "kind", "sweep", "state", "done")
		check(t, name, fs, 0, "iteris_jobs", "state", "running")
		check(t, name, fs, 2, "iteris_workers", "state", "free")
		check(t, name, fs, 3, "iteris_raft_voters")
		check(t, name, fs, 1, "iteris_raft_leader_known")
		check(t, name, fs, 1, "iteris_artifact_store_up")
		if v, _ := fs.Value("iteris_task_artifact_bytes", "direction", "out"); v <= 0 {
			t.Errorf("%s: no artifact bytes written by the tasks", name)
		}
		if v, _ := fs.Value("iteris_raft_commit_index"); v <= 0 {
			t.Errorf("%s: raft commit index %v", name, v)
		}
		if v, _ := fs.Value("iteris_raft_leader_changes_total"); v < 1 {
			t.Errorf("%s: %v leader changes", name, v)
		}
		if name == leaderOf(t, c) {
			for _, m := range []string{"iteris_raft_apply", "iteris_raft_commitTime"} { // raft's own, bridged
				if _, err := fs.Match(m); err != nil {
					t.Errorf("%s: raft's go-metrics are not bridged: %v", name, err)
				}
			}
		}
		v, _ := fs.Value("iteris_raft_state", "state", "leader")
		leaders += v
	}
	if leaders != 1 {
		t.Errorf("%v coordinators report being the raft leader, want 1", leaders)
	}
	for _, name := range workers {
		fs := scrape(t, c, name)
		check(t, name, fs, 1, "iteris_worker_tasks_total", "kind", "calibrate", "outcome", "done")
		check(t, name, fs, 2, "iteris_worker_tasks_total", "kind", "jacobi", "outcome", "done")
		check(t, name, fs, 0, "iteris_worker_tasks_total", "kind", "jacobi", "outcome", "failed")
		check(t, name, fs, 2, "iteris_worker_task_duration_seconds", "kind", "jacobi")
		check(t, name, fs, 1, "iteris_worker_shard_loads_total")
		check(t, name, fs, 0, "iteris_worker_task_running")
		check(t, name, fs, 4<<30, "iteris_worker_memory_budget_bytes")
		for _, m := range []string{"iteris_worker_busy_seconds_total", "iteris_process_resident_memory_bytes"} {
			if v, err := fs.Value(m); err != nil || v <= 0 {
				t.Errorf("%s: %s = %v (%v)", name, m, v, err)
			}
		}
		if v, _ := fs.Value("iteris_worker_bytes_total", "direction", "out"); v <= 0 {
			t.Errorf("%s: wrote no artifact bytes", name)
		}
	}
}

// leaderOf returns the leader's id as the job API reports it.
func leaderOf(t *testing.T, c *Cluster) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestWorkersExitAfterJob: workers started with --exit-after-job (what the Kubernetes Job of
// workers runs) exit with status 0 once the merge has ended, so the Job completes and its
// accelerators are released.
func TestWorkersExitAfterJob(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and four iteris processes")
	}
	c := StartCluster(t, Options{Coordinators: 1, Workers: 2, WorkerArgs: []string{"--exit-after-job"}})
	out := filepath.Join(t.TempDir(), "out")
	waitSubmit(t, c.Submit(writeConfig(t, quickJacobi), out, "--workers", "2"), out)
	for _, w := range c.Workers {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.Wait(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s still runs 30 s after the job ended", w.Name)
		}
		if err != nil {
			t.Fatalf("%s: %v", w.Name, err)
		}
		if !strings.Contains(w.Log(), "the job ended: exiting") {
			t.Fatalf("%s exited without saying why:\n%s", w.Name, w.Log())
		}
	}
}
