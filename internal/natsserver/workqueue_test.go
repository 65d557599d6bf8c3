package natsserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/natsserver"
	"github.com/iteris-dev/iteris/internal/natsserver/natstest"
)

// These tests document the JetStream semantics the coordinator relies on, on both servers iteris
// uses: the embedded one and the nats-server binary built from the pinned module. A task stream
// is a work queue with one subject per shard and one pull consumer per shard subject, explicit
// acks, an ack wait and a max deliver.

// servers returns a connection factory per server kind.
var servers = []struct {
	name    string
	connect func(t *testing.T) *nats.Conn
}{
	{"embedded", func(t *testing.T) *nats.Conn {
		e, err := natsserver.New(natsserver.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		nc, err := e.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}},
	{"binary", func(t *testing.T) *nats.Conn { return natstest.Start(t, natstest.Options{}).Connect() }},
}

// queue is a task stream with a consumer on shard 0's subject.
type queue struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	cons   jetstream.Consumer
}

const (
	taskStream = "TASKS"
	shard0     = "tasks.job1.shard.0"
	shard1     = "tasks.job1.shard.1"
)

func newQueue(t *testing.T, nc *nats.Conn, ackWait time.Duration, maxDeliver int) *queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: taskStream, Subjects: []string{"tasks.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "shard0", FilterSubject: shard0,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxDeliver: maxDeliver})
	if err != nil {
		t.Fatal(err)
	}
	return &queue{js: js, stream: st, cons: cons}
}

func (q *queue) publish(t *testing.T, subject, id string) {
	t.Helper()
	ack, err := q.js.Publish(context.Background(), subject, []byte("task "+id), jetstream.WithMsgID(id))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate {
		t.Fatalf("task %s stored as a duplicate", id)
	}
}

// next waits up to wait for a message; nil when none came.
func (q *queue) next(t *testing.T, wait time.Duration) jetstream.Msg {
	t.Helper()
	m, err := q.cons.Next(jetstream.FetchMaxWait(wait))
	if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func deliveries(t *testing.T, m jetstream.Msg) uint64 {
	t.Helper()
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	return md.NumDelivered
}

// msgs returns the number of messages in the stream.
func (q *queue) msgs(t *testing.T) uint64 {
	t.Helper()
	info, err := q.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func forEachServer(t *testing.T, f func(t *testing.T, nc *nats.Conn)) {
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			f(t, s.connect(t))
		})
	}
}

// An unacked task comes back as delivery 2 no earlier than one ack wait later; once acked it
// leaves the work queue.
func TestWorkQueueRedeliversAfterAckWait(t *testing.T) {
	const ackWait = time.Second
	forEachServer(t, func(t *testing.T, nc *nats.Conn) {
		q := newQueue(t, nc, ackWait, 5)
		q.publish(t, shard0, "t1")
		m1 := q.next(t, 5*time.Second)
		if m1 == nil || deliveries(t, m1) != 1 {
			t.Fatalf("first delivery: %v", m1)
		}
		got := time.Now()
		m2 := q.next(t, 5*ackWait)
		if m2 == nil {
			t.Fatal("the unacked task did not come back")
		}
		after := time.Since(got)
		if n := deliveries(t, m2); n != 2 || string(m2.Data()) != "task t1" {
			t.Fatalf("redelivery %d of %q", n, m2.Data())
		}
		// Timer granularity allows a few milliseconds; a redelivery well before the ack wait would
		// break the lease model.
		if after < ackWait-50*time.Millisecond {
			t.Fatalf("redelivered after %v, before the ack wait of %v", after, ackWait)
		}
		t.Logf("redelivered %v after the first delivery (ack wait %v)", after.Round(time.Millisecond), ackWait)
		if err := m2.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := q.msgs(t); n != 0 {
			t.Fatalf("%d messages left after the ack", n)
		}
	})
}

