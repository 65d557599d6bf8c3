// Package natsconn holds what the NATS-facing packages (the artifact store, the worker's
// transports, the coordinator's leader) share about a connection's health.
package natsconn

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
)

// WatchEvery is how often Watch checks the connection.
const WatchEvery = 50 * time.Millisecond

// Watch returns a context that is cancelled, besides when ctx ends, as soon as nc is not
// connected or has reconnected since the call: a request or transfer in flight when the
// connection dropped would otherwise wait out its timeout for a reply that was lost with the
// connection. Dropped reports whether that is why the context ended. A nil nc is never watched.
func Watch(ctx context.Context, nc *nats.Conn) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancel(ctx)
	if nc == nil {
		return wctx, cancel
	}
	r := nc.Stats().Reconnects
	if !nc.IsConnected() {
		cancel()
		return wctx, cancel
	}
	go func() {
		t := time.NewTicker(WatchEvery)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				if !nc.IsConnected() || nc.Stats().Reconnects != r {
					cancel()
					return
				}
			}
		}
	}()
	return wctx, cancel
}

// Dropped reports whether a context from Watch ended because the connection dropped (and not
// because its parent ctx ended).
func Dropped(ctx, watched context.Context) bool { return ctx.Err() == nil && watched.Err() != nil }
