package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/embedded"
	"github.com/iteris-dev/iteris/protocol"
)

// The fault tests' configs: tiny-skills merge4 cut short so that a run takes seconds.
const (
	sweepConfig  = "internal/clustertest/testdata/sweep.yaml"
	jacobiConfig = "internal/clustertest/testdata/jacobi.yaml"
)

var references sync.Map // config -> adapter_model.safetensors of the embedded run

// referenceAdapter returns the adapter of the config's undisturbed embedded run (2 workers; the
// embedded cluster is byte-identical on every worker count), computed once per test process.
func referenceAdapter(t *testing.T, config string) []byte {
	t.Helper()
	if b, ok := references.Load(config); ok {
		return b.([]byte)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := embedded.New(embedded.Config{Workers: 2, Version: "test", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	job := submitTo(t, ctx, c.Client(), config, 2)
	if _, err := c.Client().Wait(ctx, job, nil); err != nil {
		t.Fatal(err)
	}
	b := adapterOf(t, ctx, c.Client(), job)
	references.Store(config, b)
	return b
}

// jobClient is the part of the job API client the fault tests use.
type jobClient interface {
	Submit(ctx context.Context, sub protocol.Submit) (string, error)
	Fetch(ctx context.Context, job string) ([]protocol.File, error)
}

func submitTo(t *testing.T, ctx context.Context, c jobClient, config string, workers int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Root(), config))
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Submit(ctx, protocol.Submit{Config: b, Path: config, Dir: Root(), Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func adapterOf(t *testing.T, ctx context.Context, c jobClient, job string) []byte {
	t.Helper()
	files, err := c.Fetch(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name == "adapter_model.safetensors" {
			return f.Data
		}
	}
	t.Fatalf("job %s has no adapter_model.safetensors", job)
	return nil
}

// submit submits a config to the cluster and returns the job id.
func (c *Cluster) submit(t *testing.T, config string, workers int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return submitTo(t, ctx, c.Client(), config, workers)
}

// waitFor polls the job's status with events until cond holds, failing with the last status
// and events after d. cond returns nil when it holds.
func (c *Cluster) waitFor(t *testing.T, job string, d time.Duration, what string, cond func(js protocol.JobStatus) error) protocol.JobStatus {
	t.Helper()
	var last protocol.JobStatus
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var js protocol.JobStatus
		js, err = c.JobEvents(ctx, job)
		cancel()
		if err == nil {
			last = js
			if js.State == "failed" || js.State == "canceled" {
				t.Fatalf("%s: the job %s\n%s", what, js.State, FormatEvents(js))
			}
			if err = cond(js); err == nil {
				return js
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s; last: %v\n%s", what, d, err, FormatEvents(last))
	return last
}

// waitDone waits for the job to finish and returns its final status with events.
func (c *Cluster) waitDone(t *testing.T, job string, d time.Duration) protocol.JobStatus {
	t.Helper()
	return c.waitFor(t, job, d, "the job finishes", func(js protocol.JobStatus) error {
		if js.State != "done" {
			return fmt.Errorf("job is %s (%d/%d tasks)", js.State, js.TasksDone, js.Tasks)
		}
		return nil
	})
}

// checkAdapter fetches the job's adapter and compares it with the reference, byte for byte.
func (c *Cluster) checkAdapter(t *testing.T, job string, want []byte, js protocol.JobStatus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := adapterOf(t, ctx, c.Client(), job)
	if !bytes.Equal(got, want) {
		t.Fatalf("adapter_model.safetensors (%d bytes) differs from the undisturbed embedded run's (%d bytes)\n%s", len(got), len(want), FormatEvents(js))
	}
}

// stepIndex returns the index of the first step of a kind (and solve), or -1.
func stepIndex(js protocol.JobStatus, kind protocol.StepKind, solve int) int {
	for i, s := range js.Steps {
		if s.Kind == kind && s.Solve == solve {
			return i
		}
	}
	return -1
}

// inFlight returns the dispatches not followed by a result (complete, fail or ignored) of the same
// attempt, nor superseded by a later attempt.
func inFlight(l EventLog) []protocol.JobEvent {
	last := map[Task]protocol.JobEvent{}
	for _, e := range l {
		t := Task{e.Step, e.Shard}
		switch e.Type {
		case "dispatch":
			last[t] = e
		case "complete", "fail":
			if d, ok := last[t]; ok && d.Attempt == e.Attempt {
				delete(last, t)
			}
		}
	}
	var out []protocol.JobEvent
	for _, e := range l.Of("dispatch") {
		if d, ok := last[Task{e.Step, e.Shard}]; ok && d == e {
			out = append(out, e)
		}
	}
	return out
}

// noneRunAgain fails the test when a completed task was dispatched again (other than after a
// rerun event: its output was found corrupt).
func noneRunAgain(t *testing.T, js protocol.JobStatus) {
	t.Helper()
	if again := EventLog(js.Events).RunAgain(stepIndex(js, protocol.StepCalibrate, 0)); len(again) > 0 {
		t.Fatalf("completed tasks were dispatched again: %+v\n%s", again, FormatEvents(js))
	}
}

// dispatchSummary says which leader dispatched which tasks (for the test log).
func dispatchSummary(js protocol.JobStatus) string {
	per := map[string][]string{}
	var order []string
	for _, e := range EventLog(js.Events).Of("dispatch") {
		if _, ok := per[e.Leader]; !ok {
			order = append(order, e.Leader)
		}
		per[e.Leader] = append(per[e.Leader], fmt.Sprintf("%d/%d#%d", e.Step, e.Shard, e.Attempt))
	}
	var b strings.Builder
	for _, id := range order {
		fmt.Fprintf(&b, "%s dispatched %s; ", id, strings.Join(per[id], " "))
	}
	return b.String()
}

// TestKillLeaderMidStep SIGKILLs the raft leader while a task of a solve step is in flight (jacobi
// and sweep): a new leader takes over (a takeover event), finishes the job, and dispatches no task
// that had completed; the adapter equals the undisturbed run's.
func TestKillLeaderMidStep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and five iteris processes")
	}
	for _, config := range []string{jacobiConfig, sweepConfig} {
		t.Run(filepath.Base(config), func(t *testing.T) {
			want := referenceAdapter(t, config)
			c := StartCluster(t, Options{Coordinators: 3, Workers: 2})
			job := c.submit(t, config, 2)
			calib := -1
			var killed string
			var killAt int64
			var running []protocol.JobEvent
			c.waitFor(t, job, 2*time.Minute, "a solve task in flight after another completed", func(js protocol.JobStatus) error {
				calib = stepIndex(js, protocol.StepCalibrate, 0)
				l := EventLog(js.Events)
				solved := 0
				for tk := range l.Completed(0) {
					if tk.Step != calib {
						solved++
					}
				}
				running = inFlight(l)
				if solved == 0 || len(running) == 0 {
					return fmt.Errorf("%d solve tasks complete, %d in flight", solved, len(running))
				}
				killed = running[0].Leader
				p := c.Coordinator(killed)
				if p == nil {
					return fmt.Errorf("leader %q unknown", killed)
				}
				p.Kill()
				killAt = time.Now().UnixMilli()
				return nil
			})
			js := c.waitDone(t, job, 2*time.Minute)
			c.checkAdapter(t, job, want, js)
			checkTakeover(t, js, killed, killAt, len(running))
			noneRunAgain(t, js)
		})
	}
}

// checkTakeover checks the events of a job whose leader was killed at killAt (Unix ms) with
// inflight tasks in flight: another leader took over, the killed one proposed nothing after its
// death, and a task it had dispatched was committed after it.
func checkTakeover(t *testing.T, js protocol.JobStatus, killed string, killAt int64, inflight int) {
	t.Helper()
	l := EventLog(js.Events)
	var newLeader string
	var takeoverAt int64
	for _, e := range l.Of("takeover") {
		if e.At >= killAt && e.Leader != killed && newLeader == "" {
			newLeader, takeoverAt = e.Leader, e.At
		}
	}
	if newLeader == "" {
		t.Fatalf("no takeover after %s was killed\n%s", killed, FormatEvents(js))
	}
	for _, e := range l {
		if e.At > killAt && e.Leader == killed {
			t.Fatalf("the killed leader %s proposed %+v after its death\n%s", killed, e, FormatEvents(js))
		}
	}
	crossed := 0
	for _, e := range l.Of("complete") {
		for _, d := range l.For(Task{e.Step, e.Shard}).Of("dispatch") {
			if d.Attempt == e.Attempt && d.Leader == killed && e.At > killAt {
				crossed++
			}
		}
	}
	if crossed == 0 {
		t.Fatalf("no task dispatched by %s was committed after it died\n%s", killed, FormatEvents(js))
	}
	firstCommit := int64(0)
	for _, e := range l.Of("complete") {
		if e.At > killAt && firstCommit == 0 {
			firstCommit = e.At
		}
	}
	t.Logf("recovery: killed %s with %d tasks in flight; %s took over %d ms later and committed its first result %d ms after the kill; %s",
		killed, inflight, newLeader, takeoverAt-killAt, firstCommit-killAt, dispatchSummary(js))
}