// In-progress acks keep a task that runs longer than the ack wait from being redelivered.
func TestWorkQueueInProgressExtendsAckWait(t *testing.T) {
	const ackWait = time.Second
	forEachServer(t, func(t *testing.T, nc *nats.Conn) {
		q := newQueue(t, nc, ackWait, 5)
		q.publish(t, shard0, "long")
		m := q.next(t, 5*time.Second)
		if m == nil {
			t.Fatal("no delivery")
		}
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			tick := time.NewTicker(ackWait / 4)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					done <- nil
					return
				case <-tick.C:
					if err := m.InProgress(); err != nil {
						done <- err
						return
					}
				}
			}
		}()
		// Three ack waits with heartbeats: nothing is redelivered.
		if again := q.next(t, 3*ackWait); again != nil {
			t.Fatalf("redelivered (delivery %d) while in-progress acks were sent", deliveries(t, again))
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := m.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := q.msgs(t); n != 0 {
			t.Fatalf("%d messages left after the ack", n)
		}
	})
}

// maxDeliveries is the advisory JetStream publishes when a message reaches max deliver.
type maxDeliveries struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// At max deliver the server stops delivering, publishes the MAX_DELIVERIES advisory, and the
// message stays in the work-queue stream until someone (the coordinator) removes it.
func TestWorkQueueMaxDeliverAdvisory(t *testing.T) {
	const ackWait = 300 * time.Millisecond
	forEachServer(t, func(t *testing.T, nc *nats.Conn) {
		q := newQueue(t, nc, ackWait, 2)
		adv, err := nc.SubscribeSync(fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.shard0", taskStream))
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		q.publish(t, shard0, "doomed")
		for want := uint64(1); want <= 2; want++ {
			m := q.next(t, 10*ackWait)
			if m == nil || deliveries(t, m) != want {
				t.Fatalf("delivery %d: %v", want, m)
			}
		}
		// The server notices the exceeded count when it would deliver a third time, that is
		// while a pull is waiting: a worker's next fetch. The fetch gets nothing.
		if m := q.next(t, 3*ackWait); m != nil {
			t.Fatalf("delivery %d after max deliver", deliveries(t, m))
		}
		msg, err := adv.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("no MAX_DELIVERIES advisory: %v", err)
		}
		var a maxDeliveries
		if err := json.Unmarshal(msg.Data, &a); err != nil {
			t.Fatal(err)
		}
		if a.Type != "io.nats.jetstream.advisory.v1.max_deliver" || a.Stream != taskStream || a.Consumer != "shard0" ||
			a.StreamSeq != 1 || a.Deliveries != 2 {
			t.Fatalf("advisory %+v (%s)", a, msg.Data)
		}
		if m := q.next(t, 3*ackWait); m != nil {
			t.Fatalf("delivery %d after the advisory", deliveries(t, m))
		}
		if n := q.msgs(t); n != 1 {
			t.Fatalf("%d messages in the stream after max deliver, want the task still there", n)
		}
		if err := q.stream.DeleteMsg(context.Background(), a.StreamSeq); err != nil {
			t.Fatal(err)
		}
		if n := q.msgs(t); n != 0 {
			t.Fatalf("%d messages after deleting the task", n)
		}
	})
}

// A task published twice with the same message id is stored once; a shard's consumer sees only
// its shard's subject.
func TestWorkQueueDedupAndShardSubjects(t *testing.T) {
	forEachServer(t, func(t *testing.T, nc *nats.Conn) {
		q := newQueue(t, nc, time.Second, 5)
		q.publish(t, shard1, "s1-task")
		q.publish(t, shard0, "s0-task")
		ack, err := q.js.Publish(context.Background(), shard0, []byte("task s0-task"), jetstream.WithMsgID("s0-task"))
		if err != nil || !ack.Duplicate {
			t.Fatalf("republished task: %+v, %v; want a duplicate", ack, err)
		}
		if n := q.msgs(t); n != 2 {
			t.Fatalf("%d messages, want 2", n)
		}
		m := q.next(t, 5*time.Second)
		if m == nil || m.Subject() != shard0 {
			t.Fatalf("shard 0 consumer got %v", m)
		}
		if err := m.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
		if m := q.next(t, 200*time.Millisecond); m != nil {
			t.Fatalf("shard 0 consumer got %s", m.Subject())
		}
		if n := q.msgs(t); n != 1 {
			t.Fatalf("%d messages, want shard 1's task left", n)
		}
	})
}
