package coordinator

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/iteris-dev/iteris/protocol"
)

// heartbeat records a worker's liveness, commits what it reports (its shard loaded, lease renewals
// of the attempts it runs) and answers with its assignment and the attempts it should abandon.
func (l *leader) heartbeat(ctx context.Context, m *nats.Msg) {
	hb, err := protocol.DecodeHeartbeat(m.Data)
	if err != nil {
		l.refuse(m, protocol.CodeBadRequest, err)
		return
	}
	now := time.Now()
	var known bool
	var cmds []Command
	var asg *protocol.Assignment
	var cancel []protocol.Running
	l.n.View(func(s *State) {
		w, ok := s.Workers[hb.Worker]
		known = ok && w.Alive
		if !known {
			return
		}
		cmds = l.reported(s, w, hb, now)
		asg = assignment(s, w)
		cancel = Cancels(s, w.ID, hb.Running)
	})
	if !known {
		reply(m, protocol.HeartbeatReply{Head: protocol.NewHead(), Leader: l.n.cfg.ID,
			Error: protocol.Errorf(protocol.CodeNotFound, "worker %s is not registered (or was lost): register again", hb.Worker)})
		return
	}
	l.mu.Lock()
	l.lastSeen[hb.Worker] = now
	l.mu.Unlock()
	for _, c := range cmds {
		_ = l.n.Propose(ctx, c)
	}
	reply(m, protocol.HeartbeatReply{Head: protocol.NewHead(), Leader: l.n.cfg.ID, Assignment: asg, Cancel: cancel})
	if len(cmds) > 0 {
		l.wake()
	}
}

// reported returns the commands a heartbeat calls for: the shard loaded, and a renewal of every
// running attempt whose lease is past half.
func (l *leader) reported(s *State, w *Worker, hb protocol.Heartbeat, now time.Time) []Command {
	var out []Command
	at, lease := now.UnixMilli(), l.n.cfg.Lease.Milliseconds()
	if ld := hb.Loaded; ld != nil && ld.Job == w.Job && ld.Shard == w.Shard {
		if j, ok := s.Jobs[w.Job]; ok && j.State == JobRunning && !j.Shards[w.Shard].Loaded {
			out = append(out, Command{Type: CmdLoaded, At: at, Leader: l.n.cfg.ID, Job: w.Job, Shard: w.Shard, Worker: &WorkerInfo{ID: w.ID}})
		}
	}
	for _, r := range hb.Running {
		j, ok := s.Jobs[r.Job]
		if !ok || j.State != JobRunning || r.Step >= len(j.Tasks) || r.Shard >= len(j.Plan.Shards) {
			continue
		}
		t := j.Tasks[r.Step][r.Shard]
		if j.Shards[r.Shard].Worker == w.ID && t.State == TaskDispatched && t.Attempt == r.Attempt && t.LeaseUntil != 0 && t.LeaseUntil-at < lease/2 {
			out = append(out, Command{Type: CmdRenew, At: at, Leader: l.n.cfg.ID, Job: r.Job,
				Task: &TaskRef{Step: r.Step, Shard: r.Shard, Attempt: r.Attempt}, LeaseUntil: at + lease})
		}
	}
	return out
}

// Cancels returns the attempts a worker runs that it should abandon, because no result of
// theirs can be committed any more and they may block the worker (a calibration ring waits for
// shards that moved on): the job ended; the worker does not hold the task's shard; the task is
// done or skipped; or the task is a calibration whose ring moved to a newer attempt. An attempt
// superseded because its lease ran out on a worker that still holds the shard is not cancelled:
// it finishes, and its result is ignored.
func Cancels(s *State, worker string, running []protocol.Running) []protocol.Running {
	var out []protocol.Running
	for _, r := range running {
		j, ok := s.Jobs[r.Job]
		if !ok || j.State != JobRunning || r.Step >= len(j.Tasks) || r.Shard >= len(j.Plan.Shards) {
			if !ok || j.State.Ended() {
				out = append(out, r)
			}
			continue
		}
		t := j.Tasks[r.Step][r.Shard]
		over := (t.State == TaskDone || t.State == TaskSkipped) && t.Attempt >= r.Attempt
		ring := j.Plan.Steps[r.Step].Kind == protocol.StepCalibrate && t.Attempt > r.Attempt
		if j.Shards[r.Shard].Worker != worker || over || ring {
			out = append(out, r)
		}
	}
	return out
}

