package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/protocol"
)

// harness applies commands to a state and records them for replay.
type harness struct {
	t    *testing.T
	s    *State
	log  []Command
	now  int64
	plan Planner
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, s: NewState(), now: 1000, plan: evenPlanner}
}

// evenPlanner cuts the layers evenly over the free workers it is given.
func evenPlanner(j *Job, free []*Worker) (Plan, []string, error) {
	n := len(free)
	p := Plan{Steps: j.Spec.Steps, Tolerance: j.Spec.Tolerance}
	var ids []string
	for i := 0; i < n; i++ {
		p.Shards = append(p.Shards, ShardPlan{Lo: i * j.Spec.Layers / n, Hi: (i + 1) * j.Spec.Layers / n, Memory: 1})
		ids = append(ids, free[i].ID)
	}
	return p, ids, nil
}

func (h *harness) apply(c Command) error {
	h.t.Helper()
	h.now++
	if c.At == 0 {
		c.At = h.now
	}
	h.log = append(h.log, c)
	return h.s.Apply(uint64(len(h.log)), c)
}

func (h *harness) must(c Command) {
	h.t.Helper()
	if err := h.apply(c); err != nil {
		h.t.Fatalf("%s: %v", c.Type, err)
	}
}

// decide applies what Decide returns and returns it.
func (h *harness) decide() []Command {
	h.t.Helper()
	cmds := Decide(h.s, Policy{Now: h.now, Leader: "c1", LeaseMS: 100, Plan: h.plan})
	for _, c := range cmds {
		h.must(c)
	}
	return cmds
}

func ref(b byte) protocol.Ref {
	var r protocol.Ref
	r[0], r[1] = b, 0xee
	return r
}

func spec(workers, layers int, steps ...Step) *JobSpec {
	return &JobSpec{Config: []byte("x"), Method: "iteris", Workers: workers, Layers: layers, Steps: steps, Prompts: ref(200)}
}

func result(job string, step, shard, attempt int, worker string, o protocol.Outputs) *protocol.Result {
	return &protocol.Result{Head: protocol.NewHead(), TaskKey: protocol.TaskKey{Job: job, Step: step, Shard: shard}, Attempt: attempt, Worker: worker, Outputs: o}
}

func (h *harness) complete(step, shard, attempt int, o protocol.Outputs) error {
	h.t.Helper()
	return h.apply(Command{Type: CmdComplete, Job: "j1", Result: result("j1", step, shard, attempt, "w", o)})
}

func (h *harness) register(ids ...string) {
	for _, id := range ids {
		h.must(Command{Type: CmdRegister, Worker: &WorkerInfo{ID: id, Version: "v1", Memory: 1 << 30}})
	}
}

func (h *harness) loadAll(job string) {
	j := h.s.Jobs[job]
	for sh, hold := range j.Shards {
		if !hold.Loaded && hold.Worker != "" {
			h.must(Command{Type: CmdLoaded, Job: job, Shard: sh, Worker: &WorkerInfo{ID: hold.Worker}})
		}
	}
}

func dispatched(cmds []Command) string {
	var out []string
	for _, c := range cmds {
		switch c.Type {
		case CmdDispatch:
			out = append(out, fmt.Sprintf("%d/%d#%d", c.Task.Step, c.Task.Shard, c.Task.Attempt))
		default:
			out = append(out, string(c.Type))
		}
	}
	return strings.Join(out, " ")
}

func outs(t, m, f byte) protocol.Outputs {
	o := protocol.Outputs{Factors: ref(f), Records: ref(f + 100)}
	if t != 0 {
		o.T = ref(t)
	}
	if m != 0 {
		o.M = ref(m)
	}
	return o
}

