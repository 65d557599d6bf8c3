package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
}

// runLeader serves the job API and schedules until ctx ends (leadership lost or node closed).
func (n *Node) runLeader(ctx context.Context) {
	log := n.cfg.Logger.With("node", n.cfg.ID)
	log.Info("leading")
	l := &leader{n: n, lastSeen: map[string]time.Time{}, assembling: map[string]bool{}, published: map[string]int{}, kick: make(chan struct{}, 1)}
	js, err := jetstream.New(n.cfg.Conn)
	if err != nil {
		log.Error("jetstream", "err", err)
		return
	}
	l.js = js
	for ctx.Err() == nil {
		if err = l.ensureStreams(ctx); err == nil {
			break
		}
		log.Warn("creating streams", "err", err)
		sleep(ctx, time.Second)
	}
	now := time.Now()
	n.View(func(s *State) {
		for id := range s.Workers {
			l.lastSeen[id] = now // a new leader gives every worker a full timeout
		}
	})
	if err := l.subscribe(ctx); err != nil {
		log.Error("subscribing", "err", err)
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
		Durable: protocol.ConsumerResults, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second})
	return err
}

func (l *leader) unsubscribe() {
	for _, s := range l.subs {
		_ = s.Unsubscribe()
	}
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

// schedule proposes what Decide says, marks lost workers, and assembles finished jobs.
func (l *leader) schedule(ctx context.Context) {
	n := l.n
	now := time.Now()
	var cmds []Command
	var finished, ended []string
	n.View(func(s *State) {
		cmds = append(cmds, l.lost(s, now)...)
		cmds = append(cmds, Decide(s, Policy{Now: now.UnixMilli(), Leader: n.cfg.ID, LeaseMS: n.cfg.Lease.Milliseconds(), Plan: n.cfg.Jobs.Plan})...)
		for _, id := range s.Order {
			j := s.Jobs[id]
			if done, all := j.Counts(); j.State == JobRunning && all > 0 && done == all {
				finished = append(finished, id)
			}
			if j.State.Ended() {
				ended = append(ended, id)
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
	for _, id := range finished {
		l.assemble(ctx, id)
	}
	l.events(ended)
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
// consumers; a dispatch publishes the task.
func (l *leader) after(ctx context.Context, c Command) {
	switch c.Type {
	case CmdStart:
		if err := l.consumers(ctx, c.Job, len(c.Plan.Shards)); err != nil {
			l.n.cfg.Logger.Warn("creating task consumers", "job", c.Job, "err", err)
		}
	case CmdDispatch:
		t := *c.Task
		if err := l.publish(ctx, c.Job, t); err != nil {
			l.n.cfg.Logger.Warn("publishing task", taskAttrs(c.Job, t.Step, t.Shard, t.Attempt, "err", err)...)
		} else {
			l.n.cfg.Logger.Info("task dispatched", taskAttrs(c.Job, t.Step, t.Shard, t.Attempt)...)
		}
	}
}

func (l *leader) consumers(ctx context.Context, job string, shards int) error {
	for sh := 0; sh < shards; sh++ {
		_, err := l.js.CreateOrUpdateConsumer(ctx, protocol.StreamTasks, jetstream.ConsumerConfig{
			Durable: protocol.TaskConsumer(job, sh), FilterSubject: protocol.TaskSubject(job, sh),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: l.n.cfg.Lease, MaxDeliver: 2 * MaxFailures})
		if err != nil {
			return err
		}
	}
	return nil
}

// publish puts a dispatched attempt on its shard's task subject (de-duplicated by message id).
func (l *leader) publish(ctx context.Context, job string, tr TaskRef) error {
	var task protocol.Task
	var ok bool
	l.n.View(func(s *State) {
		j := s.Jobs[job]
		if j == nil || j.State != JobRunning {
			return
		}
		t := j.Tasks[tr.Step][tr.Shard]
		if t.Attempt != tr.Attempt {
			return
		}
		st := j.Plan.Steps[tr.Step]
		task = protocol.Task{Head: protocol.NewHead(), TaskKey: protocol.TaskKey{Job: job, Step: tr.Step, Shard: tr.Shard},
			Kind: st.Kind, Solve: st.Solve, Attempt: tr.Attempt, Inputs: j.Inputs(tr.Step, tr.Shard), Shards: len(j.Plan.Shards)}
		ok = true
	})
	if !ok {
		return nil
	}
	_, err := l.js.Publish(ctx, protocol.TaskSubject(job, tr.Shard), protocol.Encode(task),
		jetstream.WithMsgID(protocol.TaskMsgID(job, tr.Step, tr.Shard, tr.Attempt)))
	return err
}

// consumeResults commits the workers' results as they arrive.
func (l *leader) consumeResults(ctx context.Context) {
	cons, err := l.js.Consumer(ctx, protocol.StreamResults, protocol.ConsumerResults)
	if err != nil {
		l.n.cfg.Logger.Error("results consumer", "err", err)
		return
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(16, jetstream.FetchMaxWait(500*time.Millisecond))
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
// acked once raft has decided, so a leader that dies first leaves it to the next.
func (l *leader) handleResult(ctx context.Context, m jetstream.Msg) {
	r, err := protocol.DecodeResult(m.Data())
	if err != nil {
		l.n.cfg.Logger.Warn("refusing a result", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	c := Command{Type: CmdComplete, At: time.Now().UnixMilli(), Leader: l.n.cfg.ID, Job: r.Job, Result: &r}
	if r.Error != nil {
		c.Type = CmdFail
	} else if err := l.check(ctx, r); err != nil {
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
