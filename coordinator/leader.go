package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/natsconn"
	"github.com/iteris-dev/iteris/protocol"
)

// ArtifactStore is the part of the artifact store the coordinator uses.
type ArtifactStore interface {
	Put(ctx context.Context, job string, kind protocol.Kind, content []byte) (protocol.Ref, error)
	Get(ctx context.Context, job string, ref protocol.Ref) (protocol.Kind, []byte, error)
	DropJob(ctx context.Context, job string) error
}

// Jobs is what the coordinator needs to know about merges; internal/mergejob implements it.
type Jobs interface {
	// Prepare checks a submission exactly as `iteris merge` checks its config before heavy work,
	// stores the job's calibration prompts under job, and returns the job's spec.
	Prepare(ctx context.Context, sub protocol.Submit, job string, store ArtifactStore) (JobSpec, error)
	// Plan cuts a queued job into shards for the given free workers.
	Plan(j *Job, free []*Worker) (Plan, []string, error)
	// CheckResult checks a result's artifacts before it is committed (shapes, finite values).
	CheckResult(ctx context.Context, j *Job, r protocol.Result, store ArtifactStore) error
	// Assemble builds a finished job's output files.
	Assemble(ctx context.Context, j *Job, store ArtifactStore) ([]protocol.File, error)
}

// ResultsJob is the artifact group a job's output files are kept in after its working artifacts
// are dropped.
func ResultsJob(job string) string { return job + "-out" }

// leader is the state of this node while it leads.
type leader struct {
	n    *Node
	js   jetstream.JetStream
	subs []*nats.Subscription

	mu         sync.Mutex
	lastSeen   map[string]time.Time
	assembling map[string]bool
	published  map[string]int // job -> tasks done at the last progress event
	kick       chan struct{}

	// Owned by the scheduler goroutine: dispatched attempts still to publish (a failed publish,
	// or every recent attempt at takeover), the task consumers known to exist, the NATS
	// reconnects seen, and the grace of run-out leases.
	unpublished map[pubKey]bool
	consumersOK map[string]bool
	reconnects  uint64
	grace       int64
}

// pubKey names one dispatched attempt to publish.
type pubKey struct {
	job string
	TaskRef
}

// resultsAckWait is how long a result message stays with a leader that fetched it: a leader that
// dies holding one leaves it to the next after this long (it sends in-progress acks while a check
// runs longer).
const resultsAckWait = 3 * time.Second

// republishWithin is how recent a dispatch must be for a new leader to publish it again: within
// it, the task stream's duplicate window (2 minutes) drops the copy if the old leader had
// published it; older attempts are left to their leases.
const republishWithin = 90 * time.Second

// runLeader serves the job API and schedules until ctx ends (leadership lost or node closed).
func (n *Node) runLeader(ctx context.Context) {
	log := n.cfg.Logger.With("node", n.cfg.ID)
	log.Info("leading")
	l := &leader{n: n, lastSeen: map[string]time.Time{}, assembling: map[string]bool{}, published: map[string]int{},
		kick: make(chan struct{}, 1), unpublished: map[pubKey]bool{}, consumersOK: map[string]bool{}}
	for ctx.Err() == nil {
		err := l.takeOver(ctx)
		if err == nil {
			break
		}
		log.Warn("taking over", "err", err)
		sleep(ctx, 250*time.Millisecond)
	}
	if ctx.Err() != nil {
		return
	}
	defer l.unsubscribe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.consumeResults(ctx)
	}()
	l.loop(ctx)
	wg.Wait()
	log.Info("stopped leading")
}