func TestSweepJobLifecycle(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(2, 4, Step{Kind: protocol.StepCalibrate}, Step{Kind: protocol.StepSweep})})
	if got := dispatched(h.decide()); got != "" {
		t.Fatalf("no workers yet, decided %q", got)
	}
	h.register("w2", "w1")
	if got := dispatched(h.decide()); got != "start" {
		t.Fatalf("decided %q, want start", got)
	}
	j := h.s.Jobs["j1"]
	if j.State != JobRunning || j.Shards[0].Worker != "w1" || j.Shards[1].Worker != "w2" || h.s.Workers["w1"].Job != "j1" {
		t.Fatalf("after start: %+v %+v", j.State, j.Shards)
	}
	if got := dispatched(h.decide()); got != "" {
		t.Fatalf("nothing is loaded, decided %q", got)
	}
	h.loadAll("j1")
	if got := dispatched(h.decide()); got != "0/0#1 0/1#1" {
		t.Fatalf("decided %q, want both calibrate tasks", got)
	}
	if in := j.Inputs(0, 1); in.Prompts != ref(200) {
		t.Errorf("calibrate inputs %+v", in)
	}
	if err := h.complete(0, 1, 1, protocol.Outputs{}); err != nil {
		t.Fatal(err)
	}
	if err := h.complete(0, 0, 1, protocol.Outputs{Sequences: ref(7)}); err != nil {
		t.Fatal(err)
	}
	if got := dispatched(h.decide()); got != "1/0#1" {
		t.Fatalf("decided %q, want the sweep of shard 0", got)
	}
	if in := j.Inputs(1, 0); in.Sequences != ref(7) || !in.T.IsZero() {
		t.Errorf("sweep 0 inputs %+v", in)
	}
	if err := h.complete(1, 0, 1, outs(0, 0, 1)); !errors.Is(err, ErrBadCommand) || !strings.Contains(err.Error(), "both streams") {
		t.Fatalf("sweep result without streams: %v", err)
	}
	if err := h.complete(1, 0, 1, outs(11, 12, 13)); err != nil {
		t.Fatal(err)
	}
	if got := dispatched(h.decide()); got != "1/1#1" {
		t.Fatalf("decided %q, want the sweep of shard 1", got)
	}
	if in := j.Inputs(1, 1); in.T != ref(11) || in.M != ref(12) || in.Sequences != ref(7) {
		t.Errorf("sweep 1 inputs %+v", in)
	}
	if err := h.complete(1, 1, 1, outs(0, 0, 14)); err != nil {
		t.Fatal(err)
	}
	if done, all := j.Counts(); done != all || j.FinalStep() != 1 {
		t.Fatalf("%d of %d done, final step %d", done, all, j.FinalStep())
	}
	h.must(Command{Type: CmdFinish, Job: "j1", Files: ref(99)})
	if j.State != JobDone || h.s.Workers["w1"].Job != "" || j.Files != ref(99) {
		t.Fatalf("after finish: %s, w1 holds %q", j.State, h.s.Workers["w1"].Job)
	}
	checkReplay(t, h)
}

func TestJacobiWavefrontAndInputs(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(2, 4, Step{Kind: protocol.StepJacobi, Solve: 1}, Step{Kind: protocol.StepJacobi, Solve: 2}, Step{Kind: protocol.StepJacobi, Solve: 3})})
	h.register("w1", "w2")
	h.decide()
	h.loadAll("j1")
	steps := []struct {
		complete []int // step, shard
		o        protocol.Outputs
		want     string
	}{
		{nil, protocol.Outputs{}, "0/0#1"},
		{[]int{0, 0}, outs(1, 0, 2), "0/1#1 1/0#1"},
		{[]int{1, 0}, outs(0, 3, 4), "2/0#1"},
		{[]int{0, 1}, outs(0, 0, 5), "1/1#1"},
	}
	j := h.s.Jobs["j1"]
	for i, st := range steps {
		if st.complete != nil {
			if err := h.complete(st.complete[0], st.complete[1], 1, st.o); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		if got := dispatched(h.decide()); got != st.want {
			t.Fatalf("step %d: decided %q, want %q", i, got, st.want)
		}
	}
	if in := j.Inputs(1, 1); in.T != ref(1) || in.M != ref(3) || in.Prev != ref(5) {
		t.Errorf("jacobi 2 on shard 1 inputs %+v", in)
	}
	if in := j.Inputs(2, 0); !in.T.IsZero() || !in.M.IsZero() || in.Prev != ref(4) {
		t.Errorf("jacobi 3 on shard 0 inputs %+v", in)
	}
	checkReplay(t, h)
}

