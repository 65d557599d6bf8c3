package coordinator

import (
	"fmt"
	"strings"

	"github.com/iteris-dev/iteris/protocol"
)

// MaxFailures is how many failed attempts of one task fail its job.
const MaxFailures = 3

// MaxRetries is how many attempts of one task may end without counting as failures (the cluster
// was unavailable to them, or an artifact the task produced had to be made again) before its job
// fails: a bound on a fault that never clears.
const MaxRetries = 10

// Apply applies one command at raft index index. It is deterministic: the same commands in the
// same order give the same state on every replica. It returns an error (wrapping ErrStale,
// ErrConflict, ErrUnknownJob or ErrBadCommand) for a command it ignores; the state then changes
// at most by an event noting the ignored command.
func (s *State) Apply(index uint64, c Command) error {
	if index > s.Index {
		s.Index = index
	}
	if c.At > s.Now {
		s.Now = c.At
	}
	if err := c.validate(); err != nil {
		return err
	}
	switch c.Type {
	case CmdSubmit:
		return s.submit(c)
	case CmdRegister:
		return s.register(c)
	case CmdWorkerLost:
		return s.workerLost(c)
	case CmdTakeover:
		s.takeover(c)
		return nil
	}
	j, ok := s.Jobs[c.Job]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownJob, c.Job)
	}
	if j.State.Ended() {
		return fmt.Errorf("%w: job %s is %s", ErrStale, j.ID, j.State)
	}
	switch c.Type {
	case CmdStart:
		return s.start(j, c)
	case CmdReassign:
		return s.reassign(j, c)
	case CmdLoaded:
		return s.loaded(j, c)
	case CmdDispatch:
		return s.dispatch(j, c)
	case CmdRenew:
		return s.renew(j, c)
	case CmdComplete:
		return s.complete(j, c)
	case CmdFail:
		return s.fail(j, c)
	case CmdFinish:
		return s.finish(j, c)
	case CmdFailJob:
		s.end(j, JobFailed, c.At, c.Reason)
		return nil
	case CmdCancel:
		s.end(j, JobCanceled, c.At, c.Reason)
		return nil
	}
	return fmt.Errorf("%w: unknown type %q", ErrBadCommand, c.Type)
}

func (s *State) submit(c Command) error {
	if _, ok := s.Jobs[c.Job]; ok {
		return fmt.Errorf("%w: job %s exists", ErrConflict, c.Job)
	}
	spec := *c.Spec
	if spec.Workers < 1 {
		spec.Workers = 1
	}
	s.Jobs[c.Job] = &Job{ID: c.Job, State: JobQueued, Spec: spec, Submitted: c.At}
	s.Order = append(s.Order, c.Job)
	return nil
}

func (s *State) register(c Command) error {
	w := c.Worker
	cur, ok := s.Workers[w.ID]
	if ok && cur.Alive && cur.Job != "" {
		// A worker that restarted under the same id lost what it had loaded.
		s.release(cur)
	}
	s.Workers[w.ID] = &Worker{ID: w.ID, Version: w.Version, Memory: w.Memory, Alive: true, Since: c.At}
	return nil
}

func (s *State) workerLost(c Command) error {
	w, ok := s.Workers[c.Worker.ID]
	if !ok || !w.Alive {
		return fmt.Errorf("%w: worker %s is not alive", ErrStale, c.Worker.ID)
	}
	s.release(w)
	w.Alive = false
	return nil
}

// release frees the shard a worker holds and revokes the leases of the shard's dispatched
// attempts: they ran on that worker, so they run nowhere now (attempt+1 follows once a new
// holder has loaded the shard).
func (s *State) release(w *Worker) {
	if j, ok := s.Jobs[w.Job]; ok && w.Shard < len(j.Shards) && j.Shards[w.Shard].Worker == w.ID {
		j.Shards[w.Shard] = ShardHolder{}
		for _, ts := range j.Tasks {
			if t := ts[w.Shard]; t.State == TaskDispatched {
				t.LeaseUntil = 0
			}
		}
	}
	w.Job, w.Shard = "", 0
}

// takeover records in every running job that a new leader took it over, and how far it was.
func (s *State) takeover(c Command) {
	for _, id := range s.Order {
		j := s.Jobs[id]
		if j.State != JobRunning {
			continue
		}
		done, all := j.Counts()
		step := j.CurrentStep()
		note := fmt.Sprintf("%d of %d tasks done", done, all)
		if step < len(j.Plan.Steps) {
			note += fmt.Sprintf("; resuming at step %d (%s)", step, j.Plan.Steps[step])
		}
		j.event(c, "takeover", step, 0, 0, "", note)
	}
}

