package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/client"
	"github.com/iteris-dev/iteris/protocol"
)

// fakeAPI answers status requests from a script of job states (the last one repeats).
type fakeAPI struct {
	mu     sync.Mutex
	states []string
	err    error
	asked  []string
}

func (f *fakeAPI) Status(_ context.Context, job string) (protocol.StatusReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, job)
	if f.err != nil {
		return protocol.StatusReply{}, f.err
	}
	st := f.states[0]
	if len(f.states) > 1 {
		f.states = f.states[1:]
	}
	return protocol.StatusReply{Jobs: []protocol.JobStatus{{Job: job, State: st}}}, nil
}

func TestWaitJobEnd(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name   string
		states []string
		err    error
		held   []string // per poll ("": no shard loaded yet; the last repeats)
		want   error    // nil: returns on its own
		asks   int      // status requests made (at least)
	}{
		{"done after running", []string{"running", "running", "done"}, nil, []string{"j1"}, nil, 3},
		{"failed", []string{"failed"}, nil, []string{"j1"}, nil, 1},
		{"canceled, loaded late", []string{"running", "canceled"}, nil, []string{"", "", "j1"}, nil, 2},
		{"job gone", nil, &client.RefusedError{Code: protocol.CodeNotFound, Message: "no job j1"}, []string{"j1"}, nil, 1},
		{"never held a shard", []string{"done"}, nil, []string{""}, context.DeadlineExceeded, 0},
		{"cluster unreachable", nil, errors.New("no coordinator answered"), []string{"j1"}, context.DeadlineExceeded, 1},
		{"still running", []string{"running"}, nil, []string{"j1"}, context.DeadlineExceeded, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			api := &fakeAPI{states: c.states, err: c.err}
			polls := c.held
			held := func() string {
				r := polls[0]
				if len(polls) > 1 {
					polls = polls[1:]
				}
				return r
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := waitJobEnd(ctx, held, api, time.Millisecond, log)
			if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
				t.Fatalf("waitJobEnd: %v, want %v", err, c.want)
			}
			if len(api.asked) < c.asks || (c.asks == 0 && len(api.asked) > 0) {
				t.Fatalf("asked %d times, want %d", len(api.asked), c.asks)
			}
			for _, j := range api.asked {
				if j != "j1" {
					t.Fatalf("asked about job %q", j)
				}
			}
		})
	}
}

// The tracker remembers the last job loaded after the shard is dropped, and forwards every call.
func TestJobTracker(t *testing.T) {
	rec := &recordingObserver{}
	j := &jobTracker{Observer: rec}
	if j.held() != "" {
		t.Fatalf("held %q before any load", j.held())
	}
	a := protocol.Assignment{ShardRef: protocol.ShardRef{Job: "j7", Shard: 1}}
	j.ShardLoaded(a, 1)
	j.ShardDropped(a.ShardRef)
	j.TaskStarted(protocol.Task{})
	j.TaskEnded(protocol.Task{}, protocol.Result{})
	if j.held() != "j7" || rec.calls != 4 {
		t.Fatalf("held %q after %d forwarded calls", j.held(), rec.calls)
	}
}

type recordingObserver struct{ calls int }

func (r *recordingObserver) ShardLoaded(protocol.Assignment, float64) { r.calls++ }
func (r *recordingObserver) ShardDropped(protocol.ShardRef)           { r.calls++ }
func (r *recordingObserver) TaskStarted(protocol.Task)                { r.calls++ }
func (r *recordingObserver) TaskEnded(protocol.Task, protocol.Result) { r.calls++ }

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"nats://n:4222":                       "nats://n:4222",
		"nats://u:s3cret@n:4222":              "nats://u:xxxxx@n:4222",
		"nats://u:s3cret@a:4222,tls://b:4222": "nats://u:xxxxx@a:4222,tls://b:4222",
		"nats://token@n:4222":                 "nats://xxxxx@n:4222",
		"nats://u:p%zz@n:4222":                "(a URL with credentials that does not parse)",
	} {
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}
