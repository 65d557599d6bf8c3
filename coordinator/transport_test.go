package coordinator

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/natsserver"
	"github.com/iteris-dev/iteris/internal/testcerts"
	"github.com/iteris-dev/iteris/protocol"
)

// logBuffer collects a node's logs for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// noJobs is a job handler for tests that submit no jobs.
type noJobs struct{}

func (noJobs) Prepare(context.Context, protocol.Submit, string, ArtifactStore) (JobSpec, error) {
	return JobSpec{}, errors.New("no jobs here")
}
func (noJobs) Plan(*Job, []*Worker) (Plan, []string, error) {
	return Plan{}, nil, errors.New("no jobs")
}
func (noJobs) CheckResult(context.Context, *Job, protocol.Result, ArtifactStore) error {
	return nil
}
func (noJobs) Assemble(context.Context, *Job, ArtifactStore) ([]protocol.File, error) {
	return nil, errors.New("no jobs")
}

// embeddedNATS starts an in-process nats-server and returns a connection factory.
func embeddedNATS(t *testing.T) func() *nats.Conn {
	t.Helper()
	ns, err := natsserver.New(natsserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ns.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return func() *nats.Conn {
		nc, err := ns.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type tcpNode struct {
	*Node
	log *logBuffer
}

// startTCPNode starts a coordinator on the TCP transport.
func startTCPNode(t *testing.T, conn func() *nats.Conn, id, addr string, peers []Peer, tlsCfg *tls.Config, version string) tcpNode {
	t.Helper()
	lb := &logBuffer{}
	n, err := New(Config{ID: id, RaftAddr: addr, Peers: peers, RaftTLS: tlsCfg, Conn: conn(), Store: mustMemory(t),
		Jobs: noJobs{}, Version: version, ElectionTimeout: 300 * time.Millisecond, Tick: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(lb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return tcpNode{n, lb}
}

func mustMemory(t *testing.T) *artifact.Memory {
	t.Helper()
	m, err := artifact.NewMemory(artifact.Encoding{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// eventually polls cond every 20 ms until it returns nil or d passes, then fails with its last
// error.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if last = cond(); last == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s; last: %v", what, d, last)
}

func leaderOf(nodes []tcpNode) (tcpNode, error) {
	for _, n := range nodes {
		if n.IsLeader() {
			return n, nil
		}
	}
	return tcpNode{}, errors.New("no leader yet")
}

// TestRaftOverMutualTLS runs a three-coordinator group whose raft traffic is mutual TLS: it
// elects a leader and replicates a command to every member. Then a rogue node whose client
// certificate comes from another CA (it trusts the group's CA, so only the members' check of its
// certificate stops it) campaigns with the members as its peers: it is refused by every member
// (their logs say why), its terms climb alone, and the group's leader and term never move.
func TestRaftOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "raft")
	conn := embeddedNATS(t)
	var peers []Peer
	for i := 0; i < 3; i++ {
		peers = append(peers, Peer{ID: fmt.Sprintf("c%d", i), Addr: freeAddr(t)})
	}
	var nodes []tcpNode
	for _, p := range peers {
		cfg := ca.Issue(t, p.ID, "127.0.0.1").TLS(t, ca.Pool())
		nodes = append(nodes, startTCPNode(t, conn, p.ID, p.Addr, peers, cfg, "v1"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eventually(t, 20*time.Second, "a leader over TLS commits a command", func() error {
		lead, err := leaderOf(nodes)
		if err != nil {
			return err
		}
		return lead.Propose(ctx, Command{Type: CmdRegister, At: 1, Leader: lead.cfg.ID, Worker: &WorkerInfo{ID: "w1", Version: "v1", Memory: 1}})
	})
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.cfg.ID+" applies the command", func() error {
			var ok bool
			n.View(func(s *State) { _, ok = s.Workers["w1"] })
			if !ok {
				return errors.New("worker w1 not in the state")
			}
			return nil
		})
	}

	rogueCA := testcerts.NewCA(t, dir, "rogue")
	rogueCfg := rogueCA.Issue(t, "c3", "127.0.0.1").TLS(t, ca.Pool())
	rogueAddr := freeAddr(t)
	rogue := startTCPNode(t, conn, "c3", rogueAddr, append(append([]Peer{}, peers...), Peer{ID: "c3", Addr: rogueAddr}), rogueCfg, "v1")
	eventually(t, 30*time.Second, "every member refuses the rogue's campaign twice", func() error {
		for _, n := range nodes {
			if c := strings.Count(n.log.String(), "refusing a raft connection: TLS handshake failed"); c < 2 {
				return fmt.Errorf("%s refused %d times; its log:\n%s", n.cfg.ID, c, n.log.String())
			}
		}
		return nil
	})
	for _, n := range nodes {
		if l := n.Leader(); l == "c3" {
			t.Fatalf("%s follows the rogue", n.cfg.ID)
		}
	}
	if rogue.Leader() != "" {
		t.Fatalf("the rogue knows leader %q", rogue.Leader())
	}
	var now tcpNode
	eventually(t, 20*time.Second, "the group still commits", func() (err error) {
		if now, err = leaderOf(nodes); err != nil {
			return err
		}
		return now.Propose(ctx, Command{Type: CmdRegister, At: 2, Leader: now.cfg.ID, Worker: &WorkerInfo{ID: "w2", Version: "v1", Memory: 1}})
	})
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.cfg.ID+" applies the second command", func() error {
			var ok bool
			n.View(func(s *State) { _, ok = s.Workers["w2"] })
			if !ok {
				return errors.New("worker w2 not in the state")
			}
			return nil
		})
	}
	f := now.Raft().GetConfiguration()
	if err := f.Error(); err != nil || len(f.Configuration().Servers) != 3 {
		t.Fatalf("group configuration %+v (%v), want the 3 members", f.Configuration().Servers, err)
	}
}

// listenLayer starts a stream layer whose accepted connections answer raft's protocol with
// nothing but the hello (each accepted connection's first read runs the handshake).
func listenLayer(t *testing.T, cfg *tls.Config, version string) (*streamLayer, *logBuffer) {
	t.Helper()
	addr, err := net.ResolveTCPAddr("tcp", freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	lb := &logBuffer{}
	s, err := newStreamLayer(addr.String(), addr, cfg, version, slog.New(slog.NewTextHandler(lb, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s, lb
}

// TestStreamLayerRefuses dials a listening coordinator's stream layer as peers it must refuse,
// and as one it must accept; each refusal is an error that says why, on the dialling side and in
// the listening node's log.
func TestStreamLayerRefuses(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "group")
	other := testcerts.NewCA(t, dir, "other")
	good := ca.Issue(t, "c0", "127.0.0.1").TLS(t, ca.Pool())
	srv, srvLog := listenLayer(t, good, "v1")
	plain, plainLog := listenLayer(t, nil, "v1")
	tests := []struct {
		name    string
		to      *streamLayer
		cfg     *tls.Config
		version string
		dialErr string // "" = accepted
		logged  string
		toLog   *logBuffer
	}{
		{"member", srv, ca.Issue(t, "c1", "127.0.0.1").TLS(t, ca.Pool()), "v1", "", "", nil},
		{"client certificate of another CA", srv, other.Issue(t, "x", "127.0.0.1").TLS(t, ca.Pool()), "v1", "tls", "TLS handshake failed", srvLog},
		{"no client certificate", srv, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}, "v1", "certificate", "TLS handshake failed", srvLog},
		{"plain TCP to a TLS node", srv, nil, "v1", "", "TLS handshake failed", srvLog},
		{"server certificate of another CA", srv, ca.Issue(t, "c2", "127.0.0.1").TLS(t, other.Pool()), "v1", "certificate signed by unknown authority", "", nil},
		{"another iteris version", srv, ca.Issue(t, "c3", "127.0.0.1").TLS(t, ca.Pool()), "v2", "the peer runs iteris v2, this coordinator v1", "another iteris version", srvLog},
		{"another version over plain TCP", plain, nil, "v0.9", "the peer runs iteris v0.9, this coordinator v1", "peer_version=v0.9", plainLog},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &streamLayer{version: tc.version}
			if tc.cfg != nil {
				d.client = tc.cfg
			}
			c, err := d.Dial(raft.ServerAddress(tc.to.Addr().String()), 5*time.Second)
			switch {
			case tc.dialErr == "" && tc.logged == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.dialErr != "" && (err == nil || !strings.Contains(err.Error(), tc.dialErr)):
				t.Fatalf("dial error %v, want one containing %q", err, tc.dialErr)
			case tc.logged != "" && err == nil:
				t.Fatal("accepted")
			}
			if c != nil {
				c.Close()
			}
			if tc.logged != "" {
				eventually(t, 5*time.Second, "the refusal is logged", func() error {
					if !strings.Contains(tc.toLog.String(), tc.logged) {
						return fmt.Errorf("log:\n%s", tc.toLog.String())
					}
					return nil
				})
			}
		})
	}
}

// TestConfigRefusesPlainRaftOffLoopback: a raft address other machines can reach needs TLS, or
// InsecureRaft; loopback and in-memory transports do not.
func TestConfigRefusesPlainRaftOffLoopback(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "raft")
	good := ca.Issue(t, "c0", "10.1.2.3").TLS(t, ca.Pool())
	nc := embeddedNATS(t)()
	base := func(addr string) Config {
		return Config{ID: "c0", RaftAddr: addr, Conn: nc, Store: mustMemory(t), Jobs: noJobs{}}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"loopback", func(c *Config) { c.RaftAddr = "127.0.0.1:7000" }, ""},
		{"localhost", func(c *Config) { c.RaftAddr = "localhost:7000" }, ""},
		{"ipv6 loopback", func(c *Config) { c.RaftAddr = "[::1]:7000" }, ""},
		{"interface address", func(c *Config) {}, "reachable from other machines and raft has no TLS"},
		{"host name", func(c *Config) { c.RaftAddr = "coordinator-0.iteris:7000" }, "reachable from other machines"},
		{"insecure", func(c *Config) { c.InsecureRaft = true }, ""},
		{"tls", func(c *Config) { c.RaftTLS = good }, ""},
		{"tls without a CA", func(c *Config) { c.RaftTLS = &tls.Config{Certificates: good.Certificates} }, "needs this node's certificate and the peers' CA"},
		{"in-memory transport", func(c *Config) { _, c.Transport = raft.NewInmemTransport("x") }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base("10.1.2.3:7000")
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig)) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}
