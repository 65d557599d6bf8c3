package coordinator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/iteris-dev/iteris/protocol"
)

// MaxSnapshotSize bounds a snapshot a replica accepts.
const MaxSnapshotSize = 1 << 30

// snapshotVersion is the snapshot format version.
const snapshotVersion = 1

type snapshot struct {
	V     int    `json:"v"`
	State *State `json:"state"`
}

// Snapshot returns the state's snapshot bytes (deterministic: maps encode in key order).
func (s *State) Snapshot() []byte { return protocol.Encode(snapshot{V: snapshotVersion, State: s}) }

// RestoreState decodes a snapshot strictly and checks its references.
func RestoreState(b []byte) (*State, error) {
	if len(b) > MaxSnapshotSize {
		return nil, fmt.Errorf("%w: snapshot of %d bytes (at most %d)", ErrBadCommand, len(b), MaxSnapshotSize)
	}
	var snap snapshot
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&snap); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrBadCommand, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: snapshot: data after the state", ErrBadCommand)
	}
	if snap.V != snapshotVersion || snap.State == nil {
		return nil, fmt.Errorf("%w: snapshot version %d (this build reads %d)", ErrBadCommand, snap.V, snapshotVersion)
	}
	s := snap.State
	if s.Jobs == nil {
		s.Jobs = map[string]*Job{}
	}
	if s.Workers == nil {
		s.Workers = map[string]*Worker{}
	}
	return s, s.check()
}

// check verifies the state's internal references (a snapshot from outside is not trusted).
func (s *State) check() error {
	for _, id := range s.Order {
		if _, ok := s.Jobs[id]; !ok {
			return fmt.Errorf("%w: snapshot orders unknown job %s", ErrBadCommand, id)
		}
	}
	if len(s.Order) != len(s.Jobs) {
		return fmt.Errorf("%w: snapshot has %d jobs but orders %d", ErrBadCommand, len(s.Jobs), len(s.Order))
	}
	for id, j := range s.Jobs {
		if j == nil || j.ID != id || protocol.ValidateJobID(id) != nil {
			return fmt.Errorf("%w: snapshot job %q is malformed", ErrBadCommand, id)
		}
		if j.State == JobQueued {
			continue
		}
		if err := j.Plan.Validate(); err != nil && j.State == JobRunning {
			return err
		}
		if len(j.Tasks) != len(j.Plan.Steps) || (len(j.Shards) != len(j.Plan.Shards) && j.State == JobRunning) {
			return fmt.Errorf("%w: snapshot job %s: tasks or shards do not fit its plan", ErrBadCommand, id)
		}
		for _, ts := range j.Tasks {
			if len(ts) != len(j.Plan.Shards) {
				return fmt.Errorf("%w: snapshot job %s: a step has %d tasks for %d shards", ErrBadCommand, id, len(ts), len(j.Plan.Shards))
			}
			for _, t := range ts {
				if t == nil {
					return fmt.Errorf("%w: snapshot job %s: missing task", ErrBadCommand, id)
				}
			}
		}
	}
	for id, w := range s.Workers {
		if w == nil || w.ID != id || protocol.ValidateName("worker", id) != nil {
			return fmt.Errorf("%w: snapshot worker %q is malformed", ErrBadCommand, id)
		}
	}
	return nil
}
