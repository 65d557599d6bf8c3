package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// ErrPeerRefused is returned when dialling a raft peer that refuses this node (another iteris
// version), or is refused by it.
var ErrPeerRefused = errors.New("coordinator: raft peer refused")

// helloPrefix opens the line every raft connection starts with, after TLS: the dialling node's
// iteris version. The accepting node answers "OK" or "NO <reason>" and closes on NO, so
// coordinators of different versions never exchange raft messages (a log entry one version
// cannot decode would otherwise make the replicas' states diverge).
const helloPrefix = "ITERIS-RAFT/1 "

// maxHello bounds the hello and answer lines.
const maxHello = 512

// helloTimeout bounds the hello exchange of a new connection.
const helloTimeout = 5 * time.Second

// isLoopback reports whether a HOST:PORT address binds only the loopback interface (a loopback IP
// or "localhost"); a host name is not resolved, so it counts as reachable from other machines.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// streamLayer is raft's stream layer over TCP, with mutual TLS when configured, and the version
// hello on every connection.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	client    *tls.Config // nil: plain TCP
	version   string
	log       *slog.Logger
}

// serverTLS returns the listening side of a raft TLS setup: this node's certificate, and every
// peer must present a client certificate that chains to the CA (RootCAs).
func serverTLS(c *tls.Config) *tls.Config {
	s := c.Clone()
	s.ClientCAs = c.RootCAs
	s.ClientAuth = tls.RequireAndVerifyClientCert
	s.MinVersion = max(s.MinVersion, tls.VersionTLS12)
	return s
}

// newStreamLayer listens on bind and advertises advertise.
func newStreamLayer(bind string, advertise *net.TCPAddr, tlsCfg *tls.Config, version string, log *slog.Logger) (*streamLayer, error) {
	if advertise.IP == nil || advertise.IP.IsUnspecified() {
		return nil, fmt.Errorf("coordinator: raft address %s is not an address peers can reach (give the interface's address, not 0.0.0.0)", bind)
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &streamLayer{ln: ln, advertise: advertise, version: version, log: log}
	if tlsCfg != nil {
		s.ln = tls.NewListener(ln, serverTLS(tlsCfg))
		s.client = tlsCfg.Clone()
		s.client.MinVersion = max(s.client.MinVersion, tls.VersionTLS12)
	}
	return s, nil
}

// Addr implements net.Listener: the advertised address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Close implements net.Listener.
func (s *streamLayer) Close() error { return s.ln.Close() }

// Accept implements net.Listener. The TLS handshake and the hello run on the connection's first
// read or write (in raft's per-connection goroutine), so a slow or hostile peer cannot stall the
// accept loop.
func (s *streamLayer) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &acceptedConn{Conn: c, s: s}, nil
}

// Dial implements raft.StreamLayer: TCP (and TLS, verifying the peer's certificate against the
// CA and the address's host), then the hello.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var c net.Conn
	var err error
	if s.client != nil {
		cfg := s.client.Clone()
		if host, _, herr := net.SplitHostPort(string(address)); herr == nil {
			cfg.ServerName = host
		}
		c, err = (&tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}).DialContext(ctx, "tcp", string(address))
	} else {
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", string(address))
	}
	if err != nil {
		return nil, fmt.Errorf("raft peer %s: %w", address, err)
	}
	if err := s.hello(c, address); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// hello sends this node's version and reads the peer's answer.
func (s *streamLayer) hello(c net.Conn, address raft.ServerAddress) error {
	_ = c.SetDeadline(time.Now().Add(helloTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, helloPrefix+s.version+"\n"); err != nil {
		return fmt.Errorf("raft peer %s: %w", address, err)
	}
	line, err := readLine(c)
	if err != nil {
		return fmt.Errorf("raft peer %s: reading its answer to the hello: %w", address, err)
	}
	if reason, ok := strings.CutPrefix(line, "NO "); ok {
		return fmt.Errorf("%w: %s: %s", ErrPeerRefused, address, reason)
	}
	if line != "OK" {
		return fmt.Errorf("%w: %s answered %q to the hello: not an iteris coordinator", ErrPeerRefused, address, truncateString(line, 80))
	}
	return nil
}

// readLine reads one line of at most maxHello bytes, one byte at a time (nothing after the line
// may be consumed: raft's messages follow on the same connection).
func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < maxHello {
		if _, err := io.ReadFull(r, one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", fmt.Errorf("line longer than %d bytes", maxHello)
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// acceptedConn is an accepted raft connection that runs the TLS handshake and the hello before
// its first read or write.
type acceptedConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
	err  error
}

func (c *acceptedConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *acceptedConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *acceptedConn) handshake() error {
	c.once.Do(func() { c.err = c.accept() })
	return c.err
}

// accept runs the TLS handshake and checks the peer's hello; a refused peer is logged with why.
func (c *acceptedConn) accept() error {
	from := c.RemoteAddr().String()
	_ = c.SetDeadline(time.Now().Add(helloTimeout))
	defer c.SetDeadline(time.Time{})
	if tc, ok := c.Conn.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			c.s.log.Warn("refusing a raft connection: TLS handshake failed", "from", from, "err", err)
			return fmt.Errorf("%w: %s: TLS: %w", ErrPeerRefused, from, err)
		}
	}
	line, err := readLine(c.Conn)
	if err != nil {
		c.s.log.Warn("refusing a raft connection: no hello", "from", from, "err", err)
		return fmt.Errorf("%w: %s: reading the hello: %w", ErrPeerRefused, from, err)
	}
	v, ok := strings.CutPrefix(line, helloPrefix)
	if !ok {
		c.s.log.Warn("refusing a raft connection: not an iteris coordinator", "from", from, "hello", truncateString(line, 80))
		_, _ = io.WriteString(c.Conn, "NO this is an iteris coordinator: the connection did not start with its hello\n")
		return fmt.Errorf("%w: %s: not an iteris hello", ErrPeerRefused, from)
	}
	if v != c.s.version {
		reason := fmt.Sprintf("the peer runs iteris %s, this coordinator %s: run the same version on every coordinator", truncateString(v, 80), c.s.version)
		c.s.log.Warn("refusing a raft connection: another iteris version", "from", from, "peer_version", truncateString(v, 80), "version", c.s.version)
		_, _ = io.WriteString(c.Conn, "NO "+reason+"\n")
		return fmt.Errorf("%w: %s: %s", ErrPeerRefused, from, reason)
	}
	if _, err := io.WriteString(c.Conn, "OK\n"); err != nil {
		return err
	}
	return nil
}

// newNetworkTransport returns raft's network transport on the stream layer.
func newNetworkTransport(s *streamLayer, logger hclog.Logger) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: s, MaxPool: 4, Timeout: 5 * time.Second, Logger: logger})
}

var _ raft.StreamLayer = (*streamLayer)(nil)
