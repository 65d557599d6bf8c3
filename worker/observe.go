package worker

import "github.com/iteris-dev/iteris/protocol"

// Observer receives a worker's measurements as they happen (internal/metrics implements it for
// Prometheus). Its methods are called from the worker's loops and must not block.
type Observer interface {
	// ShardLoaded is called when an assigned shard has loaded (seconds: how long the load
	// took), and ShardDropped when the worker lets it go.
	ShardLoaded(a protocol.Assignment, seconds float64)
	ShardDropped(s protocol.ShardRef)
	// TaskStarted and TaskEnded bracket one task attempt; r is its result (Error set when it
	// failed; Stats.Seconds its wall time, BytesIn and BytesOut the artifact bytes it moved).
	TaskStarted(t protocol.Task)
	TaskEnded(t protocol.Task, r protocol.Result)
}

// nopObserver is the Observer of a Config without one.
type nopObserver struct{}

func (nopObserver) ShardLoaded(protocol.Assignment, float64) {}
func (nopObserver) ShardDropped(protocol.ShardRef)           {}
func (nopObserver) TaskStarted(protocol.Task)                {}
func (nopObserver) TaskEnded(protocol.Task, protocol.Result) {}
