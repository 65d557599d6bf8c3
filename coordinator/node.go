package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/nats-io/nats.go"

	"github.com/iteris-dev/iteris/protocol"
)

// Errors of the raft shell.
var (
	// ErrNotLeader is returned by Propose on a node that does not lead.
	ErrNotLeader = errors.New("coordinator: not the raft leader")
	// ErrConfig is returned by Config.Validate.
	ErrConfig = errors.New("coordinator: invalid config")
)

// Peer is one member of the initial raft configuration.
type Peer struct {
	ID   string
	Addr string
}

// Config configures a coordinator node.
type Config struct {
	// ID is the node's raft id (unique in the group).
	ID string
	// DataDir holds the raft log, stable store and snapshots; "" keeps them in memory (the
	// embedded default: nothing survives the process).
	DataDir string
	// RaftAddr is the TCP address the raft transport binds; with Transport set it is only the
	// node's address in the configuration.
	RaftAddr string
	// Transport, if set, replaces the TCP transport (tests and the embedded default use raft's
	// in-memory transport).
	Transport raft.Transport
	// RaftTLS, if set, makes the TCP transport mutual TLS: Certificates hold this node's
	// certificate (used as server and as client, so it needs both extended key usages and must
	// name the host of RaftAddr), RootCAs the CA every peer's certificate must chain to. A peer
	// without such a certificate cannot connect, in either direction.
	RaftTLS *tls.Config
	// InsecureRaft allows a plain TCP transport on an address other machines can reach; without
	// it such a RaftAddr needs RaftTLS.
	InsecureRaft bool
	// Peers is the initial configuration (every member, this node included); it bootstraps a
	// group whose data directory is new.
	Peers []Peer
	// Conn is the NATS connection the node serves the job API and schedules through.
	Conn *nats.Conn
	// Store holds the artifacts.
	Store ArtifactStore
	// Jobs checks submissions, cuts plans and assembles results.
	Jobs Jobs
	// Version is the iteris version; workers of another version are refused.
	Version string
	// Lease is how long a task attempt may run without a renewal (default 30 s).
	Lease time.Duration
	// WorkerTimeout is how long a worker may miss heartbeats before its shard is given away
	// (default 10 s).
	WorkerTimeout time.Duration
	// Tick is the scheduler's period (default 100 ms).
	Tick time.Duration
	// ElectionTimeout is raft's heartbeat and election timeout (default 500 ms; 100 ms is what
	// the design brief measured as stable on these machines).
	ElectionTimeout time.Duration
	// Logger receives the node's logs (default: discard).
	Logger *slog.Logger
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if err := protocol.ValidateName("coordinator id", c.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.Conn == nil || c.Store == nil || c.Jobs == nil {
		return fmt.Errorf("%w: a NATS connection, an artifact store and a job handler are required", ErrConfig)
	}
	if c.Transport == nil {
		if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
			return fmt.Errorf("%w: raft address %q: %v", ErrConfig, c.RaftAddr, err)
		}
		if c.RaftTLS == nil && !c.InsecureRaft && !isLoopback(c.RaftAddr) {
			return fmt.Errorf("%w: raft address %s is reachable from other machines and raft has no TLS (set RaftTLS, or InsecureRaft)", ErrConfig, c.RaftAddr)
		}
		if c.RaftTLS != nil && (len(c.RaftTLS.Certificates) == 0 || c.RaftTLS.RootCAs == nil) {
			return fmt.Errorf("%w: raft TLS needs this node's certificate and the peers' CA", ErrConfig)
		}
	}
	if len(c.Peers) == 0 {
		c.Peers = []Peer{{ID: c.ID, Addr: c.RaftAddr}}
	}
	self := false
	for _, p := range c.Peers {
		if err := protocol.ValidateName("peer id", p.ID); err != nil {
			return fmt.Errorf("%w: %v", ErrConfig, err)
		}
		self = self || p.ID == c.ID
	}
	if !self {
		return fmt.Errorf("%w: the peers %v do not include this node %s", ErrConfig, c.Peers, c.ID)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Lease, 30*time.Second)
	def(&c.WorkerTimeout, 10*time.Second)
	def(&c.Tick, 100*time.Millisecond)
	def(&c.ElectionTimeout, 500*time.Millisecond)
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Node is one coordinator: a raft member whose leader schedules the cluster.
type Node struct {
	cfg    Config
	fsm    *fsm
	raft   *raft.Raft
	notify chan bool
	closer []io.Closer
	wg     sync.WaitGroup
	cancel context.CancelFunc
	lead   *leader // set while this node leads (guarded by mu)
	mu     sync.Mutex
}

// New returns a node; it does no I/O until Start.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Node{cfg: cfg, fsm: newFSM(), notify: make(chan bool, 16)}, nil
}

