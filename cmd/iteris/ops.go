package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/health"
	"github.com/iteris-dev/iteris/internal/metrics"
	"github.com/iteris-dev/iteris/protocol"
	"github.com/iteris-dev/iteris/worker"
)

// opsServer is a running metrics and health server, and what stops its watchers.
type opsServer struct {
	srv  *health.Server
	stop func()
}

// Close stops the watchers and the server (nil: nothing runs).
func (o *opsServer) Close() error {
	if o == nil {
		return nil
	}
	if o.stop != nil {
		o.stop()
	}
	if o.srv == nil {
		return nil
	}
	return o.srv.Close()
}

// startCoordinatorOps logs a started coordinator's leader changes and, when addr is set, serves
// its metrics (state, raft, raft's go-metrics, the artifact buckets, the process) and its health
// on addr; readiness is membership of the raft configuration with a known leader.
func startCoordinatorOps(ctx context.Context, addr, id string, node *coordinator.Node, nc *nats.Conn, log *slog.Logger) (*opsServer, error) {
	col := metrics.NewCoordinator(node)
	watch := func() func() {
		wctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			col.Watch(wctx, log)
		}()
		return func() { cancel(); <-done }
	}
	if addr == "" {
		return &opsServer{stop: watch()}, nil
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(col)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	reg.MustRegister(metrics.NewStore(js))
	if err := metrics.BridgeGoMetrics(reg); err != nil {
		return nil, err
	}
	srv, err := health.New(health.Config{Addr: addr, Gatherer: reg, Logger: log,
		Ready: func() error { return health.RaftReady(node.Raft(), id) }})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	log.Info("serving metrics", "addr", srv.Addr())
	return &opsServer{srv: srv, stop: watch()}, nil
}

// startWorkerOps serves a worker's metrics (obs, the process) and its health on addr; readiness
// is a loaded shard. addr "" starts nothing.
func startWorkerOps(ctx context.Context, addr string, w *worker.Worker, obs *metrics.Worker, log *slog.Logger) (*opsServer, error) {
	if addr == "" {
		return nil, nil
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(obs)
	srv, err := health.New(health.Config{Addr: addr, Gatherer: reg, Logger: log, Ready: func() error {
		if w.Loaded() == nil {
			return fmt.Errorf("%w: no shard loaded", health.ErrNotReady)
		}
		return nil
	}})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	log.Info("serving metrics", "addr", srv.Addr())
	return &opsServer{srv: srv}, nil
}

// jobStatuser is the part of the job API client waitJobEnd asks.
type jobStatuser interface {
	Status(ctx context.Context, job string) (protocol.StatusReply, error)
}

// handOver transfers raft leadership to another voter when this node leads a group of more than
// one, so that a rolling restart (SIGTERM of one coordinator after another) never waits for an
// election timeout. It logs what happened; failures are logged, not returned (the node stops
// anyway and the others elect a leader).
func handOver(node *coordinator.Node, log *slog.Logger) {
	r := node.Raft()
	if r == nil || !node.IsLeader() {
		return
	}
	f := r.GetConfiguration()
	if f.Error() != nil || len(f.Configuration().Servers) < 2 {
		return
	}
	t0 := time.Now()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		// A transfer times out after an election timeout when the target was still catching
		// up (a member restarted a moment ago); the next attempt picks the most current one.
		if err = r.LeadershipTransfer().Error(); err == nil || !node.IsLeader() {
			break
		}
	}
	switch {
	case err == nil:
		_, id := r.LeaderWithID()
		log.Info("raft leadership transferred", "to", string(id), "seconds", time.Since(t0).Seconds())
	case !node.IsLeader():
		log.Info("raft leadership given up", "seconds", time.Since(t0).Seconds(), "err", err)
	default:
		log.Warn("transferring raft leadership", "err", err)
	}
}

// jobTracker is a worker.Observer that remembers the job of the last shard loaded, and passes
// every call on to next.
type jobTracker struct {
	worker.Observer
	mu  sync.Mutex
	job string
}

// ShardLoaded implements worker.Observer.
func (j *jobTracker) ShardLoaded(a protocol.Assignment, seconds float64) {
	j.mu.Lock()
	j.job = a.Job
	j.mu.Unlock()
	j.Observer.ShardLoaded(a, seconds)
}

// held returns the job of the last shard loaded ("" before any).
func (j *jobTracker) held() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.job
}

// waitJobEnd returns nil once the job held() names has ended (done, failed or canceled, or gone
// from the cluster), or ctx's error. It asks the job API every poll once a job is named.
func waitJobEnd(ctx context.Context, held func() string, api jobStatuser, poll time.Duration, log *slog.Logger) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if held := held(); held != "" {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			st, err := api.Status(qctx, held)
			cancel()
			var ref *client.RefusedError
			switch {
			case err == nil && len(st.Jobs) == 1 && coordinator.JobState(st.Jobs[0].State).Ended():
				log.Info("the job ended: exiting", "job", held, "state", st.Jobs[0].State)
				return nil
			case errors.As(err, &ref) && ref.Code == protocol.CodeNotFound:
				log.Info("the job is gone: exiting", "job", held)
				return nil
			case err != nil && ctx.Err() == nil:
				log.Debug("asking for the job's state", "job", held, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

var _ jobStatuser = (*client.Client)(nil)

// redactURLs returns a comma-separated list of NATS URLs with their passwords masked, for logs
// and messages: a password, or a token given as the user, is written xxxxx; a URL that does not
// parse is replaced whole when it holds an "@".
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(p)
		switch {
		case err == nil && u.User != nil:
			if _, ok := u.User.Password(); ok {
				parts[i] = u.Redacted()
			} else { // nats://TOKEN@host: the user is the token
				u.User = url.User("xxxxx")
				parts[i] = u.String()
			}
		case strings.Contains(p, "@"):
			parts[i] = "(a URL with credentials that does not parse)"
		}
	}
	return strings.Join(parts, ",")
}
