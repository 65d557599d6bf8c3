package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/natsserver/natstest"
	"github.com/iteris-dev/iteris/protocol"
	"github.com/iteris-dev/iteris/worker"
)

// inProcess is three coordinator nodes on raft's in-memory transport and two workers, all in the
// test process, on one nats-server.
type inProcess struct {
	t      *testing.T
	ns     *natstest.Server
	nodes  []*coordinator.Node
	trans  []*raft.InmemTransport
	addrs  []raft.ServerAddress
	client *client.Client
}

func (p *inProcess) connect() (*nats.Conn, *artifact.JetStream) {
	p.t.Helper()
	nc := p.ns.Connect(nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	js, err := jetstream.New(nc)
	if err != nil {
		p.t.Fatal(err)
	}
	store, err := artifact.NewJetStream(js, artifact.JetStreamConfig{})
	if err != nil {
		p.t.Fatal(err)
	}
	return nc, store
}

func startInProcess(t *testing.T) *inProcess {
	t.Helper()
	p := &inProcess{t: t, ns: natstest.Start(t, natstest.Options{})}
	var peers []coordinator.Peer
	for i := 0; i < 3; i++ {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("c%d", i)))
		p.addrs, p.trans = append(p.addrs, addr), append(p.trans, tr)
		peers = append(peers, coordinator.Peer{ID: fmt.Sprintf("c%d", i), Addr: string(addr)})
	}
	p.heal()
	ctx := context.Background()
	for i := range p.trans {
		nc, store := p.connect()
		n, err := coordinator.New(coordinator.Config{ID: peers[i].ID, RaftAddr: peers[i].Addr, Transport: p.trans[i], Peers: peers,
			Conn: nc, Store: store, Jobs: &mergejob.Handler{Version: "test"}, Version: "test",
			Lease: 10 * time.Second, WorkerTimeout: 3 * time.Second, ElectionTimeout: 200 * time.Millisecond, Tick: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		p.nodes = append(p.nodes, n)
	}
	for i := 0; i < 2; i++ {
		nc, store := p.connect()
		tr, err := worker.NewNATS(nc)
		if err != nil {
			t.Fatal(err)
		}
		w, err := worker.New(worker.Config{ID: fmt.Sprintf("w%d", i), Memory: 4 << 30, Version: "test", Heartbeat: 200 * time.Millisecond,
			Control: tr, Tasks: tr, Results: tr, Ring: tr, Store: store, Loader: worker.CPULoader})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
	}
	nc, store := p.connect()
	p.client = client.New(nc, store)
	p.client.Retry, p.client.Poll = 50*time.Millisecond, 100*time.Millisecond
	return p
}

// heal connects every pair of transports.
func (p *inProcess) heal() {
	for i, a := range p.trans {
		for j, b := range p.trans {
			if i != j {
				a.Connect(p.addrs[j], b)
			}
		}
	}
}

// isolate disconnects node i from the others, both ways.
func (p *inProcess) isolate(i int) {
	p.trans[i].DisconnectAll()
	for j, tr := range p.trans {
		if j != i {
			tr.Disconnect(p.addrs[i])
		}
	}
}

// leaders returns the indexes of the nodes that consider themselves leader.
func (p *inProcess) leaders() []int {
	var out []int
	for i, n := range p.nodes {
		if n.IsLeader() {
			out = append(out, i)
		}
	}
	return out
}

// state returns a node's applied index and snapshot bytes.
func (p *inProcess) state(i int) (uint64, []byte) {
	var idx uint64
	var snap []byte
	p.nodes[i].View(func(s *coordinator.State) { idx, snap = s.Index, s.Snapshot() })
	return idx, snap
}

// waitFor waits until cond holds for the job's status (with events) and returns that status.
func (p *inProcess) waitFor(t *testing.T, ctx context.Context, job string, d time.Duration, what string, cond func(protocol.JobStatus) error) protocol.JobStatus {
	t.Helper()
	var js protocol.JobStatus
	Eventually(t, d, what, func() error {
		st, err := p.client.StatusEvents(ctx, job)
		if err != nil || len(st.Jobs) != 1 {
			return fmt.Errorf("status: %v (%d jobs)", err, len(st.Jobs))
		}
		js = st.Jobs[0]
		return cond(js)
	})
	return js
}

// waitLeader waits until exactly one node leads, and it is not node not, and returns it.
func (p *inProcess) waitLeader(t *testing.T, not int) int {
	t.Helper()
	var lead int
	Eventually(t, 10*time.Second, "one leader", func() error {
		l := p.leaders()
		if len(l) != 1 || l[0] == not {
			return fmt.Errorf("leaders %v (not c%d)", l, not)
		}
		lead = l[0]
		return nil
	})
	return lead
}

// checkAgree waits until the three nodes hold the same state byte for byte, and checks that it
// has exactly one job, done, with its result.
func (p *inProcess) checkAgree(t *testing.T, job string) {
	t.Helper()
	Eventually(t, 30*time.Second, "the three nodes agree", func() error {
		i0, s0 := p.state(0)
		for i := 1; i < 3; i++ {
			if ii, si := p.state(i); ii != i0 || !bytes.Equal(si, s0) {
				return fmt.Errorf("c0 at index %d, c%d at %d", i0, i, ii)
			}
		}
		return nil
	})
	for i, n := range p.nodes {
		n.View(func(s *coordinator.State) {
			j, ok := s.Jobs[job]
			if len(s.Jobs) != 1 || !ok || j.State != coordinator.JobDone || j.Files.IsZero() {
				t.Errorf("c%d holds %d jobs; %s is %v", i, len(s.Jobs), job, j)
			}
		})
	}
}

// TestPartitionedLeader cuts the raft leader off from the other two coordinators (raft's in-memory
// transport) in the middle of a job, with everything still on one nats-server: the old leader
// steps down and commits nothing while cut off, refuses a submission (ErrNotLeader), and the
// majority elects a new leader that finishes the job. Healed, all three nodes hold the same state
// byte for byte, with exactly one job and one result, and the adapter equals the undisturbed
// run's.
func TestPartitionedLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a merge on three in-process coordinators")
	}
	want := referenceAdapter(t, jacobiConfig)
	p := startInProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	job := submitTo(t, ctx, p.client, jacobiConfig, 2)
	p.waitFor(t, ctx, job, time.Minute, "three tasks done", func(js protocol.JobStatus) error {
		if n := len(EventLog(js.Events).Completed(0)); n < 3 {
			return fmt.Errorf("%d tasks done", n)
		}
		return nil
	})
	old := p.waitLeader(t, -1)
	p.isolate(old)
	cut := time.Now()
	Eventually(t, 10*time.Second, "the cut-off leader steps down", func() error {
		if p.nodes[old].IsLeader() {
			return fmt.Errorf("c%d still leads", old)
		}
		return nil
	})
	stepped := time.Since(cut)
	frozenIdx, frozenSnap := p.state(old)
	spec := &coordinator.JobSpec{Config: []byte("x"), Method: "iteris", Workers: 1, Layers: 4, Steps: []coordinator.Step{{Kind: protocol.StepSweep}}}
	err := p.nodes[old].Propose(ctx, coordinator.Command{Type: coordinator.CmdSubmit, At: time.Now().UnixMilli(), Leader: fmt.Sprintf("c%d", old), Job: "jminority", Spec: spec})
	if !errors.Is(err, coordinator.ErrNotLeader) {
		t.Fatalf("the cut-off node accepted a submission: %v", err)
	}
	elected := p.waitLeader(t, old)
	electedAfter := time.Since(cut)
	js := p.waitFor(t, ctx, job, 3*time.Minute, "the job finishes on the majority side", func(js protocol.JobStatus) error {
		if js.State != "done" {
			return fmt.Errorf("job %s, %d/%d tasks", js.State, js.TasksDone, js.Tasks)
		}
		return nil
	})
	idx, snap := p.state(old)
	if idx != frozenIdx || !bytes.Equal(snap, frozenSnap) {
		t.Fatalf("the cut-off node's state moved while it was cut off (index %d -> %d)", frozenIdx, idx)
	}
	p.heal()
	p.checkAgree(t, job)
	if got := adapterOf(t, ctx, p.client, job); !bytes.Equal(got, want) {
		t.Fatalf("adapter_model.safetensors (%d bytes) differs from the undisturbed embedded run's (%d bytes)\n%s", len(got), len(want), FormatEvents(js))
	}
	for _, e := range js.Events {
		if e.Leader == fmt.Sprintf("c%d", old) && e.At > cut.UnixMilli() {
			t.Fatalf("the cut-off leader's entry was committed: %+v\n%s", e, FormatEvents(js))
		}
	}
	noneRunAgain(t, js)
	t.Logf("recovery: c%d cut off; it stepped down after %s; c%d led %s after the cut; %s", old, stepped.Round(time.Millisecond), elected, electedAfter.Round(time.Millisecond), dispatchSummary(js))
}