func TestStaleAttemptsAreIgnored(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(1, 4, Step{Kind: protocol.StepSweep})})
	h.register("w1")
	h.decide()
	h.loadAll("j1")
	if got := dispatched(h.decide()); got != "0/0#1" {
		t.Fatalf("decided %q", got)
	}
	h.now += 50
	if got := dispatched(h.decide()); got != "" {
		t.Fatalf("lease not over, decided %q", got)
	}
	h.must(Command{Type: CmdRenew, Job: "j1", Task: &TaskRef{Step: 0, Shard: 0, Attempt: 1}, LeaseUntil: h.now + 100})
	h.now += 60
	if got := dispatched(h.decide()); got != "" {
		t.Fatalf("lease renewed, decided %q", got)
	}
	h.now += 100
	if got := dispatched(h.decide()); got != "0/0#2" {
		t.Fatalf("lease over, decided %q, want attempt 2", got)
	}
	if err := h.complete(0, 0, 1, outs(0, 0, 1)); !errors.Is(err, ErrStale) {
		t.Fatalf("late result of attempt 1: %v", err)
	}
	j := h.s.Jobs["j1"]
	if ev := j.Events[len(j.Events)-1]; ev.Type != "ignored" || ev.Attempt != 1 {
		t.Errorf("last event %+v, want the ignored attempt 1", ev)
	}
	if err := h.complete(0, 0, 2, outs(0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if err := h.complete(0, 0, 2, outs(0, 0, 1)); !errors.Is(err, ErrStale) {
		t.Fatalf("duplicate result: %v", err)
	}
	checkReplay(t, h)
}

func TestFailuresRetryThenFailTheJob(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(1, 4, Step{Kind: protocol.StepSweep})})
	h.register("w1")
	h.decide()
	h.loadAll("j1")
	for a := 1; a <= MaxFailures; a++ {
		if got := dispatched(h.decide()); got != fmt.Sprintf("0/0#%d", a) {
			t.Fatalf("attempt %d: decided %q", a, got)
		}
		r := result("j1", 0, 0, a, "w1", protocol.Outputs{})
		r.Error = protocol.Errorf(protocol.CodeTaskFailed, "site x: NaN")
		h.must(Command{Type: CmdFail, Job: "j1", Result: r})
	}
	j := h.s.Jobs["j1"]
	if j.State != JobFailed || !strings.Contains(j.Error, "failed 3 times") || !strings.Contains(j.Error, "site x: NaN") || h.s.Workers["w1"].Job != "" {
		t.Fatalf("job %s: %q", j.State, j.Error)
	}
	checkReplay(t, h)
}

func TestCorruptInputRerunsItsProducer(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(2, 4, Step{Kind: protocol.StepSweep})})
	h.register("w1", "w2")
	h.decide()
	h.loadAll("j1")
	h.decide()
	if err := h.complete(0, 0, 1, outs(11, 12, 13)); err != nil {
		t.Fatal(err)
	}
	h.decide()
	r := result("j1", 0, 1, 1, "w2", protocol.Outputs{})
	bad := ref(12)
	r.Error = &protocol.Error{Code: protocol.CodeInputCorrupt, Message: "merged stream: sha256 mismatch", Ref: &bad}
	h.must(Command{Type: CmdFail, Job: "j1", Result: r})
	j := h.s.Jobs["j1"]
	if j.Tasks[0][0].State != TaskPending || j.Tasks[0][1].State != TaskPending || j.Tasks[0][1].Failures != 0 {
		t.Fatalf("after a corrupt input: %+v %+v", j.Tasks[0][0], j.Tasks[0][1])
	}
	if got := dispatched(h.decide()); got != "0/0#2" {
		t.Fatalf("decided %q, want the producer again", got)
	}
	checkReplay(t, h)
}

