package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/protocol"
)

// TestNATSRestart restarts the nats-server twice in the middle of a jacobi job submitted with
// `iteris submit --wait`: once while the calibration ring runs (held open by freezing shard 1's
// worker for the restart), once while a solve task runs. Every client reconnects; JetStream's file
// storage keeps the task and result streams and the artifacts; the broken ring is reported as
// unavailable (not a failure) and runs again as attempt 2 at once; the submit process writes the
// adapter the undisturbed run gives.
func TestNATSRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and six iteris processes")
	}
	want := referenceAdapter(t, jacobiConfig)
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2})
	out := filepath.Join(t.TempDir(), "out")
	sub := c.Submit(jacobiConfig, out, "--workers", "2")
	var job string
	var calib int
	var frozen, first0 *Proc
	c.waitFor(t, "", 2*time.Minute, "the calibration ring is dispatched", func(js protocol.JobStatus) error {
		job, calib = js.Job, stepIndex(js, protocol.StepCalibrate, 0)
		if len(EventLog(js.Events).For(Task{calib, 1}).Of("dispatch")) == 0 {
			return fmt.Errorf("not yet")
		}
		frozen, first0 = c.Worker(holder(js, 1)), c.Worker(holder(js, 0))
		return frozen.Signal(syscall.SIGSTOP)
	})
	// The ring is open once shard 0's worker runs its part (it then waits for the frozen one):
	// a restart before that would only delay the task's delivery, not break the ring.
	Eventually(t, time.Minute, "shard 0's worker runs its part of the ring", func() error {
		if !strings.Contains(first0.Log(), `msg="task started"`) {
			return fmt.Errorf("no task started yet:\n%s", first0.Log())
		}
		return nil
	})
	t0 := time.Now()
	c.NATS.Restart()
	first := time.Since(t0)
	if err := frozen.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, job, 2*time.Minute, "a solve task in flight", func(js protocol.JobStatus) error {
		for _, e := range inFlight(EventLog(js.Events)) {
			if e.Step != calib {
				return nil
			}
		}
		return fmt.Errorf("none")
	})
	t1 := time.Now()
	c.NATS.Restart()
	second := time.Since(t1)
	got := waitSubmit(t, sub, out)
	js := c.waitDone(t, job, time.Minute)
	if !bytes.Equal(got, want) {
		t.Fatalf("adapter_model.safetensors (%d bytes) differs from the undisturbed embedded run's (%d bytes)\n%s", len(got), len(want), FormatEvents(js))
	}
	ringFail, ringAgain := checkRingRestarted(t, js, calib)
	t.Logf("recovery: the restarts took %s and %s; the ring's failure reached the leader %s after the first restart and attempt 2 followed in %d ms; the job ended %s after the second restart\n%s",
		first.Round(time.Millisecond), second.Round(time.Millisecond), time.UnixMilli(ringFail).Sub(t0.Add(first)).Round(time.Millisecond), ringAgain-ringFail,
		time.UnixMilli(js.Finished).Sub(t1.Add(second)).Round(time.Millisecond), FormatEvents(js))
}

// checkRingRestarted checks that the calibration ring was failed as unavailable and ran again
// (attempt 2), that no failure was anything but the cluster's unavailability and no completed
// task ran again; it returns when the ring failed and when attempt 2 was dispatched (Unix ms).
func checkRingRestarted(t *testing.T, js protocol.JobStatus, calib int) (failed, again int64) {
	t.Helper()
	l := EventLog(js.Events)
	// Any member of the ring may be the one that notices the dropped connection.
	for s := range js.Shards {
		for _, e := range l.For(Task{calib, s}) {
			if e.Type == "fail" && (failed == 0 || e.At < failed) {
				failed = e.At
			}
			if e.Type == "dispatch" && e.Attempt == 2 && (again == 0 || e.At < again) {
				again = e.At
			}
		}
	}
	if failed == 0 || again == 0 {
		t.Fatalf("the calibration ring was not failed and run again after the restart\n%s", FormatEvents(js))
	}
	for _, e := range l.Of("fail") {
		if !strings.Contains(e.Note, "unavailable (2005)") {
			t.Fatalf("a failure other than the cluster's unavailability: %+v\n%s", e, FormatEvents(js))
		}
	}
	noneRunAgain(t, js)
	return failed, again
}

