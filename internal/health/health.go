// Package health serves the operations endpoints of a long-running iteris process on
// --metrics-addr: /metrics (Prometheus text format), /healthz (alive: the process serves HTTP)
// and /readyz (ready: the process's own check, e.g. a coordinator in a raft configuration with a
// known leader, a worker with its shard loaded). Kubernetes probes call the last two.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrConfig is returned by Config.Validate.
var ErrConfig = errors.New("health: invalid config")

// ErrNotReady is wrapped by the readiness checks of this package.
var ErrNotReady = errors.New("not ready")

// Paths of the endpoints.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// Config configures a Server.
type Config struct {
	// Addr is the HOST:PORT to listen on (port 0: any free port; Server.Addr tells which).
	Addr string
	// Gatherer provides /metrics.
	Gatherer prometheus.Gatherer
	// Ready is /readyz's check: nil error means ready (nil Ready: always ready).
	Ready func() error
	// Logger receives the server's errors (default: discard).
	Logger *slog.Logger
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("%w: address %q: %v", ErrConfig, c.Addr, err)
	}
	if c.Gatherer == nil {
		return fmt.Errorf("%w: a metrics gatherer is required", ErrConfig)
	}
	if c.Ready == nil {
		c.Ready = func() error { return nil }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Server is the HTTP server of the operations endpoints.
type Server struct {
	cfg  Config
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// New returns a server; it does no I/O until Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(PathMetrics, promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError,
		ErrorLog: slogPrinter{cfg.Logger}}))
	mux.HandleFunc(PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(PathReadyz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := cfg.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return &Server{cfg: cfg, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// slogPrinter is promhttp's error log on slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("serving metrics", "err", fmt.Sprint(v...)) }

// Start listens and serves in the background until Close (ctx bounds only the listen).
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("health: listening on %s: %w", s.cfg.Addr, err)
	}
	s.ln, s.done = ln, make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("metrics server", "addr", s.cfg.Addr, "err", err)
		}
	}()
	return nil
}

// Addr returns the address the server listens on ("" before Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the server, waiting up to 5 s for requests in flight.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// RaftReady is a coordinator's readiness: the node runs, is a voter of its latest raft
// configuration, and knows a leader. r may be nil (not started: not ready).
func RaftReady(r *raft.Raft, id string) error {
	if r == nil {
		return fmt.Errorf("%w: raft has not started", ErrNotReady)
	}
	if st := r.State(); st == raft.Shutdown {
		return fmt.Errorf("%w: raft is shut down", ErrNotReady)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("%w: raft configuration: %v", ErrNotReady, err)
	}
	member := false
	for _, s := range f.Configuration().Servers {
		member = member || (string(s.ID) == id && s.Suffrage == raft.Voter)
	}
	if !member {
		return fmt.Errorf("%w: %s is not a voter of the raft configuration", ErrNotReady, id)
	}
	if _, leader := r.LeaderWithID(); leader == "" {
		return fmt.Errorf("%w: no known raft leader", ErrNotReady)
	}
	return nil
}
