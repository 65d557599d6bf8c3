// Package natsserver runs the NATS server that iteris embeds: an in-process nats-server with
// JetStream on a temporary directory and no network listener, reached through in-process
// connections. It is what `iteris merge` starts so that the embedded default runs the same
// JetStream code paths as a cluster. Package natstest, below it, runs the real nats-server binary
// for tests.
package natsserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Errors of the embedded server's lifecycle.
var (
	// ErrNotStarted is returned by Connect before Start has succeeded.
	ErrNotStarted = errors.New("embedded nats-server not started")
	// ErrClosed is returned by Start and Connect after Close.
	ErrClosed = errors.New("embedded nats-server closed")
	// ErrStarted is returned by a second Start.
	ErrStarted = errors.New("embedded nats-server already started")
)

// Config configures an embedded server.
type Config struct {
	// Dir is where the temporary JetStream store directory is created; "" means os.TempDir().
	Dir string
	// ServerName names the server in its log and in JetStream; "" means "iteris-embedded".
	ServerName string
	// MaxPayload is the largest message payload in bytes; 0 means the server's default (1 MiB).
	MaxPayload int32
	// MaxStore limits JetStream's file storage in bytes; 0 means the server's default (a share of
	// the disk).
	MaxStore int64
	// Logger receives the server's log lines when not nil (debug and trace off); nil discards them.
	Logger server.Logger
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.MaxPayload < 0 {
		return fmt.Errorf("natsserver: max payload %d is negative", c.MaxPayload)
	}
	if c.MaxStore < 0 {
		return fmt.Errorf("natsserver: max store %d is negative", c.MaxStore)
	}
	if c.Dir != "" {
		if fi, err := os.Stat(c.Dir); err != nil {
			return fmt.Errorf("natsserver: store parent directory: %w", err)
		} else if !fi.IsDir() {
			return fmt.Errorf("natsserver: store parent %s is not a directory", c.Dir)
		}
	}
	return nil
}

// Embedded is an in-process nats-server with JetStream and no listener. New does no I/O; Start
// creates the store directory and starts the server; Close stops it and removes the directory.
type Embedded struct {
	cfg Config

	mu     sync.Mutex
	srv    *server.Server
	dir    string
	closed bool
}

// New returns an embedded server for cfg; it does not start it.
func New(cfg Config) (*Embedded, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "iteris-embedded"
	}
	return &Embedded{cfg: cfg}, nil
}

// Start creates the temporary store directory and starts the server, returning when it accepts
// in-process connections with JetStream enabled, or when ctx ends (the server is then stopped).
func (e *Embedded) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		return ErrClosed
	case e.srv != nil:
		return ErrStarted
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natsserver: %w", err)
	}
	dir, err := os.MkdirTemp(e.cfg.Dir, "iteris-nats-*")
	if err != nil {
		return fmt.Errorf("natsserver: %w", err)
	}
	opts := &server.Options{
		ServerName: e.cfg.ServerName,
		DontListen: true,
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: e.cfg.MaxPayload,
		NoSigs:     true,
		NoLog:      e.cfg.Logger == nil,
	}
	if e.cfg.MaxStore > 0 {
		opts.JetStreamMaxStore = e.cfg.MaxStore
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		os.RemoveAll(dir)
		return fmt.Errorf("natsserver: %w", err)
	}
	if e.cfg.Logger != nil {
		srv.SetLogger(e.cfg.Logger, false, false)
	}
	srv.Start()
	if err := waitReady(ctx, srv); err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		os.RemoveAll(dir)
		return err
	}
	e.srv, e.dir = srv, dir
	return nil
}

// readyTimeout bounds the wait for a server whose context has no deadline.
const readyTimeout = 30 * time.Second

// waitReady waits until srv accepts connections and JetStream is enabled, or ctx ends.
func waitReady(ctx context.Context, srv *server.Server) error {
	d := readyTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	done := make(chan bool, 1)
	go func() { done <- srv.ReadyForConnections(d) && srv.JetStreamEnabled() }()
	select {
	case ok := <-done:
		if !ok {
			return fmt.Errorf("natsserver: not ready for connections with JetStream after %s", d.Round(time.Millisecond))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natsserver: waiting for the server: %w", ctx.Err())
	}
}

// Connect returns a client connection to the server through an in-process pipe. opts are applied
// after the in-process option (e.g. nats.Name).
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	e.mu.Lock()
	srv, closed := e.srv, e.closed
	e.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case srv == nil:
		return nil, ErrNotStarted
	}
	nc, err := nats.Connect("", append([]nats.Option{nats.InProcessServer(srv)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("natsserver: in-process connection: %w", err)
	}
	return nc, nil
}

// StoreDir returns the JetStream store directory ("" before Start).
func (e *Embedded) StoreDir() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dir
}

// Close stops the server, waits for it to finish and removes the store directory. It is safe to
// call more than once and before Start.
func (e *Embedded) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.srv == nil {
		return nil
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.srv = nil
	if err := os.RemoveAll(e.dir); err != nil {
		return fmt.Errorf("natsserver: removing the store: %w", err)
	}
	return nil
}