// free reports whether a worker can take a shard.
func (s *State) free(id string) (*Worker, error) {
	w, ok := s.Workers[id]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: worker %s is not registered", ErrConflict, id)
	case !w.Alive:
		return nil, fmt.Errorf("%w: worker %s is not alive", ErrConflict, id)
	case w.Job != "":
		return nil, fmt.Errorf("%w: worker %s holds shard %d of job %s", ErrConflict, id, w.Shard, w.Job)
	}
	return w, nil
}

func (s *State) start(j *Job, c Command) error {
	if j.State != JobQueued {
		return fmt.Errorf("%w: job %s is %s, not queued", ErrConflict, j.ID, j.State)
	}
	if len(c.Plan.Steps) != len(j.Spec.Steps) {
		return fmt.Errorf("%w: job %s: plan has %d steps, the spec %d", ErrConflict, j.ID, len(c.Plan.Steps), len(j.Spec.Steps))
	}
	if last := c.Plan.Shards[len(c.Plan.Shards)-1].Hi; last != j.Spec.Layers {
		return fmt.Errorf("%w: job %s: plan covers %d layers, the model has %d", ErrConflict, j.ID, last, j.Spec.Layers)
	}
	seen := map[string]bool{}
	for _, id := range c.Workers {
		if _, err := s.free(id); err != nil {
			return err
		}
		if seen[id] {
			return fmt.Errorf("%w: worker %s given two shards", ErrConflict, id)
		}
		seen[id] = true
	}
	j.Plan = *c.Plan
	j.State, j.Started = JobRunning, c.At
	j.Tasks = make([][]*Task, len(j.Plan.Steps))
	for i := range j.Tasks {
		j.Tasks[i] = make([]*Task, len(j.Plan.Shards))
		for sh := range j.Tasks[i] {
			j.Tasks[i][sh] = &Task{State: TaskPending}
		}
	}
	j.Shards = make([]ShardHolder, len(j.Plan.Shards))
	for sh, id := range c.Workers {
		s.hold(j, sh, id)
	}
	return nil
}

func (s *State) hold(j *Job, shard int, id string) {
	w := s.Workers[id]
	w.Job, w.Shard = j.ID, shard
	j.Shards[shard] = ShardHolder{Worker: id}
}

func (s *State) reassign(j *Job, c Command) error {
	if j.State != JobRunning || c.Shard < 0 || c.Shard >= len(j.Shards) {
		return fmt.Errorf("%w: job %s has no shard %d to assign", ErrConflict, j.ID, c.Shard)
	}
	if j.Shards[c.Shard].Worker != "" {
		return fmt.Errorf("%w: shard %d of job %s is held by %s", ErrConflict, c.Shard, j.ID, j.Shards[c.Shard].Worker)
	}
	if _, err := s.free(c.Worker.ID); err != nil {
		return err
	}
	s.hold(j, c.Shard, c.Worker.ID)
	return nil
}

func (s *State) loaded(j *Job, c Command) error {
	if c.Shard < 0 || c.Shard >= len(j.Shards) || j.Shards[c.Shard].Worker != c.Worker.ID {
		return fmt.Errorf("%w: worker %s does not hold shard %d of job %s", ErrStale, c.Worker.ID, c.Shard, j.ID)
	}
	j.Shards[c.Shard].Loaded = true
	return nil
}

func (s *State) dispatch(j *Job, c Command) error {
	t, err := j.task(c.Task.Step, c.Task.Shard)
	if err != nil {
		return err
	}
	calib := j.Plan.Steps[c.Task.Step].Kind == protocol.StepCalibrate
	// A calibrate task that finished before the ring's first shard did runs again with the ring.
	rerun := calib && t.State == TaskDone && !j.done(c.Task.Step, 0)
	if (t.State == TaskDone && !rerun) || t.State == TaskSkipped {
		return fmt.Errorf("%w: task %d/%d of job %s is %s", ErrStale, c.Task.Step, c.Task.Shard, j.ID, t.State)
	}
	if c.Task.Attempt <= t.Attempt {
		return fmt.Errorf("%w: task %d/%d of job %s: attempt %d after attempt %d", ErrConflict, c.Task.Step, c.Task.Shard, j.ID, c.Task.Attempt, t.Attempt)
	}
	if t.State == TaskPending && !j.Ready(c.Task.Step, c.Task.Shard) {
		return fmt.Errorf("%w: task %d/%d of job %s is not ready", ErrConflict, c.Task.Step, c.Task.Shard, j.ID)
	}
	t.State, t.Attempt = TaskDispatched, c.Task.Attempt
	t.DispatchedAt, t.LeaseUntil = c.At, c.LeaseUntil
	j.event(c, "dispatch", c.Task.Step, c.Task.Shard, c.Task.Attempt, "", "")
	return nil
}

