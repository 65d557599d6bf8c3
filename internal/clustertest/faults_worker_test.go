package clustertest

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/protocol"
)

// holder returns the worker holding a shard of the job.
func holder(js protocol.JobStatus, shard int) string {
	if shard < len(js.Shards) {
		return js.Shards[shard].Worker
	}
	return ""
}

// TestKillWorkerMidTask SIGKILLs the worker of shard 1 just after a solve task was dispatched to
// it, and starts a replacement worker (as Kubernetes restarts a pod): the coordinators declare the
// dead worker lost, revoke its attempt, give the shard to the replacement, which loads the same
// layers and runs the task again as attempt 2. Nothing the dead worker may have half-written is
// used (every result after its death is the replacement's); the adapter equals the undisturbed
// run's.
func TestKillWorkerMidTask(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and six iteris processes")
	}
	want := referenceAdapter(t, jacobiConfig)
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2})
	job := c.submit(t, jacobiConfig, 2)
	seen := map[protocol.JobEvent]bool{}
	var victim string
	var killAt int64
	var hit protocol.JobEvent
	c.waitFor(t, job, 2*time.Minute, "a solve task dispatched to shard 1", func(js protocol.JobStatus) error {
		calib := stepIndex(js, protocol.StepCalibrate, 0)
		fresh := false
		for _, e := range EventLog(js.Events).Of("dispatch") {
			if !seen[e] && len(seen) > 0 && e.Shard == 1 && e.Step != calib {
				hit, fresh = e, true
			}
		}
		for _, e := range js.Events {
			seen[e] = true
		}
		if !fresh {
			return fmt.Errorf("no new solve dispatch on shard 1")
		}
		victim = holder(js, 1)
		c.Worker(victim).Kill()
		killAt = time.Now().UnixMilli()
		return nil
	})
	before := readLoaded(t, c.WorkerDir(victim))
	c.StartWorker("w2")
	js := c.waitDone(t, job, 2*time.Minute)
	c.checkAdapter(t, job, want, js)
	l := EventLog(js.Events)
	var redone protocol.JobEvent
	for _, e := range l.For(Task{hit.Step, hit.Shard}).Of("complete") {
		redone = e
	}
	if redone.Worker != "w2" || redone.Attempt <= hit.Attempt {
		t.Fatalf("task %d/%d (attempt %d in flight on %s when it died) was committed as %+v, want a later attempt by w2\n%s",
			hit.Step, hit.Shard, hit.Attempt, victim, redone, FormatEvents(js))
	}
	for _, e := range l.Of("complete") {
		if e.Worker == victim && e.At > killAt {
			t.Fatalf("a result of the dead worker %s was committed after its death: %+v\n%s", victim, e, FormatEvents(js))
		}
	}
	after := readLoaded(t, c.WorkerDir("w2"))
	if after.Lo != before.Lo || after.Hi != before.Hi {
		t.Fatalf("the replacement loaded layers [%d, %d), the dead worker held [%d, %d)", after.Lo, after.Hi, before.Lo, before.Hi)
	}
	checkShardReads(t, c.WorkerDir("w2"), 4)
	noneRunAgain(t, js)
	t.Logf("recovery: killed %s %d ms after it was given task %d/%d; the replacement committed attempt %d %d ms after the kill",
		victim, killAt-hit.At, hit.Step, hit.Shard, redone.Attempt, redone.At-killAt)
}

// TestSlowWorkerPastItsLease freezes (SIGSTOP) the worker of shard 1 before its sweep task is
// dispatched, so the attempt's lease runs out (lease 3 s, worker timeout 1 min: the worker is
// slow, not lost); attempt 2 is dispatched; thawed (SIGCONT), the worker runs attempt 1, whose late
// result is ignored (an "ignored" event), then attempt 2, which is committed. The adapter equals
// the undisturbed run's.
func TestSlowWorkerPastItsLease(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and five iteris processes")
	}
	want := referenceAdapter(t, sweepConfig)
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2, Lease: 3 * time.Second, WorkerTimeout: time.Minute})
	job := c.submit(t, sweepConfig, 2)
	sweep := -1
	var slow string
	c.waitFor(t, job, 2*time.Minute, "the sweep on shard 0 is dispatched", func(js protocol.JobStatus) error {
		sweep = stepIndex(js, protocol.StepSweep, 0)
		if len(EventLog(js.Events).For(Task{sweep, 0}).Of("dispatch")) == 0 {
			return fmt.Errorf("not yet")
		}
		slow = holder(js, 1)
		return c.Worker(slow).Signal(syscall.SIGSTOP)
	})
	frozen := time.Now()
	c.waitFor(t, job, time.Minute, "attempt 2 of the sweep on shard 1 is dispatched", func(js protocol.JobStatus) error {
		for _, e := range EventLog(js.Events).For(Task{sweep, 1}).Of("dispatch") {
			if e.Attempt == 2 {
				return nil
			}
		}
		return fmt.Errorf("not yet")
	})
	if err := c.Worker(slow).Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s was frozen for %s", slow, time.Since(frozen).Round(time.Millisecond))
	js := c.waitDone(t, job, 2*time.Minute)
	c.checkAdapter(t, job, want, js)
	l := EventLog(js.Events).For(Task{sweep, 1})
	ignored, committed := l.Of("ignored"), l.Of("complete")
	if len(ignored) != 1 || ignored[0].Attempt != 1 || ignored[0].Worker != slow {
		t.Fatalf("ignored results of the sweep on shard 1: %+v, want attempt 1 of %s\n%s", ignored, slow, FormatEvents(js))
	}
	if len(committed) != 1 || committed[0].Attempt != 2 {
		t.Fatalf("committed results of the sweep on shard 1: %+v, want attempt 2\n%s", committed, FormatEvents(js))
	}
	noneRunAgain(t, js)
	d := l.Of("dispatch")
	t.Logf("recovery: attempt 2 was dispatched %d ms after attempt 1 (lease 3 s); the late result of attempt 1 came %d ms after that and was ignored; attempt 2 committed %d ms after its dispatch",
		d[len(d)-1].At-d[0].At, ignored[0].At-d[len(d)-1].At, committed[0].At-d[len(d)-1].At)
}
