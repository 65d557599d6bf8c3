// Package client is the job API's caller side: submit a merge config to a cluster, wait for it
// with progress, fetch the output files and write OUT_DIR. `iteris submit` and `iteris status`
// use it, and so does the embedded `iteris merge`, which runs a cluster in its own process.
package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/natsconn"
	"github.com/iteris-dev/iteris/protocol"
)

// Errors of the client.
var (
	// ErrRefused is returned when the cluster refuses a request (the message says why; an
	// invalid config gives the same message as `iteris merge`).
	ErrRefused = errors.New("refused by the cluster")
	// ErrJobFailed is returned by Wait for a job that failed or was canceled.
	ErrJobFailed = errors.New("merge job failed")
)

// RefusedError is a request the cluster refused; its message is the cluster's (an invalid config
// gives exactly the message `iteris merge` gives). It matches ErrRefused.
type RefusedError struct {
	Code    protocol.Code
	Message string
}

func (e *RefusedError) Error() string { return e.Message }

// Is makes a RefusedError match ErrRefused.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Store is the part of the artifact store the client reads.
type Store interface {
	Get(ctx context.Context, job string, ref protocol.Ref) (protocol.Kind, []byte, error)
}

// Client talks to a cluster's job API over NATS.
type Client struct {
	nc    *nats.Conn
	store Store
	// Retry is the pause between attempts while no coordinator answers (default 200 ms).
	Retry time.Duration
	// Poll is the status polling period while waiting (default 250 ms).
	Poll time.Duration
}

// New returns a client.
func New(nc *nats.Conn, store Store) *Client {
	return &Client{nc: nc, store: store, Retry: 200 * time.Millisecond, Poll: 250 * time.Millisecond}
}

// request sends a request to the leader, retrying while no coordinator answers (an election),
// the answering one does not lead (or lost the lead while serving it), or it could not reach the
// artifact store, until ctx ends.
func (c *Client) request(ctx context.Context, subject string, v any, decode func([]byte) (*protocol.Error, error)) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		wctx, stop := natsconn.Watch(rctx, c.nc)
		m, err := c.nc.RequestWithContext(wctx, subject, protocol.Encode(v))
		lost := natsconn.Dropped(rctx, wctx) // the connection dropped: ask again once it is back
		stop()
		cancel()
		if err != nil && lost {
			err = context.DeadlineExceeded
		}
		if err == nil {
			perr, derr := decode(m.Data)
			if derr != nil {
				return derr
			}
			if perr == nil {
				return nil
			}
			if perr.Code != protocol.CodeNotLeader && perr.Code != protocol.CodeUnavailable {
				return &RefusedError{Code: perr.Code, Message: perr.Message}
			}
		} else if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("%s: %w", subject, err)
		} else if perr := c.refused(subject); perr != nil {
			// No answer because the server's permissions refused the request or its reply.
			return perr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no coordinator answered: %w", subject, ctx.Err())
		case <-time.After(c.Retry):
		}
	}
}

// refused returns the connection's last error when it is a permissions violation of the request
// subject or of this connection's reply inbox.
func (c *Client) refused(subject string) error {
	err := c.nc.LastError()
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	if msg := err.Error(); strings.Contains(msg, `"`+subject+`"`) || strings.Contains(msg, "Subscription to") {
		return fmt.Errorf("%s: %w (the NATS user may not use the job API)", subject, err)
	}
	return nil
}

// Submit submits a merge and returns the job id. The submission gets a random request id (unless
// it has one), so that sending it again after a leader change cannot start a second job.
func (c *Client) Submit(ctx context.Context, sub protocol.Submit) (string, error) {
	sub.Head = protocol.NewHead()
	if sub.Request == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		sub.Request = hex.EncodeToString(b[:])
	}
	var job string
	err := c.request(ctx, protocol.SubjectSubmit, sub, func(b []byte) (*protocol.Error, error) {
		r, err := protocol.DecodeSubmitReply(b)
		if err != nil {
			if rep, rerr := protocol.DecodeReply(b); rerr == nil && rep.Error != nil {
				return rep.Error, nil
			}
			return nil, err
		}
		job = r.Job
		return r.Error, nil
	})
	return job, err
}

