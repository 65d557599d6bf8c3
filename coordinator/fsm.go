package coordinator

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// fsm is the thin raft.FSM around State: it decodes log entries and applies them under a lock;
// readers take a consistent view with view.
type fsm struct {
	mu      sync.RWMutex
	state   *State
	applied chan struct{} // closed and replaced after every apply (wakes the scheduler)
}

func newFSM() *fsm { return &fsm{state: NewState(), applied: make(chan struct{})} }

// Apply implements raft.FSM. The response is the command's error (nil when applied).
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	c, err := DecodeCommand(l.Data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = f.state.Apply(l.Index, c)
	} else if l.Index > f.state.Index {
		f.state.Index = l.Index
	}
	close(f.applied)
	f.applied = make(chan struct{})
	return err
}

// view runs fn with the state under the read lock; fn must not keep references.
func (f *fsm) view(fn func(s *State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.state)
}

// changed returns a channel closed at the next apply.
func (f *fsm) changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

// Snapshot implements raft.FSM.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return snapshotBytes(f.state.Snapshot()), nil
}

// Restore implements raft.FSM.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("coordinator: reading snapshot: %w", err)
	}
	s, err := RestoreState(b)
	if err != nil {
		return fmt.Errorf("coordinator: restoring snapshot: %w", err)
	}
	f.mu.Lock()
	f.state = s
	close(f.applied)
	f.applied = make(chan struct{})
	f.mu.Unlock()
	return nil
}

// snapshotBytes is a raft.FSMSnapshot of encoded state.
type snapshotBytes []byte

func (b snapshotBytes) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(b); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (b snapshotBytes) Release() {}
