package coordinator

import (
	"sort"

	"github.com/iteris-dev/iteris/protocol"
)

// Planner cuts a queued job into shards for the given free workers (sorted by id): it returns the
// plan and the worker of each shard, or an error naming why the job cannot run on them.
type Planner func(j *Job, free []*Worker) (Plan, []string, error)

// Policy is what the leader's scheduling decisions depend on besides the state.
type Policy struct {
	// Now is the leader's clock (Unix ms) and Leader its id; both are stamped into the commands.
	Now    int64
	Leader string
	// LeaseMS is how long a task attempt may run without a renewal.
	LeaseMS int64
	// Grace (Unix ms) holds back the expiry of leases that ran out while nobody could renew them:
	// a new leader, or one whose NATS connection came back, gives the workers until then to renew
	// the attempts they still run. A revoked lease (its worker lost) is not held back.
	Grace int64
	// Plan cuts a queued job into shards.
	Plan Planner
}

// Decide returns the commands the leader should propose now: start queued jobs on free workers,
// give unheld shards to free workers, dispatch ready tasks whose shard is loaded, and dispatch a
// new attempt of every task whose lease has run out. It is pure: the same state and policy give
// the same commands.
func Decide(s *State, p Policy) []Command {
	var out []Command
	stamp := func(c Command) Command {
		c.At, c.Leader = p.Now, p.Leader
		return c
	}
	free := s.freeWorkers()
	for _, id := range s.Order {
		j := s.Jobs[id]
		switch j.State {
		case JobQueued:
			if len(free) < j.Spec.Workers || p.Plan == nil {
				continue
			}
			plan, workers, err := p.Plan(j, free[:j.Spec.Workers])
			if err != nil {
				out = append(out, stamp(Command{Type: CmdFailJob, Job: j.ID, Reason: err.Error()}))
				continue
			}
			out = append(out, stamp(Command{Type: CmdStart, Job: j.ID, Plan: &plan, Workers: workers}))
			free = without(free, workers)
		case JobRunning:
			var cmds []Command
			cmds, free = reassignments(j, free)
			for _, c := range cmds {
				out = append(out, stamp(c))
			}
			for _, c := range dispatches(j, p) {
				out = append(out, stamp(c))
			}
		}
	}
	return out
}

// freeWorkers returns the alive workers that hold no shard, sorted by id.
func (s *State) freeWorkers() []*Worker {
	var out []*Worker
	for _, id := range s.WorkerIDs() {
		if w := s.Workers[id]; w.Alive && w.Job == "" {
			out = append(out, w)
		}
	}
	return out
}

func without(ws []*Worker, ids []string) []*Worker {
	used := map[string]bool{}
	for _, id := range ids {
		used[id] = true
	}
	var out []*Worker
	for _, w := range ws {
		if !used[w.ID] {
			out = append(out, w)
		}
	}
	return out
}

// reassignments gives every unheld shard of a running job the first free worker with memory for
// it.
func reassignments(j *Job, free []*Worker) ([]Command, []*Worker) {
	var out []Command
	for sh, h := range j.Shards {
		if h.Worker != "" {
			continue
		}
		for i, w := range free {
			if w.Memory >= j.Plan.Shards[sh].Memory {
				out = append(out, Command{Type: CmdReassign, Job: j.ID, Shard: sh, Worker: &WorkerInfo{ID: w.ID}})
				free = append(free[:i:i], free[i+1:]...)
				break
			}
		}
	}
	return out, free
}

// dispatches returns the dispatch commands of a running job.
func dispatches(j *Job, p Policy) []Command {
	var out []Command
	for i, st := range j.Plan.Steps {
		if st.Kind == protocol.StepCalibrate {
			out = append(out, calibrateDispatch(j, i, p)...)
			continue
		}
		for sh, t := range j.Tasks[i] {
			if !j.Shards[sh].Loaded {
				continue
			}
			if (t.State == TaskPending && j.Ready(i, sh)) || expired(t, p) {
				out = append(out, Command{Type: CmdDispatch, Job: j.ID, Task: &TaskRef{Step: i, Shard: sh, Attempt: t.Attempt + 1}, LeaseUntil: p.Now + p.LeaseMS})
			}
		}
	}
	return out
}

// calibrateDispatch dispatches every shard's calibrate task together, with one attempt number
// (their ring's), once every shard is loaded; and all of them again when any is pending or past
// its lease before the first shard (which finishes the ring) is done.
func calibrateDispatch(j *Job, i int, p Policy) []Command {
	if j.done(i, 0) {
		return nil
	}
	attempt, again := 0, false
	for sh, t := range j.Tasks[i] {
		if !j.Shards[sh].Loaded {
			return nil
		}
		attempt = max(attempt, t.Attempt)
		if t.State == TaskPending || expired(t, p) {
			again = true
		}
	}
	if !again {
		return nil
	}
	var out []Command
	for sh := range j.Tasks[i] {
		out = append(out, Command{Type: CmdDispatch, Job: j.ID, Task: &TaskRef{Step: i, Shard: sh, Attempt: attempt + 1}, LeaseUntil: p.Now + p.LeaseMS})
	}
	return out
}

// expired reports whether a dispatched attempt's lease is over: revoked, or run out and past the
// policy's grace.
func expired(t *Task, p Policy) bool {
	return t.State == TaskDispatched && (t.LeaseUntil == 0 || (t.LeaseUntil <= p.Now && p.Now >= p.Grace))
}

// Running lists a job's dispatched task attempts, sorted by step and shard.
func (j *Job) Running() []TaskRef {
	var out []TaskRef
	for i, ts := range j.Tasks {
		for sh, t := range ts {
			if t.State == TaskDispatched {
				out = append(out, TaskRef{Step: i, Shard: sh, Attempt: t.Attempt})
			}
		}
	}
	sort.Slice(out, func(a, b int) bool {
		return out[a].Step < out[b].Step || (out[a].Step == out[b].Step && out[a].Shard < out[b].Shard)
	})
	return out
}
