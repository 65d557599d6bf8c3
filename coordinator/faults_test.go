package coordinator

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/protocol"
)

// decideGrace applies what Decide returns under a policy with a grace, and returns it.
func (h *harness) decideGrace(grace int64) []Command {
	h.t.Helper()
	cmds := Decide(h.s, Policy{Now: h.now, Leader: "c1", LeaseMS: 100, Grace: grace, Plan: h.plan})
	for _, c := range cmds {
		h.must(c)
	}
	return cmds
}

func (h *harness) fail(step, shard, attempt int, e *protocol.Error) error {
	h.t.Helper()
	r := result("j1", step, shard, attempt, "w", protocol.Outputs{})
	r.Error = e
	return h.apply(Command{Type: CmdFail, Job: "j1", Result: r})
}

// A lost worker's dispatched attempts have their leases revoked: attempt+1 goes out as soon as a
// new holder has loaded the shard, without waiting for the lease, and a renewal of the revoked
// attempt is refused.
func TestLostWorkerRevokesItsLeases(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(2, 4, Step{Kind: protocol.StepSweep})})
	h.register("w1", "w2")
	h.decide()
	h.loadAll("j1")
	if got := dispatched(h.decide()); got != "0/0#1" {
		t.Fatalf("decided %q", got)
	}
	h.must(Command{Type: CmdWorkerLost, Worker: &WorkerInfo{ID: "w1"}})
	j := h.s.Jobs["j1"]
	if tk := j.Tasks[0][0]; tk.State != TaskDispatched || tk.LeaseUntil != 0 {
		t.Fatalf("after losing w1 the task is %s with lease %d, want dispatched with the lease revoked", tk.State, tk.LeaseUntil)
	}
	if err := h.apply(Command{Type: CmdRenew, Job: "j1", Task: &TaskRef{Step: 0, Shard: 0, Attempt: 1}, LeaseUntil: h.now + 100}); !errors.Is(err, ErrStale) {
		t.Fatalf("renewal of a revoked lease: %v, want ErrStale", err)
	}
	h.register("w3")
	if got := dispatched(h.decide()); got != "reassign" {
		t.Fatalf("decided %q, want the shard reassigned", got)
	}
	h.loadAll("j1")
	if got := dispatched(h.decideGrace(h.now + 1000)); got != "0/0#2" {
		t.Fatalf("decided %q, want attempt 2 at once (a revoked lease has no grace)", got)
	}
	checkReplay(t, h)
}

// A worker that registers again under its id while holding a shard (it restarted) revokes that
// shard's attempts the same way.
func TestRestartedWorkerRevokesItsLeases(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(1, 4, Step{Kind: protocol.StepSweep})})
	h.register("w1")
	h.decide()
	h.loadAll("j1")
	h.decide()
	h.register("w1")
	j := h.s.Jobs["j1"]
	if j.Shards[0].Worker != "" || j.Tasks[0][0].LeaseUntil != 0 {
		t.Fatalf("after w1 registered again: shards %+v, lease %d", j.Shards, j.Tasks[0][0].LeaseUntil)
	}
	if got := dispatched(h.decide()); got != "reassign" {
		t.Fatalf("decided %q", got)
	}
	h.loadAll("j1")
	if got := dispatched(h.decide()); got != "0/0#2" {
		t.Fatalf("decided %q, want attempt 2", got)
	}
	checkReplay(t, h)
}

// A lease that ran out while nobody could renew it is held back until the policy's grace.
func TestGraceHoldsBackRunOutLeases(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(1, 4, Step{Kind: protocol.StepSweep})})
	h.register("w1")
	h.decide()
	h.loadAll("j1")
	h.decide()
	h.now += 500
	grace := h.now + 50
	if got := dispatched(h.decideGrace(grace)); got != "" {
		t.Fatalf("within the grace, decided %q", got)
	}
	h.now = grace
	if got := dispatched(h.decideGrace(grace)); got != "0/0#2" {
		t.Fatalf("after the grace, decided %q, want attempt 2", got)
	}
	checkReplay(t, h)
}