func (s *State) renew(j *Job, c Command) error {
	t, err := j.task(c.Task.Step, c.Task.Shard)
	if err != nil {
		return err
	}
	if t.State != TaskDispatched || t.Attempt != c.Task.Attempt || t.LeaseUntil == 0 {
		return fmt.Errorf("%w: task %d/%d of job %s attempt %d is not current", ErrStale, c.Task.Step, c.Task.Shard, j.ID, c.Task.Attempt)
	}
	t.LeaseUntil = max(t.LeaseUntil, c.LeaseUntil)
	return nil
}

func (j *Job) event(c Command, typ string, step, shard, attempt int, worker, note string) {
	j.Events = append(j.Events, Event{At: c.At, Leader: c.Leader, Type: typ, Step: step, Shard: shard, Attempt: attempt, Worker: worker, Note: note})
}

// current returns the task a result names if the result is for its current, dispatched attempt;
// otherwise it records the ignored result and returns ErrStale.
func (j *Job) current(c Command) (*Task, error) {
	r := c.Result
	t, err := j.task(r.Step, r.Shard)
	if err != nil {
		return nil, err
	}
	if t.State != TaskDispatched || t.Attempt != r.Attempt {
		j.event(c, "ignored", r.Step, r.Shard, r.Attempt, r.Worker, fmt.Sprintf("task is %s at attempt %d", t.State, t.Attempt))
		return nil, fmt.Errorf("%w: result of task %d/%d of job %s attempt %d: the task is %s at attempt %d",
			ErrStale, r.Step, r.Shard, j.ID, r.Attempt, t.State, t.Attempt)
	}
	return t, nil
}

func (s *State) complete(j *Job, c Command) error {
	r := c.Result
	if r.Error != nil {
		return fmt.Errorf("%w: complete with an error", ErrBadCommand)
	}
	t, err := j.current(c)
	if err != nil {
		return err
	}
	if err := j.checkOutputs(r.Step, r.Shard, r.Outputs); err != nil {
		return err
	}
	t.State, t.Worker, t.Outputs, t.Stats = TaskDone, r.Worker, r.Outputs, r.Stats
	j.event(c, "complete", r.Step, r.Shard, r.Attempt, r.Worker, outputsNote(r.Outputs))
	if j.Plan.Steps[r.Step].Kind == protocol.StepCalibrate && r.Shard == 0 {
		// The first shard finishes the ring last: the calibration is done on every shard.
		for _, o := range j.Tasks[r.Step] {
			o.State = TaskDone
		}
	}
	j.checkTolerance(r.Step)
	return nil
}

// outputsNote names a result's artifacts ("t=REF m=REF ..."), for the complete event.
func outputsNote(o protocol.Outputs) string {
	var parts []string
	for _, a := range []struct {
		name string
		ref  protocol.Ref
	}{{"t", o.T}, {"m", o.M}, {"factors", o.Factors}, {"records", o.Records}, {"sequences", o.Sequences}} {
		if !a.ref.IsZero() {
			parts = append(parts, a.name+"="+a.ref.String())
		}
	}
	return strings.Join(parts, " ")
}

// checkOutputs checks that a result names every artifact its step must produce.
func (j *Job) checkOutputs(step, shard int, o protocol.Outputs) error {
	st := j.Plan.Steps[step]
	last := shard == len(j.Plan.Shards)-1
	var missing []string
	want := func(ok bool, what string) {
		if !ok {
			missing = append(missing, what)
		}
	}
	switch st.Kind {
	case protocol.StepCalibrate:
		want(shard != 0 || !o.Sequences.IsZero(), "sequences")
	case protocol.StepWeightOnly:
		want(!o.Factors.IsZero(), "factors")
	case protocol.StepSweep:
		want(!o.Factors.IsZero() && !o.Records.IsZero(), "factors and records")
		want(last || (!o.T.IsZero() && !o.M.IsZero()), "both streams")
	case protocol.StepJacobi:
		want(!o.Factors.IsZero() && !o.Records.IsZero(), "factors and records")
		want(last || st.Solve > 1 || !o.T.IsZero(), "the task stream")
		want(last || st.Solve == 1 || !o.M.IsZero(), "the merged stream")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: result of %s on shard %d of job %s lacks %v", ErrBadCommand, st, shard, j.ID, missing)
	}
	return nil
}

