// Package worker is the process that holds one contiguous layer shard of a merge: it registers
// with the coordinators, is assigned a shard, loads only that shard's weights, consumes the
// shard's tasks (calibration as a pipeline through the shards, jacobi and sweep steps,
// weight-only merges), moves their artifacts and reports their results. Tasks are idempotent:
// the same task gives the same artifacts, so a redelivered or repeated task is harmless.
//
// The NATS side (control requests, the task stream, results, the calibration ring) is behind
// the interfaces declared here (Control, Tasks, Results, Ring, ArtifactStore) and implemented in
// nats.go; the compute is behind Loader/Shard (internal/shard on the CPU today).
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/protocol"
)

// ErrConfig is returned by Config.Validate.
var ErrConfig = errors.New("worker: invalid config")

// Config configures a worker.
type Config struct {
	// ID is the worker's id, unique in the cluster.
	ID string
	// Memory is the memory the worker may use, in bytes (the coordinator cuts shards to fit).
	Memory int64
	// Version is the iteris version (a coordinator of another version refuses the worker).
	Version string
	// DataDir, if set, receives loaded.json: the tensors the last load read.
	DataDir string
	// Heartbeat is the heartbeat period (default 1 s).
	Heartbeat time.Duration
	// RingTimeout is how long a calibration step may wait for its neighbour (default 2 min).
	RingTimeout time.Duration
	// Control, Tasks, Results, Ring and Store are the worker's view of the cluster.
	Control Control
	Tasks   Tasks
	Results Results
	Ring    Ring
	Store   ArtifactStore
	// Loader loads shards (the compute backend).
	Loader Loader
	// Logger receives the worker's logs (default: discard).
	Logger *slog.Logger
	// Observer receives the worker's measurements (default: none).
	Observer Observer
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if err := protocol.ValidateName("worker id", c.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.Memory <= 0 {
		return fmt.Errorf("%w: memory %d bytes (want > 0)", ErrConfig, c.Memory)
	}
	if c.Control == nil || c.Tasks == nil || c.Results == nil || c.Ring == nil || c.Store == nil || c.Loader == nil {
		return fmt.Errorf("%w: control, tasks, results, ring, store and loader are required", ErrConfig)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.RingTimeout <= 0 {
		c.RingTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return nil
}

// Worker is one worker process's state.
type Worker struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	want     *protocol.Assignment // what the coordinator says to hold
	loaded   *loadedShard         // what is loaded
	running  *runningTask         // the task attempt in progress
	changed  chan struct{}
	register bool // register again at the next heartbeat
}

// runningTask is the attempt a worker runs; the coordinator may cancel it in a heartbeat reply.
type runningTask struct {
	r       protocol.Running
	cancel  context.CancelFunc
	revoked bool // the coordinator cancelled it (guarded by Worker.mu)
}

type loadedShard struct {
	asg   protocol.Assignment
	shard Shard
}

// New returns a worker; it does no I/O until Start.
func New(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, changed: make(chan struct{}, 1), register: true}, nil
}

// Start registers and starts the heartbeat and task loops.
func (w *Worker) Start(ctx context.Context) error {
	lctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		w.heartbeats(lctx)
	}()
	go func() {
		defer w.wg.Done()
		w.work(lctx)
	}()
	return ctx.Err()
}

// Close stops the worker; a task in progress is abandoned (its message comes back to another
// worker after the ack wait).
func (w *Worker) Close() error {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
	return nil
}

// Loaded reports the shard the worker holds, if any.
func (w *Worker) Loaded() *protocol.ShardRef {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.loaded == nil {
		return nil
	}
	r := w.loaded.asg.ShardRef
	return &r
}

func (w *Worker) signal() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// heartbeats registers, then sends a heartbeat every period and keeps the assignment current.
func (w *Worker) heartbeats(ctx context.Context) {
	t := time.NewTicker(w.cfg.Heartbeat)
	defer t.Stop()
	for {
		w.beat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) beat(ctx context.Context) {
	log := w.cfg.Logger
	w.mu.Lock()
	reg := w.register
	hb := protocol.Heartbeat{Head: protocol.NewHead(), Worker: w.cfg.ID}
	if w.running != nil {
		hb.Running = []protocol.Running{w.running.r}
	}
	if w.loaded != nil {
		r := w.loaded.asg.ShardRef
		hb.Loaded = &r
	}
	w.mu.Unlock()
	if reg {
		err := w.cfg.Control.Register(ctx, protocol.Register{Head: protocol.NewHead(), Worker: w.cfg.ID, Version: w.cfg.Version, Memory: w.cfg.Memory})
		if err != nil {
			log.Warn("registering", "err", err)
			return
		}
		w.mu.Lock()
		w.register = false
		w.mu.Unlock()
		log.Info("registered", "worker", w.cfg.ID)
	}
	rep, err := w.cfg.Control.Heartbeat(ctx, hb)
	if err != nil {
		log.Debug("heartbeat", "err", err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if rep.Error != nil {
		if rep.Error.Code == protocol.CodeNotFound {
			// The coordinators lost this worker: its shard and attempts went to others.
			w.register = true
			w.revoke(nil)
		}
		return
	}
	for _, c := range rep.Cancel {
		w.revoke(&c)
	}
	if !sameAssignment(w.want, rep.Assignment) {
		w.want = rep.Assignment
		w.signal()
	}
}

// revoke cancels the running attempt if it is r (any attempt when r is nil); w.mu is held.
func (w *Worker) revoke(r *protocol.Running) {
	rt := w.running
	if rt == nil || (r != nil && *r != rt.r) {
		return
	}
	if !rt.revoked {
		w.cfg.Logger.Info("abandoning a task the coordinator cancelled", "task", rt.r.TaskKey.String(), "attempt", rt.r.Attempt)
	}
	rt.revoked = true
	rt.cancel()
}

func sameAssignment(a, b *protocol.Assignment) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ShardRef == b.ShardRef && a.Lo == b.Lo && a.Hi == b.Hi
}

// work loads what the coordinator assigns and consumes the shard's tasks.
func (w *Worker) work(ctx context.Context) {
	for ctx.Err() == nil {
		w.mu.Lock()
		want, have := w.want, w.loaded
		w.mu.Unlock()
		switch {
		case want == nil:
			if have != nil {
				w.drop()
			}
			w.wait(ctx)
		case have == nil || !sameAssignment(&have.asg, want):
			w.drop()
			w.load(ctx, *want)
		default:
			w.next(ctx, have)
		}
	}
}

func (w *Worker) wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-w.changed:
	case <-time.After(w.cfg.Heartbeat):
	}
}