func TestLostWorkerIsReplaced(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(2, 4, Step{Kind: protocol.StepSweep})})
	h.register("w1", "w2")
	h.decide()
	h.loadAll("j1")
	h.decide()
	h.must(Command{Type: CmdWorkerLost, Worker: &WorkerInfo{ID: "w1"}})
	j := h.s.Jobs["j1"]
	if j.Shards[0].Worker != "" || h.s.Workers["w1"].Alive {
		t.Fatalf("after losing w1: %+v", j.Shards)
	}
	if got := dispatched(h.decide()); got != "" {
		t.Fatalf("no free worker, decided %q", got)
	}
	h.register("w3")
	if got := dispatched(h.decide()); got != "reassign" || j.Shards[0].Worker != "w3" || j.Shards[0].Loaded {
		t.Fatalf("decided %q, shards %+v", got, j.Shards)
	}
	if err := h.apply(Command{Type: CmdLoaded, Job: "j1", Shard: 0, Worker: &WorkerInfo{ID: "w2"}}); !errors.Is(err, ErrStale) {
		t.Fatalf("loaded by a worker that does not hold the shard: %v", err)
	}
	h.loadAll("j1")
	h.now += 200
	if got := dispatched(h.decide()); got != "0/0#2" {
		t.Fatalf("decided %q, want attempt 2 after the lease", got)
	}
	checkReplay(t, h)
}

func TestJacobiToleranceSkipsLaterSolves(t *testing.T) {
	h := newHarness(t)
	sp := spec(1, 4, Step{Kind: protocol.StepJacobi, Solve: 1}, Step{Kind: protocol.StepJacobi, Solve: 2}, Step{Kind: protocol.StepJacobi, Solve: 3})
	sp.Tolerance = 0.1
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: sp})
	h.register("w1")
	h.decide()
	h.loadAll("j1")
	h.decide()
	if err := h.complete(0, 0, 1, outs(0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	h.decide()
	small := 0.01
	r := result("j1", 1, 0, 1, "w1", outs(0, 0, 2))
	r.Stats.MaxRelChange = &small
	h.must(Command{Type: CmdComplete, Job: "j1", Result: r})
	j := h.s.Jobs["j1"]
	if j.Tasks[2][0].State != TaskSkipped || j.FinalStep() != 1 {
		t.Fatalf("solve 3 is %s, final step %d", j.Tasks[2][0].State, j.FinalStep())
	}
	if done, all := j.Counts(); done != all {
		t.Fatalf("%d of %d done", done, all)
	}
}

func TestCommandsAreValidated(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{`{"type":"nope","at":1}`, `unknown type "nope"`},
		{`{"type":"submit","at":1,"job":"j"}`, "without a job and its spec"},
		{`{"type":"submit","at":1,"job":"../x","spec":{}}`, "invalid job id"},
		{`{"type":"register","at":1,"worker":{"id":"a b"}}`, "character ' '"},
		{`{"type":"start","at":1,"job":"j","plan":{"shards":[{"lo":0,"hi":2}],"steps":[{"kind":"sweep"}]},"workers":[]}`, "one worker per shard"},
		{`{"type":"start","at":1,"job":"j","plan":{"shards":[{"lo":1,"hi":2}],"steps":[{"kind":"sweep"}]},"workers":["w"]}`, "layers [1, 2)"},
		{`{"type":"dispatch","at":1,"job":"j","task":{"step":0,"shard":0,"attempt":0}}`, "task attempt"},
		{`{"type":"finish","at":1,"job":"j"}`, "its files"},
		{`{"type":"cancel","at":1,"job":"j","extra":1}`, `unknown field "extra"`},
		{`{"type":"cancel","at":1,"job":"j"} {}`, "data after"},
	}
	for _, tc := range tests {
		_, err := DecodeCommand([]byte(tc.in))
		if !errors.Is(err, ErrBadCommand) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.in, err, tc.want)
		}
	}
}

// checkReplay applies the harness's log to a fresh state and through a snapshot, and compares.
func checkReplay(t *testing.T, h *harness) {
	t.Helper()
	again := NewState()
	for i, c := range h.log {
		b := c.Encode()
		d, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("command %d does not decode: %v", i, err)
		}
		_ = again.Apply(uint64(i+1), d)
	}
	want := h.s.Snapshot()
	if got := again.Snapshot(); !bytes.Equal(got, want) {
		t.Fatalf("replay diverged:\n%s\nvs\n%s", got, want)
	}
	restored, err := RestoreState(want)
	if err != nil {
		t.Fatal(err)
	}
	if got := restored.Snapshot(); !bytes.Equal(got, want) {
		t.Fatalf("snapshot round trip diverged")
	}
}
