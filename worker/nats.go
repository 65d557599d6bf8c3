package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/natsconn"
	"github.com/iteris-dev/iteris/protocol"
)

// NATS implements Control, Tasks, Results and Ring over one NATS connection.
type NATS struct {
	nc *nats.Conn
	js jetstream.JetStream
	// Timeout bounds each request (default 5 s).
	Timeout time.Duration

	mu        sync.Mutex
	consumers map[string]jetstream.Consumer
}

// NewNATS returns the NATS side of a worker.
func NewNATS(nc *nats.Conn) (*NATS, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &NATS{nc: nc, js: js, Timeout: 5 * time.Second, consumers: map[string]jetstream.Consumer{}}, nil
}

// request sends a request and waits for its reply, for at most Timeout and no longer than the
// connection lasts (a request lost with a dropped connection fails at once, as unavailable).
func (n *NATS) request(ctx context.Context, subject string, v any) ([]byte, error) {
	tctx, cancel := context.WithTimeout(ctx, n.Timeout)
	defer cancel()
	wctx, stop := natsconn.Watch(tctx, n.nc)
	defer stop()
	m, err := n.nc.RequestWithContext(wctx, subject, protocol.Encode(v))
	if err != nil && natsconn.Dropped(tctx, wctx) {
		return nil, fmt.Errorf("%w: %s: the NATS connection dropped", protocol.ErrUnavailable, subject)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	return m.Data, nil
}

// Register implements Control.
func (n *NATS) Register(ctx context.Context, r protocol.Register) error {
	b, err := n.request(ctx, protocol.SubjectRegister, r)
	if err != nil {
		return err
	}
	rep, err := protocol.DecodeReply(b)
	if err != nil {
		return err
	}
	if rep.Error != nil {
		return rep.Error
	}
	return nil
}

// Heartbeat implements Control.
func (n *NATS) Heartbeat(ctx context.Context, hb protocol.Heartbeat) (protocol.HeartbeatReply, error) {
	b, err := n.request(ctx, protocol.SubjectHeartbeat, hb)
	if err != nil {
		return protocol.HeartbeatReply{}, err
	}
	return protocol.DecodeHeartbeatReply(b)
}

// Next implements Tasks: one message from the shard's durable consumer.
func (n *NATS) Next(ctx context.Context, job string, shard int, wait time.Duration) (Delivery, error) {
	name := protocol.TaskConsumer(job, shard)
	n.mu.Lock()
	cons, ok := n.consumers[name]
	n.mu.Unlock()
	if !ok {
		var err error
		if cons, err = n.js.Consumer(ctx, protocol.StreamTasks, name); err != nil {
			return nil, fmt.Errorf("task consumer %s: %w", name, err)
		}
		n.mu.Lock()
		n.consumers[name] = cons
		n.mu.Unlock()
	}
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	m, err := cons.Next(jetstream.FetchContext(fctx))
	if err != nil {
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, context.DeadlineExceeded) {
			return nil, ErrNoTask
		}
		return nil, err
	}
	t, err := protocol.DecodeTask(m.Data())
	if err != nil || t.Job != job || t.Shard != shard {
		// A message that is not a task of this shard can never be run: take it off the queue.
		_ = m.Term()
		return nil, fmt.Errorf("refused task message on %s: %v", m.Subject(), err)
	}
	return &delivery{m: m, t: t, ackWait: cons.CachedInfo().Config.AckWait}, nil
}

type delivery struct {
	m       jetstream.Msg
	t       protocol.Task
	ackWait time.Duration
}

func (d *delivery) Task() protocol.Task { return d.t }
func (d *delivery) AckWait() time.Duration {
	if d.ackWait <= 0 {
		return 30 * time.Second
	}
	return d.ackWait
}
func (d *delivery) InProgress() error { return d.m.InProgress() }
func (d *delivery) Ack() error        { return d.m.Ack() }
func (d *delivery) Nak() error        { return d.m.Nak() }

// Publish implements Results. A publish whose connection drops fails at once (the worker
// publishes again; the message id de-duplicates).
func (n *NATS) Publish(ctx context.Context, r protocol.Result) error {
	wctx, stop := natsconn.Watch(ctx, n.nc)
	defer stop()
	_, err := n.js.Publish(wctx, protocol.ResultSubject(r.Job), protocol.Encode(r),
		jetstream.WithMsgID(protocol.ResultMsgID(r.Job, r.Step, r.Shard, r.Attempt, r.Worker)))
	if err != nil && natsconn.Dropped(ctx, wctx) {
		return fmt.Errorf("%w: publishing the result of %s attempt %d: the NATS connection dropped", protocol.ErrUnavailable, r.TaskKey, r.Attempt)
	}
	return err
}

// ringWatch is how often a ring listener checks the connection.
const ringWatch = 50 * time.Millisecond

// Listen implements Ring. The channel is closed when the connection drops: core NATS messages
// sent meanwhile are lost, so the ring cannot complete.
func (n *NATS) Listen(job string, attempt, shard int) (<-chan []byte, func(), error) {
	raw := make(chan *nats.Msg, 4096)
	reconnects := n.nc.Stats().Reconnects
	sub, err := n.nc.ChanSubscribe(protocol.GenSubject(job, attempt, shard), raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: calibration ring of job %s attempt %d: %w", protocol.ErrUnavailable, job, attempt, err)
	}
	if err := n.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("%w: calibration ring of job %s attempt %d: %w", protocol.ErrUnavailable, job, attempt, err)
	}
	out := make(chan []byte, 4096)
	done := make(chan struct{})
	go func() {
		watch := time.NewTicker(ringWatch)
		defer watch.Stop()
		for {
			select {
			case <-done:
				return
			case <-watch.C:
				if !n.nc.IsConnected() || n.nc.Stats().Reconnects != reconnects {
					close(out)
					return
				}
			case m := <-raw:
				select {
				case out <- m.Data:
				case <-done:
					return
				}
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = sub.Unsubscribe()
			close(done)
		})
	}
	return out, stop, nil
}

// Send implements Ring.
func (n *NATS) Send(_ context.Context, job string, attempt, shard int, msg []byte) error {
	if err := n.nc.Publish(protocol.GenSubject(job, attempt, shard), msg); err != nil {
		return fmt.Errorf("%w: calibration ring of job %s attempt %d: sending to shard %d: %w", protocol.ErrUnavailable, job, attempt, shard, err)
	}
	return nil
}
