package metrics

import (
	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/protocol"
)

// JobStates and TaskStates are the states the metrics list (every one, zeros included, so a
// series exists before its first job).
var (
	JobStates  = []coordinator.JobState{coordinator.JobQueued, coordinator.JobRunning, coordinator.JobDone, coordinator.JobFailed, coordinator.JobCanceled}
	TaskStates = []coordinator.TaskState{coordinator.TaskPending, coordinator.TaskDispatched, coordinator.TaskDone, coordinator.TaskSkipped}
)

// Summary is what the coordinator metrics report of a replicated state. It is computed from the
// state alone, so every replica reports the same numbers.
type Summary struct {
	// Jobs counts the jobs by state.
	Jobs map[coordinator.JobState]int
	// Tasks counts the tasks of every job by step kind and state.
	Tasks map[protocol.StepKind]map[coordinator.TaskState]int
	// Dispatches, Failures and Ignored count the job events of each kind by step kind: attempts
	// dispatched, attempts that failed, results of stale attempts ignored.
	Dispatches, Failures, Ignored map[protocol.StepKind]int
	// TaskSeconds holds the wall time of each done task's committed attempt, by step kind.
	TaskSeconds map[protocol.StepKind][]float64
	// StepSeconds holds the wall time of each step whose tasks are all done (from its first
	// dispatch to its last completion, the leader's clock), by step kind.
	StepSeconds map[protocol.StepKind][]float64
	// BytesIn and BytesOut sum the artifact bytes the committed results of the done tasks read
	// and wrote.
	BytesIn, BytesOut int64
	// Workers counts the registered workers: alive and holding a shard, alive and free, lost.
	Assigned, Free, Lost int
}

// Summarize computes the summary of a state.
func Summarize(s *coordinator.State) Summary {
	sum := Summary{Jobs: map[coordinator.JobState]int{}, Tasks: map[protocol.StepKind]map[coordinator.TaskState]int{},
		Dispatches: map[protocol.StepKind]int{}, Failures: map[protocol.StepKind]int{}, Ignored: map[protocol.StepKind]int{},
		TaskSeconds: map[protocol.StepKind][]float64{}, StepSeconds: map[protocol.StepKind][]float64{}}
	for _, k := range StepKinds {
		sum.Tasks[k] = map[coordinator.TaskState]int{}
	}
	for _, id := range s.Order {
		j := s.Jobs[id]
		if j == nil {
			continue
		}
		sum.Jobs[j.State]++
		sum.job(j)
	}
	for _, id := range s.WorkerIDs() {
		w := s.Workers[id]
		switch {
		case !w.Alive:
			sum.Lost++
		case w.Job != "":
			sum.Assigned++
		default:
			sum.Free++
		}
	}
	return sum
}

// job adds one job's tasks and events.
func (sum *Summary) job(j *coordinator.Job) {
	kind := func(step int) (protocol.StepKind, bool) {
		if step < 0 || step >= len(j.Plan.Steps) {
			return "", false
		}
		return j.Plan.Steps[step].Kind, true
	}
	for i, ts := range j.Tasks {
		k, ok := kind(i)
		if !ok {
			continue
		}
		for _, t := range ts {
			if sum.Tasks[k] == nil {
				sum.Tasks[k] = map[coordinator.TaskState]int{}
			}
			sum.Tasks[k][t.State]++
			if t.State == coordinator.TaskDone {
				sum.TaskSeconds[k] = append(sum.TaskSeconds[k], t.Stats.Seconds)
				sum.BytesIn += t.Stats.BytesIn
				sum.BytesOut += t.Stats.BytesOut
			}
		}
	}
	first := map[int]int64{} // step -> first dispatch
	last := map[int]int64{}  // step -> last completion
	for _, e := range j.Events {
		k, ok := kind(e.Step)
		if !ok {
			continue
		}
		switch e.Type {
		case "dispatch":
			sum.Dispatches[k]++
			if at, seen := first[e.Step]; !seen || e.At < at {
				first[e.Step] = e.At
			}
		case "fail":
			sum.Failures[k]++
		case "ignored":
			sum.Ignored[k]++
		case "complete":
			last[e.Step] = max(last[e.Step], e.At)
		}
	}
	for i, ts := range j.Tasks {
		k, ok := kind(i)
		if !ok || len(ts) == 0 {
			continue
		}
		done := true
		for _, t := range ts {
			done = done && t.State == coordinator.TaskDone
		}
		start, started := first[i]
		if done && started && last[i] >= start {
			sum.StepSeconds[k] = append(sum.StepSeconds[k], float64(last[i]-start)/1000)
		}
	}
}
