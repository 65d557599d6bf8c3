// Package embedded runs a whole iteris cluster inside one process: an in-process nats-server
// (JetStream in a temporary directory, no listener), a single-node raft coordinator on raft's
// in-memory transport, and N workers. `iteris merge` runs every merge through it, so the
// single-machine default exercises exactly the code paths of a real cluster.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/natsserver"
	"github.com/iteris-dev/iteris/worker"
)

// ErrConfig is returned by Config.Validate.
var ErrConfig = errors.New("embedded: invalid config")

// Config configures an embedded cluster.
type Config struct {
	// Workers is the number of in-process workers (default 2, so the hand-off between shards is
	// always exercised).
	Workers int
	// Memory is each worker's memory budget in bytes (default: the machine's available memory
	// divided among the workers).
	Memory int64
	// Version is the iteris version.
	Version string
	// Dir is where the temporary JetStream directory is made ("" = the system's).
	Dir string
	// Logger receives the cluster's logs (default: discard).
	Logger *slog.Logger
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.Workers == 0 {
		c.Workers = 2
	}
	if c.Workers < 1 || c.Workers > 256 {
		return fmt.Errorf("%w: %d workers (want 1-256)", ErrConfig, c.Workers)
	}
	if c.Memory < 0 {
		return fmt.Errorf("%w: memory %d", ErrConfig, c.Memory)
	}
	if c.Memory == 0 {
		c.Memory = AvailableMemory() / int64(c.Workers)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Cluster is a running embedded cluster.
type Cluster struct {
	cfg     Config
	ns      *natsserver.Embedded
	conns   []*nats.Conn
	store   *artifact.JetStream
	node    *coordinator.Node
	workers []*worker.Worker
	client  *client.Client
}

// New returns a cluster; it does no I/O until Start.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Cluster{cfg: cfg}, nil
}

func (c *Cluster) connect() (*nats.Conn, *artifact.JetStream, error) {
	nc, err := c.ns.Connect()
	if err != nil {
		return nil, nil, err
	}
	c.conns = append(c.conns, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, err
	}
	store, err := artifact.NewJetStream(js, artifact.JetStreamConfig{})
	return nc, store, err
}

// Start starts the server, the coordinator (and waits for it to lead) and the workers.
func (c *Cluster) Start(ctx context.Context) error {
	var err error
	if c.ns, err = natsserver.New(natsserver.Config{Dir: c.cfg.Dir}); err != nil {
		return err
	}
	if err := c.ns.Start(ctx); err != nil {
		return err
	}
	nc, store, err := c.connect()
	if err != nil {
		return err
	}
	c.store = store
	addr, trans := raft.NewInmemTransport("embedded")
	c.node, err = coordinator.New(coordinator.Config{ID: "embedded", RaftAddr: string(addr), Transport: trans,
		Conn: nc, Store: store, Jobs: &mergejob.Handler{Version: c.cfg.Version}, Version: c.cfg.Version,
		ElectionTimeout: 50 * time.Millisecond, Tick: 20 * time.Millisecond, Lease: time.Minute, Logger: c.cfg.Logger.With("role", "coordinator")})
	if err != nil {
		return err
	}
	if err := c.node.Start(ctx); err != nil {
		return err
	}
	if err := c.node.WaitLeader(ctx); err != nil {
		return err
	}
	for i := 0; i < c.cfg.Workers; i++ {
		if err := c.startWorker(ctx, fmt.Sprintf("w%d", i)); err != nil {
			return err
		}
	}
	cnc, cstore, err := c.connect()
	if err != nil {
		return err
	}
	c.client = client.New(cnc, cstore)
	c.client.Retry, c.client.Poll = 20*time.Millisecond, 50*time.Millisecond
	return nil
}

func (c *Cluster) startWorker(ctx context.Context, id string) error {
	nc, store, err := c.connect()
	if err != nil {
		return err
	}
	tr, err := worker.NewNATS(nc)
	if err != nil {
		return err
	}
	w, err := worker.New(worker.Config{ID: id, Memory: c.cfg.Memory, Version: c.cfg.Version, Heartbeat: 100 * time.Millisecond,
		Control: tr, Tasks: tr, Results: tr, Ring: tr, Store: store, Loader: worker.CPULoader, Logger: c.cfg.Logger.With("role", "worker", "worker", id)})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	c.workers = append(c.workers, w)
	return nil
}

// Client returns a job API client of the cluster.
func (c *Cluster) Client() *client.Client { return c.client }

// Node returns the coordinator.
func (c *Cluster) Node() *coordinator.Node { return c.node }

// Close stops the workers, the coordinator and the server, and removes the temporary directory.
func (c *Cluster) Close() error {
	var errs []error
	for _, w := range c.workers {
		errs = append(errs, w.Close())
	}
	if c.node != nil {
		errs = append(errs, c.node.Close())
	}
	for _, nc := range c.conns {
		nc.Close()
	}
	if c.ns != nil {
		errs = append(errs, c.ns.Close())
	}
	return errors.Join(errs...)
}
