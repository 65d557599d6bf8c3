package clustertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/protocol"
)

// Signal sends sig to the process (SIGSTOP freezes it, SIGCONT thaws it); a process that is not
// running is not an error.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: signal %v: %w", p.Name, sig, err)
	}
	return nil
}

// Running reports whether the process runs.
func (p *Proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Coordinator returns the process of coordinator id (c0, c1, ...), or nil.
func (c *Cluster) Coordinator(id string) *Proc {
	for _, p := range c.Coordinators {
		if p.Name == id {
			return p
		}
	}
	return nil
}

// Worker returns the process of worker id, or nil.
func (c *Cluster) Worker(id string) *Proc {
	for _, p := range c.Workers {
		if p.Name == id {
			return p
		}
	}
	return nil
}

// LeaderProc returns the process of the coordinator that answers the job API as leader.
func (c *Cluster) LeaderProc(ctx context.Context) (*Proc, error) {
	id, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	p := c.Coordinator(id)
	if p == nil {
		return nil, fmt.Errorf("the leader %q is not a coordinator of this cluster", id)
	}
	return p, nil
}

// JobEvents returns the status of job ("" for the cluster's only job) with its events.
func (c *Cluster) JobEvents(ctx context.Context, job string) (protocol.JobStatus, error) {
	st, err := c.Client().StatusEvents(ctx, job)
	if err != nil {
		return protocol.JobStatus{}, err
	}
	if len(st.Jobs) != 1 {
		return protocol.JobStatus{}, fmt.Errorf("%d jobs", len(st.Jobs))
	}
	return st.Jobs[0], nil
}

// Damage is a way CorruptArtifact damages a stored artifact.
type Damage int

// The damages.
const (
	// FlipByte changes one byte of the content: the frame is intact, the bytes do not match the
	// hash.
	FlipByte Damage = iota
	// Truncate keeps the first half of the stored frame.
	Truncate
)

func (d Damage) String() string {
	if d == Truncate {
		return "truncated"
	}
	return "one byte changed"
}

// CorruptArtifact overwrites the stored object of ref in job's artifact bucket with damaged bytes,
// keeping its metadata, as a failing disk or a buggy peer would.
func (c *Cluster) CorruptArtifact(ctx context.Context, job string, ref protocol.Ref, d Damage) error {
	nc := c.NATS.Connect()
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	obs, err := js.ObjectStore(ctx, artifact.BucketPrefix+job)
	if err != nil {
		return fmt.Errorf("bucket of job %s: %w", job, err)
	}
	res, err := obs.Get(ctx, ref.String())
	if err != nil {
		return fmt.Errorf("artifact %s of job %s: %w", ref, job, err)
	}
	b, err := io.ReadAll(res)
	res.Close()
	if err != nil {
		return fmt.Errorf("artifact %s of job %s: %w", ref, job, err)
	}
	info, err := obs.GetInfo(ctx, ref.String())
	if err != nil {
		return fmt.Errorf("artifact %s of job %s: %w", ref, job, err)
	}
	if len(b) <= protocol.HeaderSize+1 {
		return fmt.Errorf("artifact %s of job %s: %d bytes is too small to damage", ref, job, len(b))
	}
	switch d {
	case FlipByte:
		b[protocol.HeaderSize+(len(b)-protocol.HeaderSize)/2] ^= 0x5a
	case Truncate:
		b = b[:len(b)/2]
	}
	meta := jetstream.ObjectMeta{Name: info.Name, Description: info.Description, Metadata: info.Metadata}
	if _, err := obs.PutBytes(ctx, meta.Name, b); err != nil {
		return fmt.Errorf("overwriting artifact %s of job %s: %w", ref, job, err)
	}
	if err := obs.UpdateMeta(ctx, meta.Name, meta); err != nil {
		return fmt.Errorf("artifact %s of job %s: restoring its metadata: %w", ref, job, err)
	}
	return nil
}

// FormatEvents renders a job's events one per line (for failure messages).
func FormatEvents(js protocol.JobStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %s %s, %d/%d tasks, step %q, error %q\n", js.Job, js.State, js.TasksDone, js.Tasks, js.Step, js.Error)
	for _, e := range js.Events {
		fmt.Fprintf(&b, "  %d %-3s %-8s step %d shard %d attempt %d %s %s\n", e.At, e.Leader, e.Type, e.Step, e.Shard, e.Attempt, e.Worker, e.Note)
	}
	return b.String()
}

// Task names one task of a job: a step on a shard.
type Task struct{ Step, Shard int }

// EventLog answers questions about a job's events.
type EventLog []protocol.JobEvent

// Of returns the events of one type (all when typ is "").
func (l EventLog) Of(typ string) EventLog {
	var out EventLog
	for _, e := range l {
		if typ == "" || e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// For returns the events of one task.
func (l EventLog) For(t Task) EventLog {
	var out EventLog
	for _, e := range l {
		if e.Type != "takeover" && e.Step == t.Step && e.Shard == t.Shard {
			out = append(out, e)
		}
	}
	return out
}

// Leaders returns the leaders that proposed events of a type, sorted.
func (l EventLog) Leaders(typ string) []string {
	seen := map[string]bool{}
	for _, e := range l.Of(typ) {
		seen[e.Leader] = true
	}
	var out []string
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Completed returns the tasks with a complete event at or before at (Unix ms; 0: any time).
func (l EventLog) Completed(at int64) map[Task]bool {
	out := map[Task]bool{}
	for _, e := range l.Of("complete") {
		if at == 0 || e.At <= at {
			out[Task{e.Step, e.Shard}] = true
		}
	}
	return out
}

// RunAgain returns the dispatches of a task after it completed, other than those that follow a
// rerun event of the task (an output it produced was found corrupt). The tasks of the
// calibration step (index calibrate, -1 when the plan has none) run as one ring that completes
// with its first shard, so they count as completed from that shard's complete event.
func (l EventLog) RunAgain(calibrate int) []protocol.JobEvent {
	ring := Task{calibrate, -1}
	done := map[Task]bool{}
	var out []protocol.JobEvent
	for _, e := range l {
		t := Task{e.Step, e.Shard}
		if e.Step == calibrate {
			t = ring
		}
		switch e.Type {
		case "complete":
			if e.Step != calibrate || e.Shard == 0 {
				done[t] = true
			}
		case "rerun":
			delete(done, t)
		case "dispatch":
			if done[t] {
				out = append(out, e)
			}
		}
	}
	return out
}
