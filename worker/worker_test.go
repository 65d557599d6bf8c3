package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/protocol"
)

// fakeCluster is the coordinators and JetStream as one worker sees them: one task to deliver, a
// heartbeat reply chosen by the test, and the results published.
type fakeCluster struct {
	mu        sync.Mutex
	task      *protocol.Task
	delivered bool
	acked     chan string // "ack" or "nak"
	results   []protocol.Result
	failPubs  int // publishes that fail with ErrUnavailable before one succeeds
	pubs      int
	reply     func(hb protocol.Heartbeat) protocol.HeartbeatReply
	registers int
}

func (f *fakeCluster) Register(context.Context, protocol.Register) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers++
	return nil
}

func (f *fakeCluster) Heartbeat(_ context.Context, hb protocol.Heartbeat) (protocol.HeartbeatReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reply(hb), nil
}

func (f *fakeCluster) Next(ctx context.Context, job string, sh int, wait time.Duration) (Delivery, error) {
	f.mu.Lock()
	if f.delivered || f.task == nil {
		f.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		return nil, ErrNoTask
	}
	f.delivered = true
	t := *f.task
	f.mu.Unlock()
	return &fakeDelivery{t: t, acked: f.acked}, nil
}

func (f *fakeCluster) Publish(_ context.Context, r protocol.Result) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pubs++
	if f.pubs <= f.failPubs {
		return fmt.Errorf("%w: no responders", protocol.ErrUnavailable)
	}
	f.results = append(f.results, r)
	return nil
}

func (f *fakeCluster) Listen(string, int, int) (<-chan []byte, func(), error) {
	return nil, nil, errors.New("no ring in these tests")
}

func (f *fakeCluster) Send(context.Context, string, int, int, []byte) error { return nil }

type fakeDelivery struct {
	t     protocol.Task
	acked chan string
}

func (d *fakeDelivery) Task() protocol.Task    { return d.t }
func (d *fakeDelivery) AckWait() time.Duration { return time.Second }
func (d *fakeDelivery) InProgress() error      { return nil }
func (d *fakeDelivery) Ack() error             { d.acked <- "ack"; return nil }
func (d *fakeDelivery) Nak() error             { d.acked <- "nak"; return nil }
func (f *fakeCluster) published() []protocol.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]protocol.Result(nil), f.results...)
}

// fakeShard runs jacobi steps: it blocks until its context ends when block is set, else returns
// no updates.
type fakeShard struct {
	block   bool
	stopped chan error
}

func (s *fakeShard) Jacobi(ctx context.Context, _ int, _ shard.StepInput) (shard.StepOutput, error) {
	if s.block {
		<-ctx.Done()
		s.stopped <- ctx.Err()
		return shard.StepOutput{}, ctx.Err()
	}
	return shard.StepOutput{Updates: shard.Updates{}, Records: map[string]shard.SiteRecord{}}, nil
}
func (s *fakeShard) Sweep(ctx context.Context, in shard.StepInput) (shard.StepOutput, error) {
	return s.Jacobi(ctx, 1, in)
}
func (s *fakeShard) NewCalibration([]shard.GenBatch) (*shard.Calibration, error) {
	return nil, errors.New("no calibration in these tests")
}
func (s *fakeShard) WeightOnly() (shard.Updates, error) { return shard.Updates{}, nil }
func (s *fakeShard) BatchSize() int                     { return 4 }
func (s *fakeShard) Read() []model.TensorRead           { return nil }

// unavailableStore fails every read as unavailable.
type unavailableStore struct{ ArtifactStore }

func (unavailableStore) Get(context.Context, string, protocol.Ref) (protocol.Kind, []byte, error) {
	return 0, nil, fmt.Errorf("%w: the NATS connection dropped", artifact.ErrUnavailable)
}

const testJob = "j-test"

