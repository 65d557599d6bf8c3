package metrics

import (
	"reflect"
	"testing"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/protocol"
)

func task(st coordinator.TaskState, attempt int, seconds float64, in, out int64) *coordinator.Task {
	return &coordinator.Task{State: st, Attempt: attempt, Stats: protocol.Stats{Seconds: seconds, BytesIn: in, BytesOut: out}}
}

func ev(typ string, at int64, step, shard, attempt int) coordinator.Event {
	return coordinator.Event{At: at, Type: typ, Step: step, Shard: shard, Attempt: attempt}
}

// testState holds a finished sweep job on 2 shards (one calibrate attempt failed and ran again),
// a running jacobi job on 2 shards, a queued job and three workers.
func testState() *coordinator.State {
	s := coordinator.NewState()
	done := &coordinator.Job{ID: "jdone", State: coordinator.JobDone,
		Plan: coordinator.Plan{Steps: []coordinator.Step{{Kind: protocol.StepCalibrate}, {Kind: protocol.StepSweep}}},
		Tasks: [][]*coordinator.Task{
			{task(coordinator.TaskDone, 2, 1.5, 10, 20), task(coordinator.TaskDone, 2, 2.5, 30, 40)},
			{task(coordinator.TaskDone, 1, 40, 100, 200), task(coordinator.TaskDone, 1, 0.25, 300, 400)},
		},
		Events: []coordinator.Event{
			ev("dispatch", 1000, 0, 0, 1), ev("dispatch", 1000, 0, 1, 1), ev("fail", 1500, 0, 1, 1),
			ev("dispatch", 1600, 0, 0, 2), ev("dispatch", 1600, 0, 1, 2), ev("ignored", 1700, 0, 0, 1),
			ev("complete", 3000, 0, 0, 2), ev("complete", 3500, 0, 1, 2),
			ev("dispatch", 3500, 1, 0, 1), ev("complete", 43500, 1, 0, 1),
			ev("dispatch", 43500, 1, 1, 1), ev("complete", 44000, 1, 1, 1),
		}}
	running := &coordinator.Job{ID: "jrun", State: coordinator.JobRunning,
		Plan: coordinator.Plan{Steps: []coordinator.Step{{Kind: protocol.StepJacobi, Solve: 1}, {Kind: protocol.StepJacobi, Solve: 2}}},
		Tasks: [][]*coordinator.Task{
			{task(coordinator.TaskDone, 1, 3, 5, 6), task(coordinator.TaskDispatched, 1, 0, 0, 0)},
			{task(coordinator.TaskPending, 0, 0, 0, 0), task(coordinator.TaskPending, 0, 0, 0, 0)},
		},
		Events: []coordinator.Event{ev("dispatch", 5000, 0, 0, 1), ev("dispatch", 5000, 0, 1, 1), ev("complete", 8000, 0, 0, 1)}}
	queued := &coordinator.Job{ID: "jq", State: coordinator.JobQueued}
	for _, j := range []*coordinator.Job{done, running, queued} {
		s.Jobs[j.ID] = j
		s.Order = append(s.Order, j.ID)
	}
	s.Workers["w0"] = &coordinator.Worker{ID: "w0", Alive: true, Job: "jrun"}
	s.Workers["w1"] = &coordinator.Worker{ID: "w1", Alive: true}
	s.Workers["w2"] = &coordinator.Worker{ID: "w2", Alive: false}
	return s
}

func TestSummarize(t *testing.T) {
	sum := Summarize(testState())
	wantJobs := map[coordinator.JobState]int{coordinator.JobDone: 1, coordinator.JobRunning: 1, coordinator.JobQueued: 1}
	if !reflect.DeepEqual(sum.Jobs, wantJobs) {
		t.Errorf("jobs %v, want %v", sum.Jobs, wantJobs)
	}
	wantTasks := map[protocol.StepKind]map[coordinator.TaskState]int{
		protocol.StepCalibrate:  {coordinator.TaskDone: 2},
		protocol.StepSweep:      {coordinator.TaskDone: 2},
		protocol.StepJacobi:     {coordinator.TaskDone: 1, coordinator.TaskDispatched: 1, coordinator.TaskPending: 2},
		protocol.StepWeightOnly: {},
	}
	if !reflect.DeepEqual(sum.Tasks, wantTasks) {
		t.Errorf("tasks %v, want %v", sum.Tasks, wantTasks)
	}
	for _, c := range []struct {
		name      string
		got, want map[protocol.StepKind]int
	}{
		{"dispatches", sum.Dispatches, map[protocol.StepKind]int{protocol.StepCalibrate: 4, protocol.StepSweep: 2, protocol.StepJacobi: 2}},
		{"failures", sum.Failures, map[protocol.StepKind]int{protocol.StepCalibrate: 1}},
		{"ignored", sum.Ignored, map[protocol.StepKind]int{protocol.StepCalibrate: 1}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s %v, want %v", c.name, c.got, c.want)
		}
	}
	wantTaskSec := map[protocol.StepKind][]float64{protocol.StepCalibrate: {1.5, 2.5}, protocol.StepSweep: {40, 0.25}, protocol.StepJacobi: {3}}
	if !reflect.DeepEqual(sum.TaskSeconds, wantTaskSec) {
		t.Errorf("task seconds %v, want %v", sum.TaskSeconds, wantTaskSec)
	}
	// calibrate: first dispatch 1000, last completion 3500; sweep: 3500 to 44000; jacobi 1 is not
	// finished.
	wantStepSec := map[protocol.StepKind][]float64{protocol.StepCalibrate: {2.5}, protocol.StepSweep: {40.5}}
	if !reflect.DeepEqual(sum.StepSeconds, wantStepSec) {
		t.Errorf("step seconds %v, want %v", sum.StepSeconds, wantStepSec)
	}
	if sum.BytesIn != 10+30+100+300+5 || sum.BytesOut != 20+40+200+400+6 {
		t.Errorf("bytes in %d out %d, want 445 and 666", sum.BytesIn, sum.BytesOut)
	}
	if sum.Assigned != 1 || sum.Free != 1 || sum.Lost != 1 {
		t.Errorf("workers assigned %d free %d lost %d, want 1 1 1", sum.Assigned, sum.Free, sum.Lost)
	}
}

// A job whose events name a step its plan does not have (a corrupt or future state) is counted
// where it can be and never panics.
func TestSummarizeOutOfRangeEvents(t *testing.T) {
	s := coordinator.NewState()
	s.Jobs["j"] = &coordinator.Job{ID: "j", State: coordinator.JobRunning,
		Plan:   coordinator.Plan{Steps: []coordinator.Step{{Kind: protocol.StepSweep}}},
		Tasks:  [][]*coordinator.Task{{task(coordinator.TaskDone, 1, 1, 0, 0)}, {task(coordinator.TaskDone, 1, 1, 0, 0)}},
		Events: []coordinator.Event{ev("dispatch", 1, 7, 0, 1), ev("complete", 2, -1, 0, 1)}}
	s.Order = []string{"j", "missing"}
	sum := Summarize(s)
	if sum.Tasks[protocol.StepSweep][coordinator.TaskDone] != 1 || len(sum.Dispatches) != 0 || len(sum.StepSeconds) != 0 {
		t.Fatalf("summary %+v", sum)
	}
}
