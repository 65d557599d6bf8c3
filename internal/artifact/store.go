package artifact

import (
	"context"
	"errors"
	"fmt"

	"github.com/iteris-dev/iteris/protocol"
)

// Store is a content-addressed artifact store grouped by job. Callers usually declare the subset
// they use; this interface documents what both implementations provide.
type Store interface {
	// Put stores content of a kind for job and returns its ref. Putting content that is already
	// stored intact stores nothing; a stored copy that fails verification is replaced.
	Put(ctx context.Context, job string, kind protocol.Kind, content []byte) (protocol.Ref, error)
	// Get returns the kind and content stored under ref, verified against the ref.
	Get(ctx context.Context, job string, ref protocol.Ref) (protocol.Kind, []byte, error)
	// Delete removes one artifact; deleting a missing artifact is not an error.
	Delete(ctx context.Context, job string, ref protocol.Ref) error
	// DropJob removes every artifact of job and nothing else; dropping an unknown job is not an
	// error.
	DropJob(ctx context.Context, job string) error
}

// Errors of the stores, besides protocol's ErrCorrupt, ErrTooLarge and ErrVersion (re-exported
// below) for stored bytes that fail verification.
var (
	// ErrNotFound is returned by Get when the job has no artifact under the ref.
	ErrNotFound = errors.New("artifact not found")
	// ErrKindConflict is returned by Put when the content is already stored as another kind.
	ErrKindConflict = errors.New("artifact stored with another kind")
	// ErrCorrupt is protocol.ErrCorrupt: stored bytes do not match their ref or framing.
	ErrCorrupt = protocol.ErrCorrupt
	// ErrTooLarge is protocol.ErrTooLarge: a stored artifact is larger than the store's limit.
	ErrTooLarge = protocol.ErrTooLarge
	// ErrUnavailable is protocol.ErrUnavailable: the server did not answer or the connection
	// dropped (not a verdict on the stored bytes; the call may succeed when repeated).
	ErrUnavailable = protocol.ErrUnavailable
)

// DefaultMaxContent is the default limit on the content length Get accepts (4 GiB).
const DefaultMaxContent = 4 << 30

// Encoding says how a store frames what it puts.
type Encoding struct {
	// Codecs overrides protocol.DefaultCodec for some kinds.
	Codecs map[protocol.Kind]protocol.Codec
	// Level is the zstd level of the zstd codecs (protocol.LevelDefault when zero).
	Level protocol.Level
}

// options returns the frame options for kind.
func (e Encoding) options(kind protocol.Kind) protocol.EncodeOptions {
	c, ok := e.Codecs[kind]
	if !ok {
		c = protocol.DefaultCodec(kind)
	}
	return protocol.EncodeOptions{Codec: c, Level: e.Level}
}

// validate checks the codecs and the level.
func (e Encoding) validate() error {
	for k, c := range e.Codecs {
		if !k.Valid() || !c.Valid() {
			return fmt.Errorf("artifact: codec %v for kind %v: %w", c, k, protocol.ErrInvalid)
		}
	}
	if e.Level < protocol.LevelDefault || e.Level > protocol.LevelBest {
		return fmt.Errorf("artifact: zstd level %d (want 0-%d): %w", e.Level, protocol.LevelBest, protocol.ErrInvalid)
	}
	return nil
}

// checkArgs validates a job id and, when kind is not zero, a kind.
func checkArgs(job string, kind protocol.Kind) error {
	if err := protocol.ValidateJobID(job); err != nil {
		return fmt.Errorf("artifact: %w", err)
	}
	if kind != 0 && !kind.Valid() {
		return fmt.Errorf("artifact: kind %d: %w", uint8(kind), protocol.ErrInvalid)
	}
	return nil
}

func notFound(job string, ref protocol.Ref) error {
	return fmt.Errorf("artifact %s of job %s: %w", ref, job, ErrNotFound)
}