// Status returns the cluster's status (one job, or all when job is "").
func (c *Client) Status(ctx context.Context, job string) (protocol.StatusReply, error) {
	return c.status(ctx, job, false)
}

// StatusEvents is Status with each job's event history (which leader dispatched, committed or
// ignored which task attempt, and the takeovers).
func (c *Client) StatusEvents(ctx context.Context, job string) (protocol.StatusReply, error) {
	return c.status(ctx, job, true)
}

func (c *Client) status(ctx context.Context, job string, events bool) (protocol.StatusReply, error) {
	var out protocol.StatusReply
	err := c.request(ctx, protocol.SubjectStatus, protocol.JobRequest{Head: protocol.NewHead(), Job: job, Events: events}, func(b []byte) (*protocol.Error, error) {
		r, err := protocol.DecodeStatusReply(b)
		out = r
		return r.Error, err
	})
	return out, err
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, job string) error {
	return c.request(ctx, protocol.SubjectCancel, protocol.JobRequest{Head: protocol.NewHead(), Job: job}, func(b []byte) (*protocol.Error, error) {
		r, err := protocol.DecodeReply(b)
		return r.Error, err
	})
}

// Wait waits until a job ends, calling progress (if set) whenever its status changes, and
// returns its final status; a failed or canceled job is an ErrJobFailed error.
func (c *Client) Wait(ctx context.Context, job string, progress func(protocol.JobStatus)) (protocol.JobStatus, error) {
	events := make(chan *nats.Msg, 64)
	sub, err := c.nc.ChanSubscribe(protocol.EventSubject(job), events)
	if err == nil {
		defer sub.Unsubscribe()
	}
	var last protocol.JobStatus
	for {
		st, err := c.Status(ctx, job)
		if err != nil {
			return last, err
		}
		if len(st.Jobs) == 1 {
			js := st.Jobs[0]
			if progress != nil && (js.TasksDone != last.TasksDone || js.State != last.State || js.Tasks != last.Tasks) {
				progress(js)
			}
			last = js
			switch coordinator.JobState(js.State) {
			case coordinator.JobDone:
				return js, nil
			case coordinator.JobFailed, coordinator.JobCanceled:
				return js, fmt.Errorf("%w: job %s %s: %s", ErrJobFailed, job, js.State, js.Error)
			}
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-events:
		case <-time.After(c.Poll):
		}
	}
}

// Fetch returns a done job's output files.
func (c *Client) Fetch(ctx context.Context, job string) ([]protocol.File, error) {
	var ref protocol.Ref
	err := c.request(ctx, protocol.SubjectFetch, protocol.JobRequest{Head: protocol.NewHead(), Job: job}, func(b []byte) (*protocol.Error, error) {
		r, err := protocol.DecodeFetchReply(b)
		if err != nil {
			if rep, rerr := protocol.DecodeReply(b); rerr == nil && rep.Error != nil {
				return rep.Error, nil
			}
			return nil, err
		}
		ref = r.Files
		return r.Error, nil
	})
	if err != nil {
		return nil, err
	}
	kind, content, err := c.store.Get(ctx, coordinator.ResultsJob(job), ref)
	for errors.Is(err, protocol.ErrUnavailable) && ctx.Err() == nil {
		// NATS is restarting: read again once it is back.
		select {
		case <-ctx.Done():
		case <-time.After(c.Retry):
		}
		kind, content, err = c.store.Get(ctx, coordinator.ResultsJob(job), ref)
	}
	if err != nil {
		return nil, fmt.Errorf("job %s: output files %s: %w", job, ref, err)
	}
	if kind != protocol.KindFiles {
		return nil, fmt.Errorf("job %s: output %s is a %s artifact", job, ref, kind)
	}
	return protocol.DecodeFiles(content)
}
