package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/protocol"
)

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
