package clustertest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/natsserver/natstest"
	"github.com/iteris-dev/iteris/protocol"
)

// Options shapes a loopback cluster.
type Options struct {
	// Coordinators and Workers count the processes (Workers may be 0: start them later).
	Coordinators, Workers int
	// Lease and WorkerTimeout are the coordinators' timeouts (defaults 10 s and 3 s).
	Lease, WorkerTimeout time.Duration
	// Heartbeat is the workers' --heartbeat (default 200 ms).
	Heartbeat time.Duration
	// WorkerMemory is each worker's --memory (default 4GiB).
	WorkerMemory string
	// NATS configures the nats-server (users, TLS, permissions; the zero value has none).
	NATS natstest.Options
	// Args, when set, returns the extra arguments of each iteris process by role ("coordinator",
	// "worker", "submit") and id: its NATS credentials and TLS, raft TLS. Without it every
	// process gets --insecure (the server has no users).
	Args func(role, id string) []string
	// Metrics gives every coordinator and worker a --metrics-addr on a free loopback port
	// (Cluster.MetricsAddr tells which).
	Metrics bool
	// WorkerArgs are more arguments for every worker (e.g. --exit-after-job).
	WorkerArgs []string
}

// Cluster is a running loopback cluster.
type Cluster struct {
	t            testing.TB
	opt          Options
	NATS         *natstest.Server
	Coordinators []*Proc
	Workers      []*Proc
	dir          string
	peers        string
	metrics      map[string]string // process name -> --metrics-addr
	mu           sync.Mutex
	client       *client.Client
}

// StartCluster starts the nats-server, the coordinators and the workers.
func StartCluster(t testing.TB, opt Options) *Cluster {
	t.Helper()
	if opt.Lease == 0 {
		opt.Lease = 10 * time.Second
	}
	if opt.WorkerTimeout == 0 {
		opt.WorkerTimeout = 3 * time.Second
	}
	if opt.WorkerMemory == "" {
		opt.WorkerMemory = "4GiB"
	}
	if opt.Heartbeat == 0 {
		opt.Heartbeat = 200 * time.Millisecond
	}
	c := &Cluster{t: t, opt: opt, NATS: natstest.Start(t, opt.NATS), dir: t.TempDir(), metrics: map[string]string{}}
	var peers []string
	ports := make([]int, opt.Coordinators)
	for i := range ports {
		ports[i] = FreePort(t)
		peers = append(peers, fmt.Sprintf("c%d=127.0.0.1:%d", i, ports[i]))
	}
	c.peers = strings.Join(peers, ",")
	for i := range ports {
		args := []string{"coordinator",
			"--id", fmt.Sprintf("c%d", i), "--data-dir", filepath.Join(c.dir, fmt.Sprintf("c%d", i)),
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[i]), "--peers", c.peers, "--nats", c.NATS.URL(),
			"--election-timeout", "200ms", "--lease", opt.Lease.String(), "--worker-timeout", opt.WorkerTimeout.String()}
		args = append(args, c.metricsArgs(fmt.Sprintf("c%d", i))...)
		c.Coordinators = append(c.Coordinators, Start(t, fmt.Sprintf("c%d", i), Root(), append(args, c.args("coordinator", fmt.Sprintf("c%d", i))...)...))
	}
	for i := 0; i < opt.Workers; i++ {
		c.StartWorker(fmt.Sprintf("w%d", i))
	}
	return c
}

// StartWorker starts one more worker process.
func (c *Cluster) StartWorker(id string) *Proc {
	c.t.Helper()
	args := append([]string{"worker", "--id", id, "--nats", c.NATS.URL(), "--memory", c.opt.WorkerMemory,
		"--data-dir", c.WorkerDir(id), "--heartbeat", c.opt.Heartbeat.String()}, c.metricsArgs(id)...)
	args = append(args, c.args("worker", id)...)
	p := Start(c.t, id, Root(), append(args, c.opt.WorkerArgs...)...)
	c.Workers = append(c.Workers, p)
	return p
}

// args returns a process's extra arguments (Options.Args, or --insecure).
func (c *Cluster) args(role, id string) []string {
	if c.opt.Args == nil {
		return []string{"--insecure"}
	}
	return c.opt.Args(role, id)
}

// metricsArgs returns the --metrics-addr arguments of a process (none without Options.Metrics).
func (c *Cluster) metricsArgs(name string) []string {
	if !c.opt.Metrics {
		return nil
	}
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(c.t))
	c.metrics[name] = addr
	return []string{"--metrics-addr", addr}
}

// MetricsAddr returns the --metrics-addr of a coordinator or worker by name ("c0", "w1").
func (c *Cluster) MetricsAddr(name string) string { return c.metrics[name] }

// WorkerDir is a worker's --data-dir.
func (c *Cluster) WorkerDir(id string) string { return filepath.Join(c.dir, "workers", id) }

// Client returns the cluster's job API client (one connection to the cluster's NATS server, made
// at the first call, which reconnects quickly and for ever when the server restarts).
func (c *Cluster) Client() *client.Client {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		return c.client
	}
	nc := c.NATS.Connect(nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	store, err := artifact.NewJetStream(js, artifact.JetStreamConfig{})
	if err != nil {
		c.t.Fatal(err)
	}
	c.client = client.New(nc, store)
	c.client.Retry, c.client.Poll = 100*time.Millisecond, 100*time.Millisecond
	return c.client
}

// Submit starts `iteris submit CONFIG OUT --wait` (relative paths resolve against the
// repository root) and returns the process.
func (c *Cluster) Submit(config, out string, extra ...string) *Proc {
	c.t.Helper()
	args := append([]string{"submit", config, out, "--nats", c.NATS.URL(), "--wait", "--progress", "none"}, c.args("submit", "submit")...)
	args = append(args, extra...)
	return Start(c.t, "submit", Root(), args...)
}

// Leader returns the leader's id as the job API reports it.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	st, err := c.Client().Status(ctx, "")
	if err != nil {
		return "", err
	}
	return st.Leader, nil
}

// Job returns the status of the cluster's only job, or an error while there is none.
func (c *Cluster) Job(ctx context.Context) (protocol.JobStatus, error) {
	st, err := c.Client().Status(ctx, "")
	if err != nil {
		return protocol.JobStatus{}, err
	}
	if len(st.Jobs) != 1 {
		return protocol.JobStatus{}, fmt.Errorf("%d jobs", len(st.Jobs))
	}
	return st.Jobs[0], nil
}