// checkTolerance skips the later jacobi solves once every shard of a solve has reported a largest
// relative change below the plan's tolerance.
func (j *Job) checkTolerance(step int) {
	st := j.Plan.Steps[step]
	if st.Kind != protocol.StepJacobi || st.Solve < 2 || j.Plan.Tolerance <= 0 {
		return
	}
	worst := 0.0
	for _, t := range j.Tasks[step] {
		if t.State != TaskDone || t.Stats.MaxRelChange == nil {
			return
		}
		worst = max(worst, *t.Stats.MaxRelChange)
	}
	if worst >= j.Plan.Tolerance {
		return
	}
	for i := step + 1; i < len(j.Tasks); i++ {
		if j.Plan.Steps[i].Kind == protocol.StepJacobi {
			for _, t := range j.Tasks[i] {
				t.State = TaskSkipped
			}
		}
	}
}

func (s *State) fail(j *Job, c Command) error {
	r := c.Result
	if r.Error == nil {
		return fmt.Errorf("%w: fail without an error", ErrBadCommand)
	}
	t, err := j.current(c)
	if err != nil {
		return err
	}
	j.event(c, "fail", r.Step, r.Shard, r.Attempt, r.Worker, r.Error.Error())
	calib := j.Plan.Steps[r.Step].Kind == protocol.StepCalibrate
	switch {
	case (r.Error.Code == protocol.CodeInputCorrupt || r.Error.Code == protocol.CodeInputMissing) && r.Error.Ref != nil && j.producer(*r.Error.Ref) != nil:
		// The input is bad, not the task: run the task that produced it again (unless it already
		// runs again), then this one.
		p, ps, psh := j.producerTask(*r.Error.Ref)
		if p.State == TaskDone {
			p.State = TaskPending
			p.Retries++
			j.event(c, "rerun", ps, psh, p.Attempt, "", fmt.Sprintf("its output %s is bad: %s", r.Error.Ref, r.Error.Message))
			if p.Retries > MaxRetries {
				s.end(j, JobFailed, c.At, fmt.Sprintf("%s on shard %d produced a bad artifact %d times; last: %s", j.Plan.Steps[ps], psh, p.Retries, r.Error.Message))
				return nil
			}
		}
		t.State = TaskPending
		return nil
	case r.Error.Code == protocol.CodeUnavailable:
		// The cluster failed the task, not its inputs or its computation: run it again.
		t.Retries++
		t.LastError = r.Error.Error()
		if t.Retries > MaxRetries {
			s.end(j, JobFailed, c.At, fmt.Sprintf("%s on shard %d could not reach the cluster %d times; last: %s", j.Plan.Steps[r.Step], r.Shard, t.Retries, t.LastError))
			return nil
		}
	default:
		t.Failures++
		t.LastError = r.Error.Error()
	}
	t.State = TaskPending
	if calib {
		// The shards of a calibration run as one ring: they start again together.
		for _, o := range j.Tasks[r.Step] {
			o.State = TaskPending
		}
	}
	if t.Failures >= MaxFailures {
		s.end(j, JobFailed, c.At, fmt.Sprintf("%s on shard %d failed %d times; last: %s", j.Plan.Steps[r.Step], r.Shard, t.Failures, t.LastError))
	}
	return nil
}

// producer returns the task whose committed outputs include ref (done, or pending again because
// one of its outputs was bad), or nil.
func (j *Job) producer(ref protocol.Ref) *Task {
	t, _, _ := j.producerTask(ref)
	return t
}

// producerTask is producer with the task's step and shard.
func (j *Job) producerTask(ref protocol.Ref) (*Task, int, int) {
	if ref.IsZero() {
		return nil, 0, 0
	}
	for i, ts := range j.Tasks {
		for sh, t := range ts {
			o := t.Outputs
			if o.T == ref || o.M == ref || o.Factors == ref || o.Sequences == ref || o.Records == ref {
				return t, i, sh
			}
		}
	}
	return nil, 0, 0
}

func (s *State) finish(j *Job, c Command) error {
	if done, all := j.Counts(); j.State != JobRunning || done != all {
		return fmt.Errorf("%w: job %s is %s with %d of %d tasks done", ErrConflict, j.ID, j.State, done, all)
	}
	j.Files = c.Files
	s.end(j, JobDone, c.At, "")
	return nil
}

// end makes a job's state final and frees its workers.
func (s *State) end(j *Job, st JobState, at int64, reason string) {
	j.State, j.Finished, j.Error = st, at, reason
	for sh, h := range j.Shards {
		if w, ok := s.Workers[h.Worker]; ok && w.Job == j.ID && w.Shard == sh {
			w.Job, w.Shard = "", 0
		}
	}
}
