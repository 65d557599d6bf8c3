package artifact

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/iteris-dev/iteris/protocol"
)

// Memory is an in-memory Store for unit tests. It keeps the framed bytes, so Get runs the same
// verification as the JetStream store, and SetRaw lets a test damage them.
type Memory struct {
	enc   Encoding
	limit int64

	mu   sync.Mutex
	jobs map[string]map[protocol.Ref][]byte
}

// NewMemory returns an empty store that frames with enc and accepts contents up to limit bytes
// (0 means DefaultMaxContent).
func NewMemory(enc Encoding, limit int64) (*Memory, error) {
	if err := enc.validate(); err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, fmt.Errorf("artifact: negative content limit %d", limit)
	}
	if limit == 0 {
		limit = DefaultMaxContent
	}
	return &Memory{enc: enc, limit: limit, jobs: map[string]map[protocol.Ref][]byte{}}, nil
}

var _ Store = (*Memory)(nil)

// Put implements Store.
func (m *Memory) Put(ctx context.Context, job string, kind protocol.Kind, content []byte) (protocol.Ref, error) {
	if err := checkArgs(job, kind); err != nil {
		return protocol.Ref{}, err
	}
	if err := ctx.Err(); err != nil {
		return protocol.Ref{}, err
	}
	ref := protocol.RefOf(content)
	m.mu.Lock()
	old, ok := m.jobs[job][ref]
	m.mu.Unlock()
	if ok {
		// An intact copy stays (same kind) or conflicts (another kind); a damaged one is replaced.
		if stored, _, err := protocol.DecodeFrame(old, ref, m.limit); err == nil {
			if stored != kind {
				return ref, fmt.Errorf("artifact %s of job %s: %w: stored as %s, put as %s", ref, job, ErrKindConflict, stored, kind)
			}
			return ref, nil
		}
	}
	f, err := protocol.EncodeFrameRef(kind, ref, content, m.enc.options(kind))
	if err != nil {
		return protocol.Ref{}, err
	}
	m.SetRaw(job, ref, f.Bytes())
	return ref, nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, job string, ref protocol.Ref) (protocol.Kind, []byte, error) {
	if err := checkArgs(job, 0); err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	b, ok := m.Raw(job, ref)
	if !ok {
		return 0, nil, notFound(job, ref)
	}
	kind, content, err := protocol.DecodeFrame(b, ref, m.limit)
	if err != nil {
		return 0, nil, fmt.Errorf("job %s: %w", job, err)
	}
	return kind, content, nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, job string, ref protocol.Ref) error {
	if err := checkArgs(job, 0); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.jobs[job], ref)
	return nil
}

// Ensure checks the job id (a memory store needs no bucket).
func (m *Memory) Ensure(ctx context.Context, job string) error { return checkArgs(job, 0) }

// DropJob implements Store.
func (m *Memory) DropJob(ctx context.Context, job string) error {
	if err := checkArgs(job, 0); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.jobs, job)
	return nil
}

// Jobs returns the jobs that have artifacts, in no particular order.
func (m *Memory) Jobs(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for j, arts := range m.jobs {
		if len(arts) > 0 {
			out = append(out, j)
		}
	}
	return out, nil
}

// Raw returns a copy of the framed bytes stored under ref.
func (m *Memory) Raw(job string, ref protocol.Ref) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.jobs[job][ref]
	return bytes.Clone(b), ok
}

// SetRaw stores b as the framed bytes of ref, unchecked: tests use it to damage an artifact.
func (m *Memory) SetRaw(job string, ref protocol.Ref, b []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.jobs[job] == nil {
		m.jobs[job] = map[protocol.Ref][]byte{}
	}
	m.jobs[job][ref] = bytes.Clone(b)
}