// TestSubmitRetriedAcrossLeaders sends one submission (one request id) three times: twice to a
// leader, once more after that leader is gone (as a client does when a leader dies while it
// commits the submission). Every answer names the same job, and the group holds one job.
func TestSubmitRetriedAcrossLeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three in-process coordinators")
	}
	p := startInProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := os.ReadFile(filepath.Join(Root(), sweepConfig))
	if err != nil {
		t.Fatal(err)
	}
	sub := protocol.Submit{Config: b, Path: sweepConfig, Dir: Root(), Workers: 3, Request: "retried-submission"}
	var ids []string
	for i := 0; i < 3; i++ {
		if i == 2 {
			lead := p.waitLeader(t, -1)
			if err := p.nodes[lead].Close(); err != nil {
				t.Fatal(err)
			}
		}
		id, err := p.client.Submit(ctx, sub)
		if err != nil {
			t.Fatalf("submission %d: %v", i+1, err)
		}
		ids = append(ids, id)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("one submission gave the jobs %v", ids)
	}
	for i, n := range p.nodes {
		if !n.IsLeader() {
			continue
		}
		n.View(func(s *coordinator.State) {
			if len(s.Jobs) != 1 {
				t.Errorf("the leader c%d holds %d jobs, want 1", i, len(s.Jobs))
			}
		})
	}
}