// Start opens the raft stores, joins (or bootstraps) the group and starts following leadership.
func (n *Node) Start(ctx context.Context) error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.HeartbeatTimeout = n.cfg.ElectionTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.ElectionTimeout / 2
	rc.NotifyCh = n.notify
	rc.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error, Output: io.Discard})
	logs, stable, snaps, err := n.stores()
	if err != nil {
		return err
	}
	trans := n.cfg.Transport
	if trans == nil {
		addr, err := net.ResolveTCPAddr("tcp", n.cfg.RaftAddr)
		if err != nil {
			return fmt.Errorf("coordinator: raft address %s: %w", n.cfg.RaftAddr, err)
		}
		stream, err := newStreamLayer(n.cfg.RaftAddr, addr, n.cfg.RaftTLS, n.cfg.Version, n.cfg.Logger.With("node", n.cfg.ID))
		if err != nil {
			return fmt.Errorf("coordinator: raft transport on %s: %w", n.cfg.RaftAddr, err)
		}
		tcp := newNetworkTransport(stream, rc.Logger)
		n.closer = append(n.closer, tcp)
		trans = tcp
	}
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("coordinator: raft state in %s: %w", n.cfg.DataDir, err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, stable, snaps, trans)
	if err != nil {
		return fmt.Errorf("coordinator: starting raft: %w", err)
	}
	n.raft = r
	if !existing {
		var servers []raft.Server
		for _, p := range n.cfg.Peers {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("coordinator: bootstrapping raft: %w", err)
		}
	}
	lctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.wg.Add(1)
	go n.follow(lctx)
	return nil
}

// stores opens the bolt log/stable store and the file snapshot store, or in-memory ones.
func (n *Node) stores() (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	if n.cfg.DataDir == "" {
		m := raft.NewInmemStore()
		return m, m, raft.NewInmemSnapshotStore(), nil
	}
	if err := os.MkdirAll(n.cfg.DataDir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("coordinator: data dir: %w", err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(n.cfg.DataDir, "raft.db")})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("coordinator: raft log in %s: %w", n.cfg.DataDir, err)
	}
	n.closer = append(n.closer, bolt)
	snaps, err := raft.NewFileSnapshotStore(n.cfg.DataDir, 2, io.Discard)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("coordinator: snapshots in %s: %w", n.cfg.DataDir, err)
	}
	return bolt, bolt, snaps, nil
}

// follow starts the leader loop when this node becomes leader and stops it when it loses
// leadership.
func (n *Node) follow(ctx context.Context) {
	defer n.wg.Done()
	var stop context.CancelFunc
	var done chan struct{}
	end := func() {
		if stop != nil {
			stop()
			<-done
			stop = nil
		}
	}
	defer end()
	for {
		select {
		case <-ctx.Done():
			return
		case isLeader := <-n.notify:
			end()
			if !isLeader {
				continue
			}
			lctx, cancel := context.WithCancel(ctx)
			stop, done = cancel, make(chan struct{})
			go func() {
				defer close(done)
				n.runLeader(lctx)
			}()
		}
	}
}

// Propose replicates a command and returns its apply error.
func (n *Node) Propose(ctx context.Context, c Command) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(c.Encode(), timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return ErrNotLeader
		}
		return fmt.Errorf("coordinator: raft apply: %w", err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return err
	}
	return nil
}

// IsLeader reports whether the node leads.
func (n *Node) IsLeader() bool { return n.raft != nil && n.raft.State() == raft.Leader }

// Leader returns the leader's id ("" when unknown).
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// WaitLeader waits until the group has a leader.
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if n.Leader() != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("coordinator %s: no raft leader: %w", n.cfg.ID, ctx.Err())
		case <-t.C:
		}
	}
}

// View runs fn on the replicated state (read-only; fn must not keep references).
func (n *Node) View(fn func(s *State)) { n.fsm.view(fn) }

// Raft returns the raft instance (for operations: leadership transfer, stats).
func (n *Node) Raft() *raft.Raft { return n.raft }

// Close stops the node: leader loop, raft, stores and transport.
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	var errs []error
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range n.closer {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
