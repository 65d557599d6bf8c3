package coordinator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/iteris-dev/iteris/protocol"
)

// subscribe serves the job API and the workers' requests while this node leads.
func (l *leader) subscribe(ctx context.Context) error {
	handlers := []struct {
		subject string
		fn      func(ctx context.Context, m *nats.Msg)
		async   bool
	}{
		{protocol.SubjectSubmit, l.submit, true},
		{protocol.SubjectStatus, l.status, false},
		{protocol.SubjectCancel, l.cancel, true},
		{protocol.SubjectFetch, l.fetch, false},
		{protocol.SubjectRegister, l.register, false},
		{protocol.SubjectHeartbeat, l.heartbeat, false},
	}
	for _, h := range handlers {
		fn, async := h.fn, h.async
		sub, err := l.n.cfg.Conn.Subscribe(h.subject, func(m *nats.Msg) {
			if async {
				go fn(ctx, m)
			} else {
				fn(ctx, m)
			}
		})
		if err != nil {
			l.unsubscribe()
			return fmt.Errorf("subscribing to %s: %w", h.subject, err)
		}
		l.subs = append(l.subs, sub)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.n.cfg.Conn.FlushWithContext(fctx); err != nil {
		l.unsubscribe()
		return fmt.Errorf("flushing subscriptions: %w", err)
	}
	return nil
}

func reply(m *nats.Msg, v any) {
	if m.Reply != "" {
		_ = m.Respond(protocol.Encode(v))
	}
}

// refuse answers a request with an error of the reply type's shape.
func (l *leader) refuse(m *nats.Msg, code protocol.Code, err error) {
	reply(m, protocol.Reply{Head: protocol.NewHead(), Error: &protocol.Error{Code: code, Message: err.Error()}, Leader: l.n.cfg.ID})
}

// newJobID derives a job id from the submission and its request id, or, without one, the
// leader's clock.
func (l *leader) newJobID(sub protocol.Submit) string {
	h := sha256.New()
	h.Write(sub.Config)
	h.Write([]byte(sub.Dir))
	if sub.Request != "" {
		h.Write([]byte("request " + sub.Request))
	} else {
		h.Write([]byte(l.n.cfg.ID))
		h.Write([]byte(strconv.FormatInt(time.Now().UnixNano(), 10)))
	}
	return "j" + hex.EncodeToString(h.Sum(nil))[:15]
}

// bucketMaker is a store that creates a job's artifact bucket ahead of its first artifact.
type bucketMaker interface {
	Ensure(ctx context.Context, job string) error
}

// submitted reports whether a job of this id exists (a submission sent again).
func (l *leader) submitted(id string) bool {
	var ok bool
	l.n.View(func(s *State) { _, ok = s.Jobs[id] })
	return ok
}

func (l *leader) submit(ctx context.Context, m *nats.Msg) {
	sub, err := protocol.DecodeSubmit(m.Data)
	if err != nil {
		l.refuse(m, protocol.CodeBadRequest, err)
		return
	}
	id := l.newJobID(sub)
	if sub.Request != "" && l.submitted(id) {
		reply(m, protocol.SubmitReply{Head: protocol.NewHead(), Job: id, Leader: l.n.cfg.ID})
		return
	}
	if e, ok := l.n.cfg.Store.(bucketMaker); ok {
		// The job's artifact bucket exists before any worker writes to it: workers need no
		// permission to create streams.
		if err := e.Ensure(ctx, id); err != nil {
			code := protocol.CodeInternal
			if ctx.Err() != nil || errors.Is(err, protocol.ErrUnavailable) {
				code = protocol.CodeUnavailable // the client submits again
			}
			reply(m, protocol.SubmitReply{Head: protocol.NewHead(), Error: &protocol.Error{Code: code, Message: fmt.Sprintf("creating the artifact bucket of job %s: %v", id, err)}, Leader: l.n.cfg.ID})
			return
		}
	}
	spec, err := l.n.cfg.Jobs.Prepare(ctx, sub, id, l.n.cfg.Store)
	if err != nil {
		if !l.submitted(id) {
			_ = l.n.cfg.Store.DropJob(context.Background(), id)
		}
		code := protocol.CodeInvalidConfig
		switch {
		case ctx.Err() != nil:
			// Leadership was lost while the submission was checked: the next leader takes it.
			code = protocol.CodeNotLeader
		case errors.Is(err, protocol.ErrUnavailable):
			code = protocol.CodeUnavailable
		}
		reply(m, protocol.SubmitReply{Head: protocol.NewHead(), Error: &protocol.Error{Code: code, Message: err.Error()}, Leader: l.n.cfg.ID})
		return
	}
	err = l.n.Propose(ctx, Command{Type: CmdSubmit, At: time.Now().UnixMilli(), Leader: l.n.cfg.ID, Job: id, Spec: &spec})
	if errors.Is(err, ErrConflict) && sub.Request != "" && l.submitted(id) {
		err = nil // the same submission, committed meanwhile
	}
	if err != nil {
		code := protocol.CodeInternal
		if errors.Is(err, ErrNotLeader) {
			code = protocol.CodeNotLeader
		}
		reply(m, protocol.SubmitReply{Head: protocol.NewHead(), Error: &protocol.Error{Code: code, Message: err.Error()}, Leader: l.n.Leader()})
		return
	}
	l.n.cfg.Logger.Info("job submitted", "job", id, "method", spec.Method)
	reply(m, protocol.SubmitReply{Head: protocol.NewHead(), Job: id, Leader: l.n.cfg.ID})
	l.wake()
}

func (l *leader) status(_ context.Context, m *nats.Msg) {
	req, err := protocol.DecodeJobRequest(m.Data)
	if err != nil {
		l.refuse(m, protocol.CodeBadRequest, err)
		return
	}
	out := protocol.StatusReply{Head: protocol.NewHead(), Leader: l.n.cfg.ID, Jobs: []protocol.JobStatus{}, Workers: []protocol.WorkerStatus{}}
	found := req.Job == ""
	l.n.View(func(s *State) {
		for _, id := range s.Order {
			if req.Job != "" && id != req.Job {
				continue
			}
			found = true
			out.Jobs = append(out.Jobs, jobStatus(s.Jobs[id], req.Events))
		}
		for _, id := range s.WorkerIDs() {
			w := s.Workers[id]
			out.Workers = append(out.Workers, protocol.WorkerStatus{Worker: w.ID, Version: w.Version, Memory: w.Memory, Alive: w.Alive, Job: w.Job, Shard: w.Shard})
		}
	})
	if !found {
		out.Error = protocol.Errorf(protocol.CodeNotFound, "no job %s", req.Job)
	}
	reply(m, out)
}

// jobStatus summarises a job for the status API, with its event history when asked.
func jobStatus(j *Job, events bool) protocol.JobStatus {
	done, all := j.Counts()
	st := protocol.JobStatus{Job: j.ID, State: string(j.State), Method: j.Spec.Method, Schedule: j.Spec.Schedule,
		TasksDone: done, Tasks: all, Error: j.Error, Submitted: j.Submitted, Finished: j.Finished, Shards: []protocol.ShardStatus{}}
	if i := j.CurrentStep(); i < len(j.Plan.Steps) {
		st.Step = j.Plan.Steps[i].String()
	}
	for i, step := range j.Plan.Steps {
		ss := protocol.StepStatus{Kind: step.Kind, Solve: step.Solve, Tasks: len(j.Plan.Shards)}
		for _, t := range j.Tasks[i] {
			switch t.State {
			case TaskDone:
				ss.Done++
			case TaskSkipped:
				ss.Done, ss.Skipped = ss.Done+1, true
			}
		}
		st.Steps = append(st.Steps, ss)
	}
	for i, sp := range j.Plan.Shards {
		ss := protocol.ShardStatus{Lo: sp.Lo, Hi: sp.Hi}
		if i < len(j.Shards) {
			ss.Worker, ss.Loaded = j.Shards[i].Worker, j.Shards[i].Loaded
		}
		st.Shards = append(st.Shards, ss)
	}
	if events {
		st.Events = make([]protocol.JobEvent, len(j.Events))
		for i, e := range j.Events {
			st.Events[i] = protocol.JobEvent(e)
		}
	}
	return st
}

func (l *leader) cancel(ctx context.Context, m *nats.Msg) {
	req, err := protocol.DecodeJobRequest(m.Data)
	if err != nil || req.Job == "" {
		l.refuse(m, protocol.CodeBadRequest, fmt.Errorf("cancel needs a job id: %v", err))
		return
	}
	err = l.n.Propose(ctx, Command{Type: CmdCancel, At: time.Now().UnixMilli(), Leader: l.n.cfg.ID, Job: req.Job, Reason: "canceled by a user"})
	switch {
	case errors.Is(err, ErrUnknownJob):
		l.refuse(m, protocol.CodeNotFound, err)
	case err != nil:
		l.refuse(m, protocol.CodeJobFailed, err)
	default:
		reply(m, protocol.Reply{Head: protocol.NewHead(), Leader: l.n.cfg.ID})
		l.wake()
	}
}

func (l *leader) fetch(_ context.Context, m *nats.Msg) {
	req, err := protocol.DecodeJobRequest(m.Data)
	if err != nil || req.Job == "" {
		l.refuse(m, protocol.CodeBadRequest, fmt.Errorf("fetch needs a job id: %v", err))
		return
	}
	out := protocol.FetchReply{Head: protocol.NewHead(), Leader: l.n.cfg.ID}
	l.n.View(func(s *State) {
		j, ok := s.Jobs[req.Job]
		switch {
		case !ok:
			out.Error = protocol.Errorf(protocol.CodeNotFound, "no job %s", req.Job)
		case j.State == JobDone:
			out.Files = j.Files
		case j.State.Ended():
			out.Error = protocol.Errorf(protocol.CodeJobFailed, "job %s %s: %s", j.ID, j.State, j.Error)
		default:
			done, all := j.Counts()
			out.Error = protocol.Errorf(protocol.CodeNotDone, "job %s is %s (%d of %d tasks done)", j.ID, j.State, done, all)
		}
	})
	reply(m, out)
}

func (l *leader) register(ctx context.Context, m *nats.Msg) {
	r, err := protocol.DecodeRegister(m.Data)
	if err != nil {
		code := protocol.CodeBadRequest
		if errors.Is(err, protocol.ErrMessageVersion) {
			code = protocol.CodeVersion
		}
		l.refuse(m, code, err)
		return
	}
	if r.Version != l.n.cfg.Version {
		l.refuse(m, protocol.CodeVersion, fmt.Errorf("worker %s runs iteris %s, this coordinator %s: run the same version", r.Worker, r.Version, l.n.cfg.Version))
		return
	}
	err = l.n.Propose(ctx, Command{Type: CmdRegister, At: time.Now().UnixMilli(), Leader: l.n.cfg.ID, Worker: &WorkerInfo{ID: r.Worker, Version: r.Version, Memory: r.Memory}})
	if err != nil {
		l.refuse(m, protocol.CodeNotLeader, err)
		return
	}
	l.mu.Lock()
	l.lastSeen[r.Worker] = time.Now()
	l.mu.Unlock()
	reply(m, protocol.Reply{Head: protocol.NewHead(), Leader: l.n.cfg.ID})
	l.wake()
}