// A task the cluster failed (CodeUnavailable) runs again without counting as a failure, up to
// MaxRetries; a calibration so failed starts its ring again on every shard.
func TestUnavailableRetriesWithoutFailure(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(2, 4, Step{Kind: protocol.StepCalibrate}, Step{Kind: protocol.StepSweep})})
	h.register("w1", "w2")
	h.decide()
	h.loadAll("j1")
	j := h.s.Jobs["j1"]
	for a := 1; a <= MaxRetries+1; a++ {
		if got := dispatched(h.decide()); got != fmt.Sprintf("0/0#%d 0/1#%d", a, a) {
			t.Fatalf("attempt %d: decided %q", a, got)
		}
		if err := h.fail(0, 1, a, protocol.Errorf(protocol.CodeUnavailable, "the NATS connection dropped")); err != nil {
			t.Fatal(err)
		}
		if a <= MaxRetries && (j.State != JobRunning || j.Tasks[0][0].State != TaskPending || j.Tasks[0][1].Failures != 0) {
			t.Fatalf("attempt %d: job %s, tasks %+v %+v", a, j.State, j.Tasks[0][0], j.Tasks[0][1])
		}
	}
	if j.State != JobFailed || !strings.Contains(j.Error, "could not reach the cluster 11 times") {
		t.Fatalf("job %s: %q", j.State, j.Error)
	}
	checkReplay(t, h)
}

// Two consumers of one corrupt artifact: the first puts its producer back to pending (a rerun
// event), the second finds it already running again and counts no failure; the consumers wait
// for the producer (jacobi solve k reads the task stream of solve 1 on the shard before).
func TestCorruptArtifactWithTwoReaders(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(2, 4, Step{Kind: protocol.StepJacobi, Solve: 1}, Step{Kind: protocol.StepJacobi, Solve: 2}, Step{Kind: protocol.StepJacobi, Solve: 3})})
	h.register("w1", "w2")
	h.decide()
	h.loadAll("j1")
	h.decide()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.complete(0, 0, 1, outs(1, 0, 2)))
	h.decide()
	must(h.complete(0, 1, 1, outs(0, 0, 5)))
	must(h.complete(1, 0, 1, outs(0, 3, 4)))
	if got := dispatched(h.decide()); got != "1/1#1 2/0#1" {
		t.Fatalf("decided %q", got)
	}
	must(h.complete(2, 0, 1, outs(0, 6, 7)))
	bad := ref(1) // the task stream of jacobi 1 on shard 0, read by shard 1 in every solve
	corrupt := &protocol.Error{Code: protocol.CodeInputCorrupt, Message: "task stream: content sha256 is ...", Ref: &bad}
	must(h.fail(1, 1, 1, corrupt))
	j := h.s.Jobs["j1"]
	if j.Tasks[0][0].State != TaskPending || j.Tasks[0][0].Retries != 1 || j.Tasks[1][1].Failures != 0 {
		t.Fatalf("after the corrupt input: %+v %+v", j.Tasks[0][0], j.Tasks[1][1])
	}
	if ev := j.Events[len(j.Events)-1]; ev.Type != "rerun" || ev.Step != 0 || ev.Shard != 0 {
		t.Fatalf("last event %+v, want a rerun of 0/0", ev)
	}
	if got := dispatched(h.decide()); got != "0/0#2" {
		t.Fatalf("decided %q, want only the producer (its readers wait)", got)
	}
	if j.Ready(1, 1) || j.Ready(2, 1) {
		t.Fatalf("a reader of the re-running producer's task stream is ready")
	}
	must(h.complete(0, 0, 2, outs(1, 0, 2)))
	if got := dispatched(h.decide()); got != "1/1#2" {
		t.Fatalf("decided %q, want the reader again", got)
	}
	// A second reader of the same bad bytes while the producer is not done: no failure counted.
	j.Tasks[0][0].State = TaskPending
	must(h.fail(1, 1, 2, corrupt))
	if j.Tasks[1][1].Failures != 0 || j.Tasks[0][0].Retries != 1 {
		t.Fatalf("second reader: %+v, producer %+v", j.Tasks[1][1], j.Tasks[0][0])
	}
}