// takeOver prepares a new leader: the streams exist, the state has every committed entry (a raft
// barrier), every worker gets a full timeout and every run-out lease a grace before it counts,
// recent dispatched attempts are published again (the old leader may have died between the
// commit and the publish), a takeover event goes into the running jobs, and the job API is
// served. It can be retried until it succeeds.
func (l *leader) takeOver(ctx context.Context) error {
	n := l.n
	if l.js == nil {
		js, err := jetstream.New(n.cfg.Conn)
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		l.js = js
	}
	if err := l.ensureStreams(ctx); err != nil {
		return fmt.Errorf("creating streams: %w", err)
	}
	if err := n.raft.Barrier(10 * time.Second).Error(); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	now := time.Now()
	l.grace = now.Add(l.graceTime()).UnixMilli()
	l.reconnects = n.cfg.Conn.Stats().Reconnects
	n.View(func(s *State) {
		for id := range s.Workers {
			l.lastSeen[id] = now // a new leader gives every worker a full timeout
		}
		for _, id := range s.Order {
			j := s.Jobs[id]
			if j.State != JobRunning {
				continue
			}
			for _, r := range j.Running() {
				t := j.Tasks[r.Step][r.Shard]
				if t.LeaseUntil != 0 && now.UnixMilli()-t.DispatchedAt < republishWithin.Milliseconds() {
					l.unpublished[pubKey{id, r}] = true
				}
			}
		}
	})
	if err := n.Propose(ctx, Command{Type: CmdTakeover, At: now.UnixMilli(), Leader: n.cfg.ID}); err != nil {
		return fmt.Errorf("recording the takeover: %w", err)
	}
	return l.subscribe(ctx)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (l *leader) ensureStreams(ctx context.Context) error {
	cfgs := []jetstream.StreamConfig{
		{Name: protocol.StreamTasks, Subjects: []string{protocol.SubjectTasks}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute},
		{Name: protocol.StreamResults, Subjects: []string{protocol.SubjectResults}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute},
	}
	for _, c := range cfgs {
		if _, err := l.js.CreateOrUpdateStream(ctx, c); err != nil {
			return fmt.Errorf("stream %s: %w", c.Name, err)
		}
	}
	_, err := l.js.CreateOrUpdateConsumer(ctx, protocol.StreamResults, jetstream.ConsumerConfig{
		Durable: protocol.ConsumerResults, AckPolicy: jetstream.AckExplicitPolicy, AckWait: resultsAckWait})
	return err
}

// unsubscribe stops serving the job API and the workers. It drains the subscriptions, so a
// request the server had already routed here is still answered (a leader that lost its lead
// answers not_leader) instead of being left to time out.
func (l *leader) unsubscribe() {
	for _, s := range l.subs {
		_ = s.Drain()
	}
	l.subs = nil
}

// wake asks the scheduler to run now.
func (l *leader) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// loop runs the scheduler every tick, after every apply and when woken.
func (l *leader) loop(ctx context.Context) {
	t := time.NewTicker(l.n.cfg.Tick)
	defer t.Stop()
	for {
		changed := l.n.fsm.changed()
		l.schedule(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		case <-l.kick:
		}
	}
}

// schedule proposes what Decide says, marks lost workers, publishes what is still unpublished,
// and assembles finished jobs. Without a NATS connection it does nothing: no worker can be heard
// or reached, and when the connection comes back every worker and lease gets a grace.
func (l *leader) schedule(ctx context.Context) {
	n := l.n
	now := time.Now()
	if !n.cfg.Conn.IsConnected() {
		return
	}
	if r := n.cfg.Conn.Stats().Reconnects; r != l.reconnects {
		l.reconnects = r
		l.refresh(now)
	}
	var cmds []Command
	var finished []string
	n.View(func(s *State) {
		cmds = append(cmds, l.lost(s, now)...)
		cmds = append(cmds, Decide(s, Policy{Now: now.UnixMilli(), Leader: n.cfg.ID, LeaseMS: n.cfg.Lease.Milliseconds(), Grace: l.grace, Plan: n.cfg.Jobs.Plan})...)
		for _, id := range s.Order {
			j := s.Jobs[id]
			if done, all := j.Counts(); j.State == JobRunning && all > 0 && done == all {
				finished = append(finished, id)
			}
		}
	})
	for _, c := range cmds {
		if ctx.Err() != nil {
			return
		}
		err := n.Propose(ctx, c)
		if err != nil {
			n.cfg.Logger.Debug("proposal refused", "type", c.Type, "job", c.Job, "err", err)
			continue
		}
		l.after(ctx, c)
	}
	l.republish(ctx)
	for _, id := range finished {
		l.assemble(ctx, id)
	}
	l.events()
}

// graceTime is how long run-out leases are held back after a time without a leader or without
// NATS: one worker timeout (by then a live worker has renewed what it runs, and a dead one is
// lost), but never longer than a lease.
func (l *leader) graceTime() time.Duration { return min(l.n.cfg.WorkerTimeout, l.n.cfg.Lease) }

// refresh gives every worker a full timeout and every run-out lease a grace, after a time in
// which this leader could not hear the workers.
func (l *leader) refresh(now time.Time) {
	l.mu.Lock()
	for id := range l.lastSeen {
		l.lastSeen[id] = now
	}
	l.mu.Unlock()
	l.grace = now.Add(l.graceTime()).UnixMilli()
	l.n.cfg.Logger.Info("NATS connection back: workers and leases get a grace", "until", l.grace)
}

// lost returns a CmdWorkerLost for every alive worker whose heartbeats stopped.
func (l *leader) lost(s *State, now time.Time) []Command {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Command
	for _, id := range s.WorkerIDs() {
		w := s.Workers[id]
		seen, ok := l.lastSeen[id]
		if !ok {
			l.lastSeen[id] = now
			continue
		}
		if w.Alive && now.Sub(seen) > l.n.cfg.WorkerTimeout {
			out = append(out, Command{Type: CmdWorkerLost, At: now.UnixMilli(), Leader: l.n.cfg.ID, Worker: &WorkerInfo{ID: id}})
		}
	}
	return out
}

// after does the I/O that follows an applied command: the start of a job creates its shards'
// consumers; a dispatch publishes the task (a failed publish is tried again every tick).
func (l *leader) after(ctx context.Context, c Command) {
	switch c.Type {
	case CmdStart:
		if err := l.consumers(ctx, c.Job, len(c.Plan.Shards)); err != nil {
			l.n.cfg.Logger.Warn("creating task consumers", "job", c.Job, "err", err)
		}
	case CmdDispatch:
		l.unpublished[pubKey{c.Job, *c.Task}] = true
	}
}

// republish publishes the dispatched attempts not published yet.
func (l *leader) republish(ctx context.Context) {
	for k := range l.unpublished {
		if ctx.Err() != nil {
			return
		}
		t := k.TaskRef
		if err := l.publish(ctx, k.job, t); err != nil {
			l.n.cfg.Logger.Warn("publishing task", taskAttrs(k.job, t.Step, t.Shard, t.Attempt, "err", err)...)
			continue
		}
		l.n.cfg.Logger.Info("task dispatched", taskAttrs(k.job, t.Step, t.Shard, t.Attempt)...)
		delete(l.unpublished, k)
	}
}

// consumers creates (or updates) the durable task consumers of a job's shards.
func (l *leader) consumers(ctx context.Context, job string, shards int) error {
	for sh := 0; sh < shards; sh++ {
		_, err := l.js.CreateOrUpdateConsumer(ctx, protocol.StreamTasks, jetstream.ConsumerConfig{
			Durable: protocol.TaskConsumer(job, sh), FilterSubject: protocol.TaskSubject(job, sh),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: l.n.cfg.Lease, MaxDeliver: 2 * MaxFailures})
		if err != nil {
			return err
		}
	}
	l.consumersOK[job] = true
	return nil
}

// publish puts a dispatched attempt on its shard's task subject (de-duplicated by message id),
// after making sure the job's consumers exist (a leader that died between a job's start and the
// consumers' creation left them to its successor). An attempt no longer current is not published.
func (l *leader) publish(ctx context.Context, job string, tr TaskRef) error {
	var task protocol.Task
	var ok bool
	shards := 0
	l.n.View(func(s *State) {
		j := s.Jobs[job]
		if j == nil || j.State != JobRunning {
			return
		}
		t := j.Tasks[tr.Step][tr.Shard]
		if t.Attempt != tr.Attempt || t.State != TaskDispatched {
			return
		}
		st := j.Plan.Steps[tr.Step]
		shards = len(j.Plan.Shards)
		task = protocol.Task{Head: protocol.NewHead(), TaskKey: protocol.TaskKey{Job: job, Step: tr.Step, Shard: tr.Shard},
			Kind: st.Kind, Solve: st.Solve, Attempt: tr.Attempt, Inputs: j.Inputs(tr.Step, tr.Shard), Shards: shards}
		ok = true
	})
	if !ok {
		return nil
	}
	if !l.consumersOK[job] {
		if err := l.consumers(ctx, job, shards); err != nil {
			return fmt.Errorf("task consumers: %w", err)
		}
	}
	// A publish in flight when the connection drops fails at once instead of holding up the
	// scheduler for its timeout; it is tried again at the next tick.
	wctx, stop := natsconn.Watch(ctx, l.n.cfg.Conn)
	defer stop()
	_, err := l.js.Publish(wctx, protocol.TaskSubject(job, tr.Shard), protocol.Encode(task),
		jetstream.WithMsgID(protocol.TaskMsgID(job, tr.Step, tr.Shard, tr.Attempt)))
	return err
}

// consumeResults commits the workers' results as they arrive, one message at a time (a leader
// that dies holds at most one, for resultsAckWait).
func (l *leader) consumeResults(ctx context.Context) {
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		var err error
		if cons == nil {
			if cons, err = l.js.Consumer(ctx, protocol.StreamResults, protocol.ConsumerResults); err != nil {
				l.n.cfg.Logger.Warn("results consumer", "err", err)
				cons = nil
				sleep(ctx, 250*time.Millisecond)
				continue
			}
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, jetstream.ErrNoMessages) {
				sleep(ctx, 100*time.Millisecond)
			}
			continue
		}
		for m := range batch.Messages() {
			l.handleResult(ctx, m)
		}
	}
}