// assignment returns what a worker should hold.
func assignment(s *State, w *Worker) *protocol.Assignment {
	j, ok := s.Jobs[w.Job]
	if !ok || j.State != JobRunning {
		return nil
	}
	sp := j.Plan.Shards[w.Shard]
	return &protocol.Assignment{ShardRef: protocol.ShardRef{Job: j.ID, Shard: w.Shard}, Lo: sp.Lo, Hi: sp.Hi,
		Shards: len(j.Plan.Shards), Config: j.Spec.Config, Dir: j.Spec.Dir}
}

// assemble builds a finished job's output files, stores them apart from the job's working
// artifacts, commits them, and drops the working artifacts. It runs at most once at a time per
// job; a new leader redoes an assembly the old one did not commit.
func (l *leader) assemble(ctx context.Context, id string) {
	l.mu.Lock()
	if l.assembling[id] {
		l.mu.Unlock()
		return
	}
	l.assembling[id] = true
	l.mu.Unlock()
	go func() {
		defer func() {
			l.mu.Lock()
			delete(l.assembling, id)
			l.mu.Unlock()
		}()
		if err := l.assembleJob(ctx, id); err != nil && ctx.Err() == nil {
			l.n.cfg.Logger.Error("assembling the result", "job", id, "err", err)
			_ = l.n.Propose(ctx, Command{Type: CmdFailJob, At: time.Now().UnixMilli(), Leader: l.n.cfg.ID, Job: id, Reason: "assembling the adapter: " + err.Error()})
		}
		l.wake()
	}()
}

func (l *leader) assembleJob(ctx context.Context, id string) error {
	var j *Job
	l.n.View(func(s *State) {
		if job, ok := s.Jobs[id]; ok {
			j = cloneJob(job)
		}
	})
	if j == nil {
		return nil
	}
	files, err := l.n.cfg.Jobs.Assemble(ctx, j, l.n.cfg.Store)
	if err != nil {
		return err
	}
	content, err := protocol.EncodeFiles(files)
	if err != nil {
		return err
	}
	ref, err := l.n.cfg.Store.Put(ctx, ResultsJob(id), protocol.KindFiles, content)
	if err != nil {
		return err
	}
	if err := l.n.Propose(ctx, Command{Type: CmdFinish, At: time.Now().UnixMilli(), Leader: l.n.cfg.ID, Job: id, Files: ref}); err != nil {
		return err
	}
	l.n.cfg.Logger.Info("job done", "job", id)
	return nil
}

// cloneJob deep-copies what Assemble reads outside the state lock.
func cloneJob(j *Job) *Job {
	cp := *j
	cp.Tasks = make([][]*Task, len(j.Tasks))
	for i, ts := range j.Tasks {
		for _, t := range ts {
			tc := *t
			cp.Tasks[i] = append(cp.Tasks[i], &tc)
		}
	}
	cp.Shards = append([]ShardHolder(nil), j.Shards...)
	cp.Events = append([]Event(nil), j.Events...)
	return &cp
}

// events publishes progress events for jobs whose task counts changed, a final event for jobs
// that ended, and drops the working artifacts of ended jobs.
func (l *leader) events() {
	type ev struct {
		e    protocol.Event
		drop bool
	}
	var out []ev
	l.mu.Lock()
	l.n.View(func(s *State) {
		for _, id := range s.Order {
			j := s.Jobs[id]
			done, all := j.Counts()
			key := done
			if j.State.Ended() {
				key = -1
			}
			if last, ok := l.published[id]; ok && last == key {
				continue
			}
			l.published[id] = key
			e := protocol.Event{Head: protocol.NewHead(), Job: id, Type: "progress", Phase: "tasks", Done: done, Total: all}
			switch j.State {
			case JobDone:
				e.Type = "done"
			case JobFailed, JobCanceled:
				e.Type, e.Message = "failed", j.Error
			}
			out = append(out, ev{e, j.State.Ended()})
		}
	})
	l.mu.Unlock()
	for _, e := range out {
		_ = l.n.cfg.Conn.Publish(protocol.EventSubject(e.e.Job), protocol.Encode(e.e))
		if e.drop {
			_ = l.n.cfg.Store.DropJob(context.Background(), e.e.Job)
		}
	}
}
