package natstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TLS configures the server's TLS (PEM files).
type TLS struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// CAFile is the CA clients verify the server with (and the server verifies clients with when
	// Verify is set).
	CAFile string
	// Verify requires clients to present a certificate signed by CAFile.
	Verify bool
	// ClientCertFile and ClientKeyFile are the certificate the harness itself connects with when
	// Verify is set.
	ClientCertFile, ClientKeyFile string
}

// Options configures a test server. The zero value is a server without authentication or TLS.
type Options struct {
	// User and Password, when User is set, are required from every client.
	User, Password string
	// TLS, when set, makes the server require TLS.
	TLS *TLS
	// Config is extra nats-server configuration in its config file syntax (accounts,
	// authorization, limits), written to a file and passed with -c. Command-line settings of the
	// harness (address, port, JetStream, store directory, user, TLS) take precedence.
	Config string
	// ReadyTimeout bounds the wait for the server to accept connections; 0 means 30 s.
	ReadyTimeout time.Duration
	// Client are extra options of the harness's own connections (the readiness probe, Connect),
	// after ClientOptions' user and TLS: the credentials of a user defined in Config.
	Client []nats.Option
}

// Server is a nats-server process on 127.0.0.1 with JetStream, stopped at the test's end. Its
// port and store directory survive Kill, Stop and Restart.
type Server struct {
	t        testing.TB
	bin, dir string
	opt      Options
	port     int
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	logFile  *os.File
}

// Start builds (once) and starts a nats-server, waits until it accepts connections and answers
// JetStream requests, and registers its shutdown (and, when the test failed, the tail of its log)
// with t.Cleanup.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), opt: opt}
	if opt.ReadyTimeout == 0 {
		s.opt.ReadyTimeout = 30 * time.Second
	}
	lf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s.logFile = lf
	t.Cleanup(func() {
		if s.Running() {
			s.signal(syscall.SIGKILL)
			<-s.exited
		}
		lf.Close()
		if t.Failed() {
			t.Logf("nats-server log (%s), last lines:\n%s", s.dir, s.LogTail(40))
		}
	})
	s.start(-1)
	return s
}

// StoreDir returns the JetStream store directory.
func (s *Server) StoreDir() string { return filepath.Join(s.dir, "jetstream") }

// Port returns the client port.
func (s *Server) Port() int { return s.port }

// URL returns the client URL, nats://127.0.0.1:PORT (tls:// with TLS). Credentials are not in it:
// see ClientOptions.
func (s *Server) URL() string {
	scheme := "nats"
	if s.opt.TLS != nil {
		scheme = "tls"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, s.port)
}

// ClientOptions returns the nats options a client needs for this server: user and password, and
// the TLS CA (and client certificate) when configured, then Options.Client.
func (s *Server) ClientOptions() []nats.Option {
	var o []nats.Option
	if s.opt.User != "" {
		o = append(o, nats.UserInfo(s.opt.User, s.opt.Password))
	}
	if tl := s.opt.TLS; tl != nil {
		if tl.CAFile != "" {
			o = append(o, nats.RootCAs(tl.CAFile))
		}
		if tl.Verify {
			o = append(o, nats.ClientCert(tl.ClientCertFile, tl.ClientKeyFile))
		}
	}
	return append(o, s.opt.Client...)
}

// Connect returns a client connection with ClientOptions and opts, closed at the test's end.
func (s *Server) Connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.URL(), append(s.ClientOptions(), opts...)...)
	if err != nil {
		s.t.Fatalf("natstest: connecting to %s: %v", s.URL(), err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// Running reports whether the process is running.
func (s *Server) Running() bool {
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL and waits for the process to exit: a crash, with no shutdown work.
func (s *Server) Kill() {
	s.t.Helper()
	s.signal(syscall.SIGKILL)
	<-s.exited
}

// Stop sends SIGTERM (the server shuts down cleanly) and waits for the process to exit; after
// ReadyTimeout it fails the test.
func (s *Server) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(s.opt.ReadyTimeout):
		s.signal(syscall.SIGKILL)
		<-s.exited
		s.t.Fatalf("natstest: nats-server did not stop within %s of SIGTERM", s.opt.ReadyTimeout)
	}
}

// Restart starts the server again on the same port with the same store directory (after Kill or
// Stop; a running server is stopped first) and waits until it is ready.
func (s *Server) Restart() {
	s.t.Helper()
	if s.Running() {
		s.Stop()
	}
	s.start(s.port)
}

func (s *Server) signal(sig syscall.Signal) {
	if !s.Running() {
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("natstest: signal %v: %v", sig, err)
	}
}

// args returns the command line for a start on port (-1: any free port).
func (s *Server) args(port int) []string {
	a := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", s.StoreDir(),
		"--ports_file_dir", s.dir, "-n", "natstest"}
	if s.opt.Config != "" {
		path := filepath.Join(s.dir, "extra.conf")
		if err := os.WriteFile(path, []byte(s.opt.Config), 0o644); err != nil {
			s.t.Fatal(err)
		}
		a = append(a, "-c", path)
	}
	if s.opt.User != "" {
		a = append(a, "--user", s.opt.User, "--pass", s.opt.Password)
	}
	if tl := s.opt.TLS; tl != nil {
		a = append(a, "--tls", "--tlscert", tl.CertFile, "--tlskey", tl.KeyFile)
		if tl.CAFile != "" {
			a = append(a, "--tlscacert", tl.CAFile)
		}
		if tl.Verify {
			a = append(a, "--tlsverify")
		}
	}
	return a
}

func (s *Server) start(port int) {
	s.t.Helper()
	fmt.Fprintf(s.logFile, "--- natstest: starting on port %d\n", port)
	cmd := exec.Command(s.bin, s.args(port)...)
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("natstest: starting %s: %v", s.bin, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		s.waitErr = cmd.Wait()
		close(exited)
	}(s.exited)
	ctx, cancel := context.WithTimeout(context.Background(), s.opt.ReadyTimeout)
	defer cancel()
	if err := s.waitReady(ctx, cmd.Process.Pid); err != nil {
		s.t.Fatalf("natstest: nats-server (pid %d) not ready: %v\nlog:\n%s", cmd.Process.Pid, err, s.LogTail(40))
	}
}

// waitReady polls until the ports file names the client port, a client connects and JetStream
// answers, or ctx ends, or the process exits.
func (s *Server) waitReady(ctx context.Context, pid int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = s.probe(pid)
		if last == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("process exited (%v); last probe: %v", s.waitErr, last)
		case <-ctx.Done():
			return fmt.Errorf("%w; last probe: %v", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func (s *Server) probe(pid int) error {
	ports, err := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("%s_%d.ports", filepath.Base(s.bin), pid)))
	if err != nil {
		return err
	}
	var p struct {
		Nats []string `json:"nats"`
	}
	if err := json.Unmarshal(ports, &p); err != nil || len(p.Nats) == 0 {
		return fmt.Errorf("ports file %q: %v", ports, err)
	}
	u, err := url.Parse(p.Nats[0])
	if err != nil {
		return err
	}
	if s.port, err = strconv.Atoi(u.Port()); err != nil {
		return fmt.Errorf("ports file url %q: %w", p.Nats[0], err)
	}
	nc, err := nats.Connect(s.URL(), append(s.ClientOptions(), nats.Timeout(time.Second), nats.NoReconnect())...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// LogTail returns the last n lines of the server's log (every start appends to it).
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(bytes.TrimRight(b, "\n")), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
