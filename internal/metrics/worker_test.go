package metrics

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/natsserver"
	"github.com/iteris-dev/iteris/protocol"
)

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestWorkerCollector(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	w := NewWorker(3 << 30)
	w.now = clk.now
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(w)
	gather := func() Families {
		t.Helper()
		fs, err := Gather(reg)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	expect(t, gather(), []sample{
		{"iteris_worker_shard_loaded", nil, 0},
		{"iteris_worker_busy_seconds_total", nil, 0},
		{"iteris_worker_memory_budget_bytes", nil, 3 << 30},
	})
	a := protocol.Assignment{ShardRef: protocol.ShardRef{Job: "j1", Shard: 1}, Lo: 2, Hi: 4, Shards: 2}
	w.ShardLoaded(a, 1.25)
	sweep := protocol.Task{TaskKey: protocol.TaskKey{Job: "j1", Step: 1, Shard: 1}, Kind: protocol.StepSweep, Attempt: 1}
	w.TaskStarted(sweep)
	clk.t = clk.t.Add(7 * time.Second)
	expect(t, gather(), []sample{
		{"iteris_worker_shard_loaded", nil, 1},
		{"iteris_worker_shard_info", []string{"job", "j1", "shard", "1", "lo", "2", "hi", "4"}, 1},
		{"iteris_worker_shard_load_seconds", nil, 1.25},
		{"iteris_worker_shard_loads_total", nil, 1},
		{"iteris_worker_task_running", nil, 1},
		{"iteris_worker_busy_seconds_total", nil, 7}, // the task in progress counts
	})
	clk.t = clk.t.Add(3 * time.Second)
	w.TaskEnded(sweep, protocol.Result{TaskKey: sweep.TaskKey, Attempt: 1, Stats: protocol.Stats{Seconds: 10, BytesIn: 100, BytesOut: 50}})
	cal := protocol.Task{TaskKey: protocol.TaskKey{Job: "j1", Step: 0, Shard: 1}, Kind: protocol.StepCalibrate, Attempt: 2}
	w.TaskStarted(cal)
	clk.t = clk.t.Add(2 * time.Second)
	w.TaskEnded(cal, protocol.Result{TaskKey: cal.TaskKey, Attempt: 2, Error: protocol.Errorf(protocol.CodeTaskFailed, "ring"), Stats: protocol.Stats{Seconds: 2, BytesIn: 1}})
	clk.t = clk.t.Add(time.Hour) // idle time is not busy time
	fs := gather()
	expect(t, fs, []sample{
		{"iteris_worker_task_running", nil, 0},
		{"iteris_worker_busy_seconds_total", nil, 12},
		{"iteris_worker_tasks_total", []string{"kind", "sweep", "outcome", "done"}, 1},
		{"iteris_worker_tasks_total", []string{"kind", "calibrate", "outcome", "failed"}, 1},
		{"iteris_worker_tasks_total", []string{"kind", "calibrate", "outcome", "done"}, 0},
		{"iteris_worker_task_duration_seconds", []string{"kind", "sweep"}, 1},
		{"iteris_worker_bytes_total", []string{"direction", "in"}, 101},
		{"iteris_worker_bytes_total", []string{"direction", "out"}, 50},
	})
	w.ShardDropped(protocol.ShardRef{Job: "other", Shard: 1}) // not the shard held
	expect(t, gather(), []sample{{"iteris_worker_shard_loaded", nil, 1}})
	w.ShardDropped(a.ShardRef)
	fs = gather()
	expect(t, fs, []sample{{"iteris_worker_shard_loaded", nil, 0}})
	if _, ok := fs["iteris_worker_shard_info"]; ok {
		t.Fatal("shard info after the shard was dropped")
	}
}

// The registry of a process names the Go runtime's and the process's metrics with the prefix.
func TestNewRegistry(t *testing.T) {
	fs, err := Gather(NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"iteris_go_goroutines", "iteris_process_resident_memory_bytes"} {
		v, err := fs.Value(name)
		if err != nil || v <= 0 {
			t.Errorf("%s = %v (%v), want > 0", name, v, err)
		}
	}
	for _, n := range fs.Names() {
		if !strings.HasPrefix(n, Prefix) {
			t.Errorf("metric %s without the %s prefix", n, Prefix)
		}
	}
}

func TestStoreCollector(t *testing.T) {
	e, err := natsserver.New(natsserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewStore(js))
	fs, err := Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, fs, []sample{{"iteris_artifact_store_up", nil, 1}, {"iteris_artifact_store_bytes", nil, 0}, {"iteris_artifact_store_buckets", nil, 0}})

	store, err := artifact.NewJetStream(js, artifact.JetStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i, job := range []string{"j1", "j2"} {
		content := make([]byte, 5000) // incompressible, so the stored size is at least its length
		rand.NewChaCha8([32]byte{byte(i)}).Read(content)
		if _, err := store.Put(ctx, job, protocol.KindSequences, content); err != nil {
			t.Fatal(err)
		}
	}
	// A bucket that is not an artifact bucket is not counted.
	if _, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "other"}); err != nil {
		t.Fatal(err)
	}
	fs, err = Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, fs, []sample{{"iteris_artifact_store_up", nil, 1}, {"iteris_artifact_store_buckets", nil, 2}})
	if v, _ := fs.Value("iteris_artifact_store_bytes"); v < 2*5000 {
		t.Fatalf("artifact store bytes %v, want at least the 10000 bytes put", v)
	}
	nc.Close() // the listing fails: up 0, no sizes
	fs, err = Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, fs, []sample{{"iteris_artifact_store_up", nil, 0}})
	if _, ok := fs["iteris_artifact_store_bytes"]; ok {
		t.Fatal("store bytes reported after a failed listing")
	}
}