// handleResult checks one result and commits it (or the failure it reports); the message is
// acked once raft has decided, so a leader that dies first leaves it to the next. A check that
// could not read the result's artifacts (the store did not answer) is tried again later.
func (l *leader) handleResult(ctx context.Context, m jetstream.Msg) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(resultsAckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = m.InProgress()
			}
		}
	}()
	r, err := protocol.DecodeResult(m.Data())
	if err != nil {
		l.n.cfg.Logger.Warn("refusing a result", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	c := Command{Type: CmdComplete, At: time.Now().UnixMilli(), Leader: l.n.cfg.ID, Job: r.Job, Result: &r}
	if r.Error != nil {
		c.Type = CmdFail
	} else if err := l.check(ctx, r); errors.Is(err, protocol.ErrUnavailable) || (err != nil && ctx.Err() != nil) {
		l.n.cfg.Logger.Info("checking a result later", "job", r.Job, "task", r.TaskKey.String(), "attempt", r.Attempt, "err", err)
		_ = m.NakWithDelay(250 * time.Millisecond)
		return
	} else if err != nil {
		bad := r
		bad.Error = protocol.Errorf(protocol.CodeTaskFailed, "result of job %s task %d/%d attempt %d from %s refused: %v", r.Job, r.Step, r.Shard, r.Attempt, r.Worker, err)
		c.Type, c.Result = CmdFail, &bad
	}
	err = l.n.Propose(ctx, c)
	if errors.Is(err, ErrNotLeader) || (err != nil && ctx.Err() != nil) {
		_ = m.Nak()
		return
	}
	switch {
	case err != nil:
		l.n.cfg.Logger.Info("result not committed", taskAttrs(r.Job, r.Step, r.Shard, r.Attempt, "worker", r.Worker, "err", err)...)
	case c.Type == CmdFail:
		l.n.cfg.Logger.Warn("task failed", taskAttrs(r.Job, r.Step, r.Shard, r.Attempt, "worker", r.Worker, "err", c.Result.Error.Error())...)
	default:
		l.n.cfg.Logger.Info("task done", taskAttrs(r.Job, r.Step, r.Shard, r.Attempt, "worker", r.Worker, "seconds", r.Stats.Seconds)...)
	}
	_ = m.Ack()
	l.wake()
}

// check runs the job handler's checks of a result that names a current attempt.
func (l *leader) check(ctx context.Context, r protocol.Result) error {
	var j *Job
	l.n.View(func(s *State) {
		if job, ok := s.Jobs[r.Job]; ok && job.State == JobRunning {
			cp := *job
			cp.Tasks, cp.Shards, cp.Events = nil, nil, nil // only the plan and spec are read outside the lock
			j = &cp
		}
	})
	if j == nil {
		return nil // Apply refuses it with the reason
	}
	return l.n.cfg.Jobs.CheckResult(ctx, j, r, l.n.cfg.Store)
}