// completedAt returns the tasks of a job completed at a time (Unix ms): those with a complete
// event then, and every shard's calibration task once the first shard's completed the ring.
func completedAt(js protocol.JobStatus, at int64) map[Task]bool {
	done := EventLog(js.Events).Completed(at)
	if calib := stepIndex(js, protocol.StepCalibrate, 0); done[Task{calib, 0}] {
		for s := range js.Shards {
			done[Task{calib, s}] = true
		}
	}
	return done
}

// TestRestartAllCoordinators stops all three coordinators (SIGTERM) while a jacobi job is between
// steps, and starts them again from their data directories: the new leader's takeover event shows
// the tasks already done, they are not dispatched again (the job resumes from the last committed
// step, not from scratch), and the adapter equals the undisturbed run's.
func TestRestartAllCoordinators(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and five iteris processes")
	}
	want := referenceAdapter(t, jacobiConfig)
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2})
	job := c.submit(t, jacobiConfig, 2)
	calib := -1
	var doneBefore map[Task]bool
	js := c.waitFor(t, job, 2*time.Minute, "three solve tasks done", func(js protocol.JobStatus) error {
		calib = stepIndex(js, protocol.StepCalibrate, 0)
		n := 0
		for tk := range EventLog(js.Events).Completed(0) {
			if tk.Step != calib {
				n++
			}
		}
		if n < 3 {
			return fmt.Errorf("%d solve tasks done", n)
		}
		return nil
	})
	stopAt := time.Now().UnixMilli()
	for _, p := range c.Coordinators {
		p.Stop()
	}
	down := time.Now()
	for _, p := range c.Coordinators {
		p.Restart(t)
	}
	restarted := time.Now()
	js = c.waitDone(t, job, 3*time.Minute)
	c.checkAdapter(t, job, want, js)
	l := EventLog(js.Events)
	doneBefore = completedAt(js, stopAt)
	var takeover *protocol.JobEvent
	for _, e := range l.Of("takeover") {
		if e.At > stopAt && takeover == nil {
			e := e
			takeover = &e
		}
	}
	if takeover == nil {
		t.Fatalf("no takeover after the restart\n%s", FormatEvents(js))
	}
	// Results in flight at the stop may be committed by the new leader just before its takeover.
	doneAtTakeover := completedAt(js, takeover.At)
	prefix := fmt.Sprintf("%d of %d tasks done", len(doneAtTakeover), js.Tasks)
	if len(doneBefore) < 3 || len(doneAtTakeover) < len(doneBefore) || !strings.HasPrefix(takeover.Note, prefix) {
		t.Fatalf("%d tasks done at the stop, %d at the takeover %q; want it to say %q\n%s", len(doneBefore), len(doneAtTakeover), takeover.Note, prefix, FormatEvents(js))
	}
	for _, e := range l.Of("dispatch") {
		if e.At > stopAt && doneBefore[Task{e.Step, e.Shard}] {
			t.Fatalf("task %d/%d, done before the stop, was dispatched again: %+v\n%s", e.Step, e.Shard, e, FormatEvents(js))
		}
	}
	noneRunAgain(t, js)
	checkStatusEvents(t, c, job, "takeover", takeover.Note)
	t.Logf("recovery: stopping took %d ms, restarting %d ms; the takeover came %d ms after the stop (%s)\n%s", down.UnixMilli()-stopAt,
		restarted.Sub(down).Milliseconds(), takeover.At-stopAt, takeover.Note, FormatEvents(js))
}

// checkStatusEvents runs `iteris status JOB --events` and checks that its output holds each of
// want.
func checkStatusEvents(t *testing.T, c *Cluster, job string, want ...string) {
	t.Helper()
	p := Start(t, "status", Root(), append([]string{"status", job, "--nats", c.NATS.URL(), "--events"}, c.args("status", "status")...)...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("iteris status --events: %v\n%s", err, p.Log())
	}
	for _, w := range want {
		if !strings.Contains(p.Log(), w) {
			t.Fatalf("iteris status --events does not say %q:\n%s", w, p.Log())
		}
	}
}