// startWorker starts a worker holding shard 0 of testJob with one jacobi task to run, on a store
// that holds the task's calibration sequences.
func startWorker(t *testing.T, f *fakeCluster, sh *fakeShard, wrap func(ArtifactStore) ArtifactStore) *Worker {
	t.Helper()
	mem, err := artifact.NewMemory(artifact.Encoding{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	seqs, err := protocol.EncodeSequences([][][]int{{{1, 2, 3}}})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := mem.Put(context.Background(), testJob, protocol.KindSequences, seqs)
	if err != nil {
		t.Fatal(err)
	}
	f.task = &protocol.Task{Head: protocol.NewHead(), TaskKey: protocol.TaskKey{Job: testJob, Step: 1, Shard: 0}, Kind: protocol.StepJacobi,
		Solve: 1, Attempt: 2, Shards: 1, Inputs: protocol.Inputs{Sequences: ref}}
	f.acked = make(chan string, 4)
	var store ArtifactStore = mem
	if wrap != nil {
		store = wrap(mem)
	}
	w, err := New(Config{ID: "w1", Memory: 1 << 30, Heartbeat: 20 * time.Millisecond, Control: f, Tasks: f, Results: f, Ring: f, Store: store,
		Loader: func(context.Context, protocol.Assignment) (Shard, error) { return sh, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// assignment is the heartbeat reply that gives the worker shard 0 of testJob.
func assignment(hb protocol.Heartbeat) protocol.HeartbeatReply {
	return protocol.HeartbeatReply{Head: protocol.NewHead(), Assignment: &protocol.Assignment{
		ShardRef: protocol.ShardRef{Job: testJob, Shard: 0}, Lo: 0, Hi: 1, Shards: 1}}
}

func waitAck(t *testing.T, f *fakeCluster, want string) {
	t.Helper()
	select {
	case got := <-f.acked:
		if got != want {
			t.Fatalf("the task message was %sed, want %s", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the task message was never %sed", want)
	}
}

// A heartbeat reply that cancels the running attempt stops the task: its context ends, its
// message is acked and no result is published.
func TestCancelledAttemptIsAbandoned(t *testing.T) {
	f := &fakeCluster{}
	f.reply = func(hb protocol.Heartbeat) protocol.HeartbeatReply {
		r := assignment(hb)
		r.Cancel = hb.Running
		return r
	}
	sh := &fakeShard{block: true, stopped: make(chan error, 1)}
	startWorker(t, f, sh, nil)
	select {
	case err := <-sh.stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the task stopped with %v, want its context cancelled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled task kept running")
	}
	waitAck(t, f, "ack")
	if r := f.published(); len(r) != 0 {
		t.Fatalf("a cancelled attempt published %+v", r)
	}
}

// A heartbeat answered "not registered" (the coordinators lost the worker) abandons the running
// attempt and registers again.
func TestLostWorkerAbandonsItsAttempt(t *testing.T) {
	f := &fakeCluster{}
	f.reply = func(hb protocol.Heartbeat) protocol.HeartbeatReply {
		if len(hb.Running) > 0 {
			return protocol.HeartbeatReply{Head: protocol.NewHead(), Error: protocol.Errorf(protocol.CodeNotFound, "worker w1 was lost")}
		}
		return assignment(hb)
	}
	sh := &fakeShard{block: true, stopped: make(chan error, 1)}
	startWorker(t, f, sh, nil)
	select {
	case <-sh.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the task of a lost worker kept running")
	}
	waitAck(t, f, "ack")
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		n := f.registers
		f.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registered %d times, want a registration again after the loss", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A result is published again while NATS does not answer; the message is acked once it is out.
func TestResultPublishedAgainUntilNATSAnswers(t *testing.T) {
	f := &fakeCluster{failPubs: 2, reply: assignment}
	startWorker(t, f, &fakeShard{}, nil)
	waitAck(t, f, "ack")
	r := f.published()
	if len(r) != 1 || r[0].Error != nil || r[0].Attempt != 2 {
		t.Fatalf("published %+v, want one successful result of attempt 2", r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pubs != 3 {
		t.Fatalf("%d publishes, want 3 (two refused)", f.pubs)
	}
}

// An input the store could not read because the cluster was unavailable is reported as
// unavailable (the task runs again), not as a corrupt input (which would re-run its producer).
func TestUnavailableInputIsNotCorrupt(t *testing.T) {
	f := &fakeCluster{reply: assignment}
	startWorker(t, f, &fakeShard{}, func(s ArtifactStore) ArtifactStore { return unavailableStore{s} })
	waitAck(t, f, "ack")
	r := f.published()
	if len(r) != 1 || r[0].Error == nil || r[0].Error.Code != protocol.CodeUnavailable || r[0].Error.Ref != nil ||
		!strings.Contains(r[0].Error.Message, "calibration sequences") {
		t.Fatalf("published %+v, want an unavailable failure naming the sequences", r)
	}
}
