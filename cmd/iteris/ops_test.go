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
	held := &protocol.ShardRef{Job: "j1", Shard: 0}
	for _, c := range []struct {
		name   string
		states []string
		err    error
		loaded []*protocol.ShardRef // per poll; nil = no shard (the last repeats)
		want   error                // nil: returns on its own
		asks   int                  // status requests made (at least)
	}{
		{"done after running", []string{"running", "running", "done"}, nil, []*protocol.ShardRef{held}, nil, 3},
		{"failed", []string{"failed"}, nil, []*protocol.ShardRef{held}, nil, 1},
		{"canceled after the shard was dropped", []string{"running", "canceled"}, nil, []*protocol.ShardRef{held, nil}, nil, 2},
		{"job gone", nil, &client.RefusedError{Code: protocol.CodeNotFound, Message: "no job j1"}, []*protocol.ShardRef{held}, nil, 1},
		{"never held a shard", []string{"done"}, nil, []*protocol.ShardRef{nil}, context.DeadlineExceeded, 0},
		{"cluster unreachable", nil, errors.New("no coordinator answered"), []*protocol.ShardRef{held}, context.DeadlineExceeded, 1},
		{"still running", []string{"running"}, nil, []*protocol.ShardRef{held}, context.DeadlineExceeded, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			api := &fakeAPI{states: c.states, err: c.err}
			polls := c.loaded
			loaded := func() *protocol.ShardRef {
				r := polls[0]
				if len(polls) > 1 {
					polls = polls[1:]
				}
				return r
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := waitJobEnd(ctx, loaded, api, time.Millisecond, log)
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
