package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iteris-dev/iteris/coordinator"
)

// nopFSM is a raft.FSM that keeps nothing.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

// singleRaft starts a one-node raft group on the in-memory transport and waits for it to lead.
func singleRaft(t *testing.T, id string) *raft.Raft {
	t.Helper()
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(id)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 25*time.Millisecond
	cfg.LogOutput = io.Discard
	store := raft.NewInmemStore()
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(id))
	r, err := raft.NewRaft(cfg, nopFSM{}, store, store, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown().Error() })
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: cfg.LocalID, Address: addr}}}).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a raft leader", func() error {
		if r.State() != raft.Leader {
			return errors.New(r.State().String())
		}
		return nil
	})
	return r
}

// waitFor polls cond until it returns nil or d passes, then fails with its last error.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeNode is a CoordinatorSource of a fixed state and a raft instance.
type fakeNode struct {
	s *coordinator.State
	r *raft.Raft
}

func (f fakeNode) View(fn func(s *coordinator.State)) { fn(f.s) }
func (f fakeNode) Raft() *raft.Raft                   { return f.r }

// expect asserts the values of samples.
func expect(t *testing.T, fs Families, want []sample) {
	t.Helper()
	for _, w := range want {
		got, err := fs.Value(w.name, w.labels...)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if got != w.value {
			t.Errorf("%s%s = %v, want %v", w.name, formatLabels(w.labels), got, w.value)
		}
	}
}

type sample struct {
	name   string
	labels []string
	value  float64
}

func TestCoordinatorCollector(t *testing.T) {
	r := singleRaft(t, "c0")
	reg := prometheus.NewPedanticRegistry()
	col := NewCoordinator(fakeNode{s: testState(), r: r})
	reg.MustRegister(col)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		col.Watch(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); <-done }()
	fs, err := Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, fs, []sample{
		{"iteris_jobs", []string{"state", "done"}, 1},
		{"iteris_jobs", []string{"state", "running"}, 1},
		{"iteris_jobs", []string{"state", "queued"}, 1},
		{"iteris_jobs", []string{"state", "failed"}, 0},
		{"iteris_tasks", []string{"kind", "calibrate", "state", "done"}, 2},
		{"iteris_tasks", []string{"kind", "sweep", "state", "done"}, 2},
		{"iteris_tasks", []string{"kind", "jacobi", "state", "pending"}, 2},
		{"iteris_tasks", []string{"kind", "jacobi", "state", "dispatched"}, 1},
		{"iteris_tasks", []string{"kind", "weightonly", "state", "done"}, 0},
		{"iteris_task_dispatches_total", []string{"kind", "calibrate"}, 4},
		{"iteris_task_failures_total", []string{"kind", "calibrate"}, 1},
		{"iteris_task_ignored_results_total", []string{"kind", "calibrate"}, 1},
		{"iteris_task_duration_seconds", []string{"kind", "sweep"}, 2},
		{"iteris_step_duration_seconds", []string{"kind", "sweep"}, 1},
		{"iteris_step_duration_seconds", []string{"kind", "jacobi"}, 0},
		{"iteris_task_artifact_bytes", []string{"direction", "in"}, 445},
		{"iteris_task_artifact_bytes", []string{"direction", "out"}, 666},
		{"iteris_workers", []string{"state", "assigned"}, 1},
		{"iteris_workers", []string{"state", "lost"}, 1},
		{"iteris_raft_state", []string{"state", "leader"}, 1},
		{"iteris_raft_state", []string{"state", "follower"}, 0},
		{"iteris_raft_voters", nil, 1},
		{"iteris_raft_leader_known", nil, 1},
		{"iteris_raft_leader_changes_total", nil, 1},
		{"iteris_raft_last_contact_seconds", nil, 0},
		{"iteris_raft_term", nil, float64(r.CurrentTerm())},
		{"iteris_raft_commit_index", nil, float64(r.CommitIndex())},
		{"iteris_raft_last_log_index", nil, float64(r.LastIndex())},
	})
	// The sweep tasks took 40 s and 0.25 s: one in the 0.5 s bucket, both by 60 s.
	h := fs["iteris_task_duration_seconds"]
	ms, _ := fs.Match("iteris_task_duration_seconds", "kind", "sweep")
	if h.GetType().String() != "HISTOGRAM" || len(ms) != 1 || ms[0].Histogram.GetSampleSum() != 40.25 {
		t.Fatalf("sweep durations %v", ms)
	}
	cum := map[float64]uint64{}
	for _, b := range ms[0].Histogram.GetBucket() {
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	if cum[0.1] != 0 || cum[0.5] != 1 || cum[30] != 1 || cum[60] != 2 || cum[14400] != 2 {
		t.Fatalf("sweep duration buckets %v", cum)
	}
}

// A coordinator that has not started raft reports the state metrics only.
func TestCoordinatorCollectorWithoutRaft(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCoordinator(fakeNode{s: coordinator.NewState()}))
	fs, err := Gather(reg)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, fs, []sample{{"iteris_jobs", []string{"state", "running"}, 0}})
	if _, ok := fs["iteris_raft_term"]; ok {
		t.Fatal("raft metrics without raft")
	}
}

// Leader changes count new leaders only: the same leader seen again is not a change.
func TestNoteLeader(t *testing.T) {
	c := NewCoordinator(fakeNode{s: coordinator.NewState()})
	for i, step := range []struct {
		id   string
		want bool
	}{{"", false}, {"a", true}, {"a", false}, {"", false}, {"a", false}, {"b", true}, {"a", true}} {
		if got := c.noteLeader(step.id); got != step.want {
			t.Fatalf("step %d (%q): %v, want %v", i, step.id, got, step.want)
		}
	}
	if c.changes != 3 {
		t.Fatalf("%d changes, want 3", c.changes)
	}
}

// Raft's own go-metrics reach the registry under the iteris_ prefix; go-metrics is global, so a
// second bridge is refused.
func TestBridgeGoMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := BridgeGoMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := BridgeGoMetrics(prometheus.NewRegistry()); !errors.Is(err, ErrBridged) {
		t.Fatalf("second bridge: %v, want ErrBridged", err)
	}
	r := singleRaft(t, "b0")
	for i := 0; i < 3; i++ {
		if err := r.Apply([]byte("x"), time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "raft's apply counter", func() error {
		fs, err := Gather(reg)
		if err != nil {
			return err
		}
		v, err := fs.Value("iteris_raft_apply")
		if err != nil {
			return err
		}
		if v < 3 {
			return errors.New("fewer than 3 applies")
		}
		if _, err := fs.Value("iteris_raft_state_leader"); err != nil {
			return err
		}
		return nil
	})
}
