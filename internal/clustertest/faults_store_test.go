package clustertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/protocol"
)

// outputs parses a complete event's note ("t=REF m=REF ...") into the refs it names.
func outputs(t *testing.T, e protocol.JobEvent) map[string]protocol.Ref {
	t.Helper()
	out := map[string]protocol.Ref{}
	for _, f := range strings.Fields(e.Note) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		r, err := protocol.ParseRef(v)
		if err != nil {
			t.Fatalf("complete event %+v: %v", e, err)
		}
		out[k] = r
	}
	return out
}

// lastOutput returns an output of a task's last complete event (the zero ref when there is none).
func lastOutput(t *testing.T, js protocol.JobStatus, task Task, name string) protocol.Ref {
	t.Helper()
	var r protocol.Ref
	for _, e := range EventLog(js.Events).For(task).Of("complete") {
		r = outputs(t, e)[name]
	}
	return r
}

// TestCorruptArtifacts damages two stored artifacts of a running jacobi job, as a failing disk
// would: the calibration sequences are truncated once the calibration is done, and one byte of
// the task stream that jacobi solve 1 on shard 0 produced (read by shard 1 in every solve) is
// changed once shard 1 has used it. A reader detects each (input_corrupt naming the ref), the
// producer runs again (a rerun event) and stores the artifact anew over the damaged copy, the
// readers run again, and the adapter equals the undisturbed run's.
func TestCorruptArtifacts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and five iteris processes")
	}
	want := referenceAdapter(t, jacobiConfig)
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2})
	job := c.submit(t, jacobiConfig, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var calib, solve1 int
	var seq, rows protocol.Ref
	c.waitFor(t, job, 2*time.Minute, "the calibration is done", func(js protocol.JobStatus) error {
		calib, solve1 = stepIndex(js, protocol.StepCalibrate, 0), stepIndex(js, protocol.StepJacobi, 1)
		if seq = lastOutput(t, js, Task{calib, 0}, "sequences"); seq.IsZero() {
			return fmt.Errorf("not yet")
		}
		return c.CorruptArtifact(ctx, job, seq, Truncate)
	})
	c.waitFor(t, job, 2*time.Minute, "jacobi 1 is done on shard 1", func(js protocol.JobStatus) error {
		if len(EventLog(js.Events).For(Task{solve1, 1}).Of("complete")) == 0 {
			return fmt.Errorf("not yet")
		}
		rows = lastOutput(t, js, Task{solve1, 0}, "t")
		return c.CorruptArtifact(ctx, job, rows, FlipByte)
	})
	js := c.waitDone(t, job, 3*time.Minute)
	c.checkAdapter(t, job, want, js)
	l := EventLog(js.Events)
	for _, bad := range []damaged{{"truncated sequences", "sequences", seq, Task{calib, 0}}, {"task stream with a changed byte", "t", rows, Task{solve1, 0}}} {
		checkRepaired(t, js, bad)
	}
	for _, e := range l.Of("fail") {
		if !strings.Contains(e.Note, "input_corrupt") {
			t.Fatalf("a failure other than the corrupt inputs: %+v\n%s", e, FormatEvents(js))
		}
	}
	noneRunAgain(t, js)
	t.Logf("%s", FormatEvents(js))
}

// damaged is an artifact a test damaged: what it is, the output of its producer's result that
// names it, its ref, and the task that produced it.
type damaged struct {
	what, output string
	ref          protocol.Ref
	producer     Task
}

// checkRepaired checks that a reader reported the damaged artifact as input_corrupt, and that its
// producer ran again (a rerun event) and completed with the same ref.
func checkRepaired(t *testing.T, js protocol.JobStatus, bad damaged) {
	t.Helper()
	detected := false
	for _, e := range EventLog(js.Events).Of("fail") {
		detected = detected || (strings.Contains(e.Note, "input_corrupt") && strings.Contains(e.Note, bad.ref.String()))
	}
	if !detected {
		t.Fatalf("the %s (%s) was not reported as input_corrupt\n%s", bad.what, bad.ref, FormatEvents(js))
	}
	p := EventLog(js.Events).For(bad.producer)
	rerun := -1
	for i, e := range p {
		if e.Type == "rerun" && rerun < 0 {
			rerun = i
		}
	}
	if rerun < 0 {
		t.Fatalf("the producer %d/%d of the %s was not run again\n%s", bad.producer.Step, bad.producer.Shard, bad.what, FormatEvents(js))
	}
	var redone int64
	for _, e := range p[rerun:] {
		if e.Type == "complete" && outputs(t, e)[bad.output] == bad.ref && redone == 0 {
			redone = e.At
		}
	}
	if redone == 0 {
		t.Fatalf("the producer %d/%d of the %s did not complete again with %s\n%s", bad.producer.Step, bad.producer.Shard, bad.what, bad.ref, FormatEvents(js))
	}
	t.Logf("recovery: the %s was detected, and its producer had stored it anew %d ms later", bad.what, redone-p[rerun].At)
}