func (w *Worker) drop() {
	w.mu.Lock()
	old := w.loaded
	w.loaded = nil
	w.mu.Unlock()
	if old != nil {
		w.cfg.Logger.Info("dropping shard", "job", old.asg.Job, "shard", old.asg.Shard)
		w.cfg.Observer.ShardDropped(old.asg.ShardRef)
	}
}

func (w *Worker) load(ctx context.Context, a protocol.Assignment) {
	log := w.cfg.Logger.With("job", a.Job, "shard", a.Shard)
	t0 := time.Now()
	sh, err := w.cfg.Loader(ctx, a)
	if err != nil {
		log.Error("loading the shard", "err", err)
		w.wait(ctx)
		return
	}
	if err := writeLoaded(w.cfg.DataDir, a, sh.Read()); err != nil {
		log.Warn("recording the tensors read", "err", err)
	}
	w.mu.Lock()
	w.loaded = &loadedShard{asg: a, shard: sh}
	w.mu.Unlock()
	secs := time.Since(t0).Seconds()
	w.cfg.Observer.ShardLoaded(a, secs)
	log.Info("shard loaded", "layers", fmt.Sprintf("[%d, %d)", a.Lo, a.Hi), "seconds", secs)
}

// next takes one task of the loaded shard, runs it and publishes its result, keeping the message
// in progress meanwhile. A task the coordinator cancels is acked without a result; one cut short
// by the worker's own shutdown is left to its next delivery.
func (w *Worker) next(ctx context.Context, ls *loadedShard) {
	d, err := w.cfg.Tasks.Next(ctx, ls.asg.Job, ls.asg.Shard, w.cfg.Heartbeat)
	if err != nil {
		if !errors.Is(err, ErrNoTask) && ctx.Err() == nil {
			w.cfg.Logger.Debug("fetching a task", "err", err)
			w.wait(ctx)
		}
		return
	}
	t := d.Task()
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rt := w.setRunning(&runningTask{r: protocol.Running{TaskKey: t.TaskKey, Attempt: t.Attempt}, cancel: cancel})
	defer w.setRunning(nil)
	stop := keepInProgress(d)
	defer stop()
	r := w.run(tctx, ls, t)
	if w.isRevoked(rt) {
		_ = d.Ack()
		return
	}
	if ctx.Err() != nil {
		_ = d.Nak()
		return
	}
	if err := w.publish(tctx, r); err != nil {
		if w.isRevoked(rt) {
			_ = d.Ack()
			return
		}
		w.cfg.Logger.Warn("publishing a result", "job", t.Job, "task", t.TaskKey.String(), "shard", t.Shard, "attempt", t.Attempt, "err", err)
		_ = d.Nak()
		return
	}
	_ = d.Ack()
}

// publishTimeout bounds the retries of one result's publication (NATS may be restarting).
const publishTimeout = 2 * time.Minute

// publish publishes a result, retrying while NATS does not answer (results are de-duplicated by
// message id, so a retry of one that arrived is harmless).
func (w *Worker) publish(ctx context.Context, r protocol.Result) error {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	delay := 100 * time.Millisecond
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		err := w.cfg.Results.Publish(pctx, r)
		pcancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		w.cfg.Logger.Debug("publishing a result", "task", r.TaskKey.String(), "attempt", r.Attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// keepInProgress sends in-progress acks every third of the ack wait until stopped.
func keepInProgress(d Delivery) (stop func()) {
	done := make(chan struct{})
	go func() {
		tk := time.NewTicker(d.AckWait() / 3)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				_ = d.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

func (w *Worker) setRunning(rt *runningTask) *runningTask {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = rt
	return rt
}

func (w *Worker) isRevoked(rt *runningTask) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return rt.revoked
}

// run executes a task and returns its result.
func (w *Worker) run(ctx context.Context, ls *loadedShard, t protocol.Task) protocol.Result {
	log := w.cfg.Logger.With("job", t.Job, "task", t.TaskKey.String(), "step", t.Step, "kind", t.Kind, "solve", t.Solve, "shard", t.Shard, "attempt", t.Attempt)
	w.cfg.Observer.TaskStarted(t)
	log.Info("task started")
	t0 := time.Now()
	r := w.execute(ctx, ls, t)
	r.Stats.Seconds = time.Since(t0).Seconds()
	r.Stats.BLAS = linalg.Current().String()
	w.cfg.Observer.TaskEnded(t, r)
	switch {
	case ctx.Err() != nil:
		log.Info("task stopped", "err", ctx.Err())
	case r.Error != nil:
		log.Warn("task failed", "err", r.Error)
	default:
		log.Info("task done", "seconds", r.Stats.Seconds)
	}
	return r
}
