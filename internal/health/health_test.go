package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "iteris_test_gauge", Help: "A gauge."})
	g.Set(42)
	reg.MustRegister(g)
	var ready atomic.Bool
	srv, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg, Ready: func() error {
		if !ready.Load() {
			return errors.New("no shard loaded")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != "" {
		t.Fatalf("address %q before Start", srv.Addr())
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := "http://" + srv.Addr()
	for _, c := range []struct {
		path       string
		ready      bool
		code       int
		bodyPrefix string
	}{
		{PathHealthz, false, 200, "ok\n"},
		{PathReadyz, false, 503, "not ready: no shard loaded\n"},
		{PathReadyz, true, 200, "ready\n"},
		{PathMetrics, true, 200, "# HELP iteris_test_gauge A gauge.\n# TYPE iteris_test_gauge gauge\niteris_test_gauge 42\n"},
		{"/nothing", true, 404, "404 page not found"},
	} {
		ready.Store(c.ready)
		code, body := get(t, base+c.path)
		if code != c.code || !strings.HasPrefix(body, c.bodyPrefix) {
			t.Errorf("GET %s (ready %v): %d %q, want %d %q", c.path, c.ready, code, body, c.code, c.bodyPrefix)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + PathHealthz); err == nil {
		t.Fatal("the server still answers after Close")
	}
}

func TestConfigValidate(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, c := range []Config{{Addr: "nohost", Gatherer: reg}, {Addr: "127.0.0.1:0"}} {
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v): %v, want ErrConfig", c, err)
		}
	}
	srv, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil { // never started
		t.Fatal(err)
	}
	taken, err := New(Config{Addr: "127.0.0.1:0", Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := taken.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	again, _ := New(Config{Addr: taken.Addr(), Gatherer: reg})
	if err := again.Start(context.Background()); err == nil || !strings.Contains(err.Error(), taken.Addr()) {
		t.Fatalf("listening on a taken address: %v", err)
	}
}

type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

// newRaft starts a raft node on the in-memory transport; bootstrap makes it a one-node group.
func newRaft(t *testing.T, id string, bootstrap bool) *raft.Raft {
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
	if bootstrap {
		if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: cfg.LocalID, Address: addr}}}).Error(); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func TestRaftReady(t *testing.T) {
	if err := RaftReady(nil, "c0"); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("nil raft: %v", err)
	}
	lone := newRaft(t, "c9", false) // no configuration at all
	if err := RaftReady(lone, "c9"); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "not a voter") {
		t.Fatalf("raft without a configuration: %v", err)
	}
	// A member of a two-node group whose peer never starts: no quorum, no leader.
	half := newRaft(t, "h0", false)
	if err := half.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "h0", Address: "h0"}, {ID: "h1", Address: "h1"}}}).Error(); err != nil {
		t.Fatal(err)
	}
	if err := RaftReady(half, "h0"); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "no known raft leader") {
		t.Fatalf("a group without quorum: %v", err)
	}
	r := newRaft(t, "c0", true)
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for err = RaftReady(r, "c0"); err != nil && time.Now().Before(deadline); err = RaftReady(r, "c0") {
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("a one-node group that leads: %v", err)
	}
	if err := RaftReady(r, "c1"); err == nil || !strings.Contains(err.Error(), "c1 is not a voter") {
		t.Fatalf("another id: %v", err)
	}
	if err := r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	if err := RaftReady(r, "c0"); !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "shut down") {
		t.Fatalf("after shutdown: %v", err)
	}
}
