package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/cli"
	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/metrics"
	"github.com/iteris-dev/iteris/worker"
)

// parseCommand parses a cluster command's flags (usage errors become errUsage).
func parseCommand(fs *flag.FlagSet, args []string, stdout, stderr io.Writer, about string) ([]string, error) {
	fs.SetOutput(stderr)
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nFlags:\n%s\n%s", about, flagDefaults(fs), exitCodes)
	}
	pos, err := parseInterspersed(fs, args)
	return pos, err
}

// usageErr maps a cli validation error onto the binary's usage error.
func usageErr(err error) error {
	if errors.Is(err, cli.ErrUsage) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}

// logger returns a slog logger on stderr in the given format.
func logger(format string, stderr io.Writer, attrs ...any) *slog.Logger {
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	if format == "json" {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	return slog.New(h).With(attrs...)
}

// connect opens a NATS connection with the command's credentials and TLS that reconnects for
// ever (replies on the role's inbox prefix), and the artifact store on it. closed is closed when
// the connection ends for good (the server refused the credentials again after a reconnect).
// report hears that no server answers yet, and every asynchronous error of the connection (an
// operation the server's permissions refuse).
func connect(ctx context.Context, n cli.NATS, role, name string, report func(what string, err error)) (nc *nats.Conn, store *artifact.JetStream, closed <-chan struct{}, err error) {
	done := make(chan struct{})
	nc, err = n.Dial(ctx, name, os.Getenv, func(err error) { report("waiting for NATS", err) },
		nats.CustomInboxPrefix(cli.InboxPrefix(role)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { report("NATS refused an operation", err) }),
		nats.ClosedHandler(func(*nats.Conn) { close(done) }))
	if err != nil {
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	store, err = artifact.NewJetStream(js, artifact.JetStreamConfig{})
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return nc, store, done, nil
}

// logReport logs what connect reports.
func logReport(log *slog.Logger) func(string, error) {
	return func(what string, err error) { log.Warn(what, "err", err) }
}

// realDirs resolves the symbolic links of --inputs directories (each must exist).
func realDirs(dirs []string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		r, err := filepath.EvalSymlinks(d)
		if err == nil {
			var st os.FileInfo
			if st, err = os.Stat(r); err == nil && !st.IsDir() {
				err = fmt.Errorf("not a directory")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("--inputs %s: %w", d, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// serve waits until ctx ends (nil) or the NATS connection ends for good (an error).
func serve(ctx context.Context, url string, nc *nats.Conn, closed <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-closed:
		return fmt.Errorf("the NATS connection to %s ended: %v", url, nc.LastError())
	}
}

const coordinatorAbout = `Usage: iteris coordinator --id ID --data-dir DIR --raft-addr HOST:PORT --peers ID=HOST:PORT,... --nats URL

Runs one member of the raft-replicated coordinator group. The leader checks submitted configs,
cuts jobs into layer shards for the registered workers, dispatches their tasks over NATS,
commits their results and assembles the merged adapter. Runs until SIGTERM or Ctrl-C.

NATS credentials (--nats-user with --nats-password-file, --nats-token-file, --nats-nkey,
--nats-creds or a client certificate) and TLS (tls:// URLs, --nats-ca): without credentials the
command refuses to connect unless --insecure. See docs/operations.md, "Securing a cluster".
Raft between coordinators: mutual TLS with --raft-ca, --raft-cert and --raft-key (required for
a --raft-addr other machines can reach, unless --insecure).`

func cmdCoordinator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &cli.Coordinator{}
	pos, err := parseCommand(cli.CoordinatorFlags(o), args, stdout, stderr, coordinatorAbout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: coordinator takes no arguments (got %q)", errUsage, pos)
	}
	if err := o.Validate(); err != nil {
		return usageErr(err)
	}
	log := logger(o.LogFormat, stderr, "role", "coordinator", "node", o.ID)
	raftTLS, err := o.RaftTLS()
	if err != nil {
		return err
	}
	roots, err := realDirs(o.Inputs)
	if err != nil {
		return err
	}
	nc, store, closed, err := connect(ctx, o.NATS, "coordinator", "iteris-coordinator-"+o.ID, logReport(log))
	if err != nil {
		return err
	}
	defer nc.Close()
	var peers []coordinator.Peer
	for _, p := range o.Peers {
		peers = append(peers, coordinator.Peer{ID: p.ID, Addr: p.Addr})
	}
	node, err := coordinator.New(coordinator.Config{ID: o.ID, DataDir: o.DataDir, RaftAddr: o.RaftAddr, Peers: peers,
		Conn: nc, Store: store, Jobs: &mergejob.Handler{Version: versionString(), Roots: roots}, Version: versionString(),
		RaftTLS: raftTLS, InsecureRaft: o.Insecure, Lease: o.Lease, WorkerTimeout: o.WorkerTimeout, ElectionTimeout: o.ElectionTimeout, Logger: log})
	if err != nil {
		return err
	}
	if err := node.Start(ctx); err != nil {
		return err
	}
	ops, err := startCoordinatorOps(ctx, o.MetricsAddr, o.ID, node, nc, log)
	if err != nil {
		return errors.Join(err, node.Close())
	}
	log.Info("coordinator started", "raft", o.RaftAddr, "raft_tls", raftTLS != nil, "peers", o.PeersFlag, "nats", redactURLs(o.URL), "nats_auth", o.Auth(os.Getenv))
	serr := serve(ctx, redactURLs(o.URL), nc, closed)
	log.Info("stopping", "err", serr)
	handOver(node, log)
	return errors.Join(serr, ops.Close(), node.Close())
}

const workerAbout = `Usage: iteris worker --id ID --nats URL --memory SIZE [--data-dir DIR]

Runs one merge worker: it registers with the coordinators, is assigned a layer shard, loads only
that shard's weights (paths are read from this machine's filesystem) and runs the shard's tasks.
Runs until SIGTERM or Ctrl-C, or with --exit-after-job until the job it held a shard of ends.

NATS credentials (--nats-user with --nats-password-file, --nats-token-file, --nats-nkey,
--nats-creds or a client certificate) and TLS (tls:// URLs, --nats-ca): without credentials the
command refuses to connect unless --insecure. See docs/operations.md, "Securing a cluster".`

func cmdWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := &cli.Worker{}
	pos, err := parseCommand(cli.WorkerFlags(o), args, stdout, stderr, workerAbout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: worker takes no arguments (got %q)", errUsage, pos)
	}
	if err := o.Validate(); err != nil {
		return usageErr(err)
	}
	log := logger(o.LogFormat, stderr, "role", "worker", "worker", o.ID)
	memLimit := applyMemoryLimit(o.Memory, os.Getenv)
	nc, store, closed, err := connect(ctx, o.NATS, "worker", "iteris-worker-"+o.ID, logReport(log))
	if err != nil {
		return err
	}
	defer nc.Close()
	tr, err := worker.NewNATS(nc)
	if err != nil {
		return err
	}
	obs := metrics.NewWorker(o.Memory)
	jobs := &jobTracker{Observer: obs}
	w, err := worker.New(worker.Config{ID: o.ID, Memory: o.Memory, Version: versionString(), DataDir: o.DataDir, Heartbeat: o.Heartbeat,
		Control: tr, Tasks: tr, Results: tr, Ring: tr, Store: store, Loader: worker.CPULoader, Logger: log, Observer: jobs})
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	ops, err := startWorkerOps(ctx, o.MetricsAddr, w, obs, log)
	if err != nil {
		return errors.Join(err, w.Close())
	}
	log.Info("worker started", "memory", o.MemoryFlag, "go_memory_limit", memLimit, "nats", redactURLs(o.URL), "nats_auth", o.Auth(os.Getenv))
	if o.ExitAfterJob {
		var stop context.CancelFunc
		ctx, stop = context.WithCancel(ctx)
		defer stop()
		go func() {
			if waitJobEnd(ctx, jobs.held, client.New(nc, store), time.Second, log) == nil {
				stop()
			}
		}()
	}
	serr := serve(ctx, redactURLs(o.URL), nc, closed)
	log.Info("stopping", "err", serr)
	return errors.Join(serr, ops.Close(), w.Close())
}

// commandLine is the command line recorded in the model card.
func commandLine(cmd string, args []string) string {
	out := "iteris " + cmd
	for _, a := range args {
		out += " " + a
	}
	return out
}