// A takeover records in every running job who took it over and how far it was.
func TestTakeoverEvent(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(1, 4, Step{Kind: protocol.StepCalibrate}, Step{Kind: protocol.StepSweep})})
	h.register("w1")
	h.decide()
	h.loadAll("j1")
	h.decide()
	if err := h.complete(0, 0, 1, protocol.Outputs{Sequences: ref(9)}); err != nil {
		t.Fatal(err)
	}
	h.must(Command{Type: CmdTakeover, Leader: "c2"})
	ev := h.s.Jobs["j1"].Events[len(h.s.Jobs["j1"].Events)-1]
	if ev.Type != "takeover" || ev.Leader != "c2" || ev.Step != 1 || ev.Note != "1 of 2 tasks done; resuming at step 1 (sweep)" {
		t.Fatalf("takeover event %+v", ev)
	}
	if _, err := DecodeCommand([]byte(`{"type":"takeover","at":1}`)); err == nil || !strings.Contains(err.Error(), "without a leader") {
		t.Fatalf("takeover without a leader: %v", err)
	}
	checkReplay(t, h)
}

// Cancels names the attempts a heartbeat's worker should abandon.
func TestCancels(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSubmit, Job: "j1", Spec: spec(2, 4, Step{Kind: protocol.StepCalibrate}, Step{Kind: protocol.StepSweep})})
	h.register("w1", "w2")
	h.decide()
	h.loadAll("j1")
	h.decide() // calibrate attempt 1 on both shards
	run := func(step, shard, attempt int) protocol.Running {
		return protocol.Running{TaskKey: protocol.TaskKey{Job: "j1", Step: step, Shard: shard}, Attempt: attempt}
	}
	if got := Cancels(h.s, "w2", []protocol.Running{run(0, 1, 1)}); len(got) != 0 {
		t.Fatalf("the current ring attempt is cancelled: %v", got)
	}
	if got := Cancels(h.s, "w1", []protocol.Running{run(0, 1, 1)}); len(got) != 1 {
		t.Fatalf("an attempt of a shard the worker does not hold is not cancelled: %v", got)
	}
	if err := h.fail(0, 1, 1, protocol.Errorf(protocol.CodeUnavailable, "dropped")); err != nil {
		t.Fatal(err)
	}
	h.decide() // calibrate attempt 2
	if got := Cancels(h.s, "w1", []protocol.Running{run(0, 0, 1)}); len(got) != 1 {
		t.Fatalf("an old ring attempt is not cancelled: %v", got)
	}
	if err := h.complete(0, 0, 2, protocol.Outputs{Sequences: ref(9)}); err != nil {
		t.Fatal(err)
	}
	h.decide() // sweep on shard 0
	h.now += 500
	h.decide() // its lease ran out: attempt 2
	if got := Cancels(h.s, "w1", []protocol.Running{run(1, 0, 1)}); len(got) != 0 {
		t.Fatalf("a solve attempt past its lease on the holder is cancelled: %v", got)
	}
	if got := Cancels(h.s, "w2", []protocol.Running{run(0, 1, 2)}); len(got) != 1 {
		t.Fatalf("a finished ring attempt is not cancelled: %v", got)
	}
	h.must(Command{Type: CmdCancel, Job: "j1", Reason: "test"})
	if got := Cancels(h.s, "w1", []protocol.Running{run(1, 0, 2), {TaskKey: protocol.TaskKey{Job: "j9"}, Attempt: 1}}); len(got) != 2 {
		t.Fatalf("attempts of an ended and an unknown job: %v", got)
	}
}
