package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/internal/natsserver/natstest"
	"github.com/iteris-dev/iteris/protocol"
	"github.com/iteris-dev/iteris/worker"
)

// permCluster is a nats-server with PermissionsFile and what a leader sets up on it: the streams,
// the results consumer, a job's artifact bucket and the task consumer of its shard 0.
type permCluster struct {
	sec   *Secure
	srv   *natstest.Server
	js    jetstream.JetStream // the coordinator's
	store *artifact.JetStream // the coordinator's
	input protocol.Ref        // an artifact the coordinator stored for job j1
}

const permJob = "j1"

func startPermCluster(t *testing.T) *permCluster {
	t.Helper()
	sec := NewSecure(t)
	srv := natstest.Start(t, sec.NATSOptions())
	js, err := jetstream.New(sec.ConnectAs(t, srv, "coordinator", nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []jetstream.StreamConfig{
		{Name: protocol.StreamTasks, Subjects: []string{protocol.SubjectTasks}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage},
		{Name: protocol.StreamResults, Subjects: []string{protocol.SubjectResults}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage},
	} {
		if _, err := js.CreateOrUpdateStream(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, protocol.StreamResults, jetstream.ConsumerConfig{Durable: protocol.ConsumerResults, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, protocol.StreamTasks, jetstream.ConsumerConfig{Durable: protocol.TaskConsumer(permJob, 0),
		FilterSubject: protocol.TaskSubject(permJob, 0), AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	store, err := artifact.NewJetStream(js, artifact.JetStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Ensure(ctx, permJob); err != nil {
		t.Fatal(err)
	}
	seqs, _ := protocol.EncodeSequences([][][]int{{{1, 2, 3}}})
	in, err := store.Put(ctx, permJob, protocol.KindSequences, seqs)
	if err != nil {
		t.Fatal(err)
	}
	return &permCluster{sec: sec, srv: srv, js: js, store: store, input: in}
}

// streamMsgs returns a stream's message count as the coordinator sees it.
func (p *permCluster) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	st, err := p.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// violation waits for the permissions violation naming subject (or a subject it starts) among a connection's async errors.
func violation(t *testing.T, errs <-chan error, kind, subject string) {
	t.Helper()
	want := fmt.Sprintf("permissions violation for %s to \"%s", strings.ToLower(kind), strings.ToLower(subject))
	deadline := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case err := <-errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), want) {
				return
			}
			seen = append(seen, err.Error())
		case <-deadline:
			t.Fatalf("no %q from the server; errors seen: %q", want, seen)
		}
	}
}

// TestWorkerPermissions runs what a worker does as the worker user of PermissionsFile (through
// the worker's own NATS transport and the artifact store), then what it must not do: each is
// refused by the server, naming the subject, and changes nothing.
func TestWorkerPermissions(t *testing.T) {
	p := startPermCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coord := p.sec.ConnectAs(t, p.srv, "coordinator", nil)
	task := protocol.Task{Head: protocol.NewHead(), TaskKey: protocol.TaskKey{Job: permJob, Step: 0, Shard: 0}, Kind: protocol.StepSweep, Attempt: 1, Shards: 1}
	if _, err := p.js.Publish(ctx, protocol.TaskSubject(permJob, 0), protocol.Encode(task)); err != nil {
		t.Fatal(err)
	}
	reg, err := coord.Subscribe(protocol.SubjectRegister, func(m *nats.Msg) {
		_ = m.Respond(protocol.Encode(protocol.Reply{Head: protocol.NewHead(), Leader: "c0"}))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unsubscribe()
	coord.Flush()

	errs := make(chan error, 64)
	wnc := p.sec.ConnectAs(t, p.srv, "worker", errs)
	tr, err := worker.NewNATS(wnc)
	if err != nil {
		t.Fatal(err)
	}
	wjs, _ := jetstream.New(wnc)
	wstore, err := artifact.NewJetStream(wjs, artifact.JetStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("allowed", func(t *testing.T) {
		if err := tr.Register(ctx, protocol.Register{Head: protocol.NewHead(), Worker: "w0", Version: "v", Memory: 1}); err != nil {
			t.Fatalf("register: %v", err)
		}
		d, err := tr.Next(ctx, permJob, 0, 10*time.Second)
		if err != nil {
			t.Fatalf("taking a task: %v", err)
		}
		if err := d.InProgress(); err != nil {
			t.Fatal(err)
		}
		k, got, err := wstore.Get(ctx, permJob, p.input)
		if err != nil || k != protocol.KindSequences {
			t.Fatalf("reading an input artifact: %v", err)
		}
		ref, err := wstore.Put(ctx, permJob, protocol.KindSequences, got)
		if err != nil || ref != p.input {
			t.Fatalf("putting an artifact that exists: %v", err)
		}
		rows, _ := protocol.EncodeRows([]protocol.Batch{{Task: 0, Width: 2, Lens: []int{1}, Start: []int{0}, Data: []float32{1, 2}}})
		out, err := wstore.Put(ctx, permJob, protocol.KindRows, rows)
		if err != nil {
			t.Fatalf("writing an artifact: %v", err)
		}
		if _, back, err := p.store.Get(ctx, permJob, out); err != nil || !bytes.Equal(back, rows) {
			t.Fatalf("the coordinator reads the worker's artifact: %v", err)
		}
		res := protocol.Result{Head: protocol.NewHead(), TaskKey: task.TaskKey, Attempt: 1, Worker: "w0", Outputs: protocol.Outputs{T: out}}
		if err := tr.Publish(ctx, res); err != nil {
			t.Fatalf("publishing a result: %v", err)
		}
		if err := d.Ack(); err != nil {
			t.Fatal(err)
		}
		msgs, stop, err := tr.Listen(permJob, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		if err := tr.Send(ctx, permJob, 1, 1, []byte("step")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-msgs:
			if string(m) != "step" {
				t.Fatalf("ring message %q", m)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no ring message")
		}
		if n := p.streamMsgs(t, protocol.StreamResults); n != 1 {
			t.Fatalf("%d results in the stream, want 1", n)
		}
	})
	select {
	case err := <-errs:
		t.Fatalf("the allowed operations raised %v", err)
	default:
	}

	tasks := p.streamMsgs(t, protocol.StreamTasks)
	denied := []struct {
		name, kind, subject string
		do                  func(ctx context.Context) error
	}{
		{"publish a task", "publish", protocol.TaskSubject(permJob, 0), func(ctx context.Context) error {
			_, err := wjs.Publish(ctx, protocol.TaskSubject(permJob, 0), protocol.Encode(task))
			return err
		}},
		{"look up the results consumer", "publish", "$JS.API.CONSUMER.INFO.ITERIS_RESULTS.coordinator", func(ctx context.Context) error {
			_, err := wjs.Consumer(ctx, protocol.StreamResults, protocol.ConsumerResults)
			return err
		}},
		{"pull results", "publish", "$JS.API.CONSUMER.MSG.NEXT.ITERIS_RESULTS.coordinator", func(ctx context.Context) error {
			_, err := wnc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.ITERIS_RESULTS.coordinator", []byte(`{"batch":1}`))
			return err
		}},
		{"create a consumer on the results", "publish", "$JS.API.CONSUMER.CREATE.ITERIS_RESULTS.spy", func(ctx context.Context) error {
			_, err := wjs.CreateConsumer(ctx, protocol.StreamResults, jetstream.ConsumerConfig{Name: "spy"})
			return err
		}},
		{"delete a task consumer", "publish", "$JS.API.CONSUMER.DELETE.ITERIS_TASKS." + protocol.TaskConsumer(permJob, 0), func(ctx context.Context) error {
			return wjs.DeleteConsumer(ctx, protocol.StreamTasks, protocol.TaskConsumer(permJob, 0))
		}},
		{"delete the tasks stream", "publish", "$JS.API.STREAM.DELETE.ITERIS_TASKS", func(ctx context.Context) error {
			return wjs.DeleteStream(ctx, protocol.StreamTasks)
		}},
		{"create a stream", "publish", "$JS.API.STREAM.CREATE.SPY", func(ctx context.Context) error {
			_, err := wjs.CreateStream(ctx, jetstream.StreamConfig{Name: "SPY", Subjects: []string{protocol.SubjectSubmit}})
			return err
		}},
		{"purge an artifact bucket", "publish", "$JS.API.STREAM.PURGE.OBJ_" + artifact.BucketPrefix + permJob, func(ctx context.Context) error {
			s, err := wjs.Stream(ctx, "OBJ_"+artifact.BucketPrefix+permJob)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		}},
		{"create an artifact bucket", "publish", "$JS.API.STREAM.CREATE.OBJ_" + artifact.BucketPrefix + "j2", func(ctx context.Context) error {
			_, err := wstore.Put(ctx, "j2", protocol.KindSequences, []byte("x"))
			return err
		}},
		{"answer the job API", "subscription", protocol.SubjectSubmit, func(ctx context.Context) error {
			_, err := wnc.SubscribeSync(protocol.SubjectSubmit)
			if err == nil {
				err = wnc.FlushWithContext(ctx)
			}
			return errors.Join(err, errors.New("subscribed"))
		}},
		{"use the job API", "publish", protocol.SubjectStatus, func(ctx context.Context) error {
			_, err := client.New(wnc, wstore).Status(ctx, "")
			if err == nil || !strings.Contains(err.Error(), "the NATS user may not use the job API") {
				return fmt.Errorf("status as a worker: %v", err)
			}
			return err
		}},
		{"read the coordinators' replies", "subscription", "_INBOX.iteris-coordinator.>", func(ctx context.Context) error {
			_, err := wnc.SubscribeSync("_INBOX.iteris-coordinator.>")
			return errors.Join(err, wnc.FlushWithContext(ctx), errors.New("subscribed"))
		}},
	}
	for _, tc := range denied {
		t.Run("denied: "+tc.name, func(t *testing.T) {
			dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			if err := tc.do(dctx); err == nil {
				t.Fatal("succeeded")
			}
			violation(t, errs, tc.kind, tc.subject)
		})
	}
	if n := p.streamMsgs(t, protocol.StreamTasks); n != tasks {
		t.Fatalf("%d task messages after the denied operations, %d before", n, tasks)
	}
	if _, err := p.js.Consumer(ctx, protocol.StreamTasks, protocol.TaskConsumer(permJob, 0)); err != nil {
		t.Fatalf("the task consumer: %v", err)
	}
	if _, _, err := p.store.Get(ctx, permJob, p.input); err != nil {
		t.Fatalf("the job's artifact after the denied operations: %v", err)
	}
}

// TestClientPermissions: `iteris submit` and `status` may use the job API and read artifacts
// (the merged adapter), and nothing else.
func TestClientPermissions(t *testing.T) {
	p := startPermCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coord := p.sec.ConnectAs(t, p.srv, "coordinator", nil)
	api, err := coord.Subscribe(protocol.SubjectStatus, func(m *nats.Msg) {
		_ = m.Respond(protocol.Encode(protocol.StatusReply{Head: protocol.NewHead(), Leader: "c0"}))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer api.Unsubscribe()
	coord.Flush()
	errs := make(chan error, 64)
	nc := p.sec.ConnectAs(t, p.srv, "client", errs)
	js, _ := jetstream.New(nc)
	store, err := artifact.NewJetStream(js, artifact.JetStreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := nc.RequestWithContext(ctx, protocol.SubjectStatus, protocol.Encode(protocol.JobRequest{Head: protocol.NewHead()}))
	if err != nil {
		t.Fatalf("status request: %v", err)
	}
	if r, err := protocol.DecodeStatusReply(m.Data); err != nil || r.Leader != "c0" {
		t.Fatalf("status reply %+v: %v", r, err)
	}
	if _, _, err := store.Get(ctx, permJob, p.input); err != nil {
		t.Fatalf("reading an artifact: %v", err)
	}
	results := p.streamMsgs(t, protocol.StreamResults)
	denied := []struct {
		name, kind, subject string
		do                  func(ctx context.Context) error
	}{
		{"publish a result", "publish", protocol.ResultSubject(permJob), func(ctx context.Context) error {
			_, err := js.Publish(ctx, protocol.ResultSubject(permJob), []byte("{}"))
			return err
		}},
		{"take a task", "publish", "$JS.API.CONSUMER.INFO.ITERIS_TASKS." + protocol.TaskConsumer(permJob, 0), func(ctx context.Context) error {
			_, err := js.Consumer(ctx, protocol.StreamTasks, protocol.TaskConsumer(permJob, 0))
			return err
		}},
		{"write an artifact", "publish", "$O." + artifact.BucketPrefix + permJob + ".C.", func(ctx context.Context) error {
			_, err := store.Put(ctx, permJob, protocol.KindSequences, []byte("new"))
			return err
		}},
		{"register as a worker", "publish", protocol.SubjectRegister, func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, protocol.SubjectRegister, []byte("{}"))
			return err
		}},
	}
	for _, tc := range denied {
		t.Run("denied: "+tc.name, func(t *testing.T) {
			dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			if err := tc.do(dctx); err == nil {
				t.Fatal("succeeded")
			}
			violation(t, errs, tc.kind, tc.subject)
		})
	}
	if n := p.streamMsgs(t, protocol.StreamResults); n != results {
		t.Fatalf("%d results after the denied operations, %d before", n, results)
	}
}
