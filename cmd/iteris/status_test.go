package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/protocol"
)

func TestPrintStatus(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	running := protocol.JobStatus{Job: "j0123456789abcde", State: "running", Method: "iteris", Schedule: "jacobi", TasksDone: 3, Tasks: 8,
		Step: "jacobi 2", Submitted: 1_000_000 - 83_400,
		Steps: []protocol.StepStatus{{Kind: protocol.StepCalibrate, Done: 2, Tasks: 2}, {Kind: protocol.StepJacobi, Solve: 1, Done: 1, Tasks: 2},
			{Kind: protocol.StepJacobi, Solve: 2, Tasks: 2}, {Kind: protocol.StepJacobi, Solve: 3, Tasks: 2}},
		Shards: []protocol.ShardStatus{{Lo: 0, Hi: 2, Worker: "w0", Loaded: true}, {Lo: 2, Hi: 4, Worker: "w1"}}}
	failed := protocol.JobStatus{Job: "jfedcba987654321", State: "failed", Method: "regmean", TasksDone: 1, Tasks: 2, Step: "jacobi 1",
		Error: "job jfedcba987654321 task 1/0 failed 3 times", Submitted: 500_000, Finished: 512_345,
		Steps:  []protocol.StepStatus{{Kind: protocol.StepCalibrate, Done: 1, Tasks: 1}, {Kind: protocol.StepJacobi, Solve: 1, Tasks: 1}},
		Shards: []protocol.ShardStatus{{Lo: 0, Hi: 4}}}
	queued := protocol.JobStatus{Job: "j111111111111111", State: "queued", Method: "iteris", Schedule: "sweep", Tasks: 0, Submitted: 990_000, Shards: []protocol.ShardStatus{}}
	workers := []protocol.WorkerStatus{
		{Worker: "w0", Version: "v1", Memory: 4 << 30, Alive: true, Job: running.Job, Shard: 0},
		{Worker: "w1", Version: "v1", Memory: 3 << 29, Alive: true, Job: running.Job, Shard: 1},
		{Worker: "w2", Version: "v1", Memory: 1 << 30, Alive: false},
	}
	for _, c := range []struct {
		name string
		st   protocol.StatusReply
		want string
	}{
		{"every job", protocol.StatusReply{Leader: "c1", Jobs: []protocol.JobStatus{running, failed, queued}, Workers: workers}, `leader c1, 3 jobs, 3 workers (2 alive)

JOB               STATE    METHOD         STEP      PROGRESS          SHARDS      TIME
j0123456789abcde  running  iteris jacobi  jacobi 2  [###.......] 3/8  1/2 loaded  1m23s
jfedcba987654321  failed   regmean        -         [#####.....] 1/2  0/1 loaded  12.3s
j111111111111111  queued   iteris sweep   -         -                 -           10s
error: jfedcba987654321: job jfedcba987654321 task 1/0 failed 3 times

WORKER  STATE  MEMORY   HOLDS                     VERSION
w0      alive  4.0 GiB  j0123456789abcde shard 0  v1
w1      alive  1.5 GiB  j0123456789abcde shard 1  v1
w2      lost   1.0 GiB  -                         v1
`},
		{"one job", protocol.StatusReply{Leader: "c0", Jobs: []protocol.JobStatus{running}, Workers: workers[:2]}, `leader c0, 1 job, 2 workers (2 alive)

JOB               STATE    METHOD         STEP      PROGRESS          SHARDS      TIME
j0123456789abcde  running  iteris jacobi  jacobi 2  [###.......] 3/8  1/2 loaded  1m23s

STEP         TASKS  STATE
calibration  2/2    done
solve 1/3    1/2    running
solve 2/3    0/2    waiting
solve 3/3    0/2    waiting

SHARD  LAYERS  WORKER  LOADED
0      0-1     w0      yes
1      2-3     w1      no

WORKER  STATE  MEMORY   HOLDS                     VERSION
w0      alive  4.0 GiB  j0123456789abcde shard 0  v1
w1      alive  1.5 GiB  j0123456789abcde shard 1  v1
`},
		{"failed job", protocol.StatusReply{Leader: "c0", Jobs: []protocol.JobStatus{failed}}, `leader c0, 1 job, 0 workers (0 alive)

JOB               STATE   METHOD   STEP  PROGRESS          SHARDS      TIME
jfedcba987654321  failed  regmean  -     [#####.....] 1/2  0/1 loaded  12.3s
error: jfedcba987654321: job jfedcba987654321 task 1/0 failed 3 times

STEP         TASKS  STATE
calibration  1/1    done
solve 1/1    0/1    failed

SHARD  LAYERS  WORKER  LOADED
0      0-3     -       no

no workers registered
`},
		{"empty cluster", protocol.StatusReply{}, "leader -, 0 jobs, 0 workers (0 alive)\n\nno workers registered\n"},
	} {
		var b strings.Builder
		printStatus(&b, c.st, now)
		if b.String() != c.want {
			t.Errorf("%s:\n%s\nwant:\n%s", c.name, b.String(), c.want)
		}
	}
}

// printEvents writes one row per event, naming the step, the leader and the worker.
func TestPrintEvents(t *testing.T) {
	st := protocol.StatusReply{Jobs: []protocol.JobStatus{{Job: "j1", Steps: []protocol.StepStatus{
		{Kind: protocol.StepCalibrate}, {Kind: protocol.StepJacobi, Solve: 1}},
		Events: []protocol.JobEvent{
			{At: 1700000000000, Leader: "c0", Type: "dispatch", Step: 1, Shard: 1, Attempt: 1},
			{At: 1700000000250, Leader: "c1", Type: "takeover", Step: 1, Note: "1 of 4 tasks done; resuming at step 1 (jacobi 1)"},
			{At: 1700000000500, Leader: "c1", Type: "complete", Step: 1, Shard: 1, Attempt: 1, Worker: "w1"},
		}}}}
	var b bytes.Buffer
	printEvents(&b, st)
	out := b.String()
	for _, want := range []string{"events of j1:", "LEADER", "22:13:20.000  c0", "dispatch  1 jacobi 1", "takeover", "resuming at step 1", "complete  1 jacobi 1  1      1        w1"} {
		if !strings.Contains(out, want) {
			t.Errorf("printEvents output lacks %q:\n%s", want, out)
		}
	}
}
