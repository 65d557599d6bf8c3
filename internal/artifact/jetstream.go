package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/natsconn"
	"github.com/iteris-dev/iteris/protocol"
)

// BucketPrefix starts the name of every job's object store bucket: the bucket of job J is
// BucketPrefix + J (its stream is "OBJ_" + that).
const BucketPrefix = "iteris-art-"

// DefaultChunkSize is the default object chunk size: 1 MiB, the server's default max payload.
// The brief measured 1 MiB chunks as never refused where 8 MiB ones met "429 too many requests";
// BenchmarkJetStream compares it with nats.go's default of 128 KiB.
const DefaultChunkSize = 1 << 20

// JetStreamConfig configures a JetStream store.
type JetStreamConfig struct {
	// ChunkSize is the object chunk size in bytes (0: DefaultChunkSize). It must not exceed the
	// connection's max payload.
	ChunkSize int
	// MaxContent is the largest content length Get accepts (0: DefaultMaxContent).
	MaxContent int64
	// Replicas is the number of replicas of each job's bucket (0: 1).
	Replicas int
	// Encoding selects the codecs.
	Encoding Encoding
}

// Validate checks the configuration on its own (NewJetStream also checks the chunk size against
// the connection's max payload).
func (c JetStreamConfig) Validate() error {
	switch {
	case c.ChunkSize < 0 || c.ChunkSize > 64<<20:
		return fmt.Errorf("artifact: chunk size %d (want 1 B - 64 MiB, or 0 for the default)", c.ChunkSize)
	case c.MaxContent < 0:
		return fmt.Errorf("artifact: negative content limit %d", c.MaxContent)
	case c.Replicas < 0 || c.Replicas > 5:
		return fmt.Errorf("artifact: %d replicas (want 1-5, or 0 for 1)", c.Replicas)
	}
	return c.Encoding.validate()
}

// JetStream is a Store on a JetStream object store: one bucket (file storage) per job, one object
// per artifact named by its ref. It does not own the connection.
type JetStream struct {
	js  jetstream.JetStream
	cfg JetStreamConfig

	mu      sync.Mutex
	buckets map[string]jetstream.ObjectStore
}

var _ Store = (*JetStream)(nil)

// NewJetStream returns a store on js. It does no I/O.
func NewJetStream(js jetstream.JetStream, cfg JetStreamConfig) (*JetStream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.MaxContent == 0 {
		cfg.MaxContent = DefaultMaxContent
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if nc := js.Conn(); nc != nil && nc.MaxPayload() > 0 && int64(cfg.ChunkSize) > nc.MaxPayload() {
		return nil, fmt.Errorf("artifact: chunk size %d exceeds the server's max payload of %d bytes", cfg.ChunkSize, nc.MaxPayload())
	}
	return &JetStream{js: js, cfg: cfg, buckets: map[string]jetstream.ObjectStore{}}, nil
}

// bucket returns the object store of job, creating it when create is set, and whether the handle
// came from the cache. Without create, a missing bucket is ErrNotFound.
func (s *JetStream) bucket(ctx context.Context, job string, create bool) (jetstream.ObjectStore, bool, error) {
	s.mu.Lock()
	obs, ok := s.buckets[job]
	s.mu.Unlock()
	if ok {
		return obs, true, nil
	}
	name := BucketPrefix + job
	obs, err := s.js.ObjectStore(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		obs, err = s.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: name,
			Description: "iteris artifacts of job " + job, Storage: jetstream.FileStorage, Replicas: s.cfg.Replicas})
		if errors.Is(err, jetstream.ErrBucketExists) { // created concurrently
			obs, err = s.js.ObjectStore(ctx, name)
		}
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, fmt.Errorf("job %s: %w: no artifact bucket", job, ErrNotFound)
	}
	if err != nil {
		return nil, false, unavailable(ctx, fmt.Errorf("artifact bucket %s: %w", name, err))
	}
	s.mu.Lock()
	s.buckets[job] = obs
	s.mu.Unlock()
	return obs, false, nil
}

// withBucket runs f on the job's bucket. When f fails on a cached handle in a way that may mean
// the bucket was deleted elsewhere (its stream is gone, or nothing answers its subjects), the
// handle is dropped and f runs once more on a fresh lookup, which tells a missing bucket from a
// server that does not answer.
func (s *JetStream) withBucket(ctx context.Context, job string, create bool, f func(jetstream.ObjectStore) error) error {
	for attempt := 0; ; attempt++ {
		obs, cached, err := s.bucket(ctx, job, create)
		if err != nil {
			return err
		}
		err = f(obs)
		if err != nil && cached && attempt == 0 && (gone(err) || errors.Is(err, nats.ErrNoResponders)) {
			s.forget(job)
			continue
		}
		return err
	}
}

// forget drops a cached bucket handle (after DropJob, or when its stream has vanished).
func (s *JetStream) forget(job string) {
	s.mu.Lock()
	delete(s.buckets, job)
	s.mu.Unlock()
}

// gone reports whether err says the bucket's stream no longer exists.
func gone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

// Put implements Store. When an object of the ref exists it is read back and verified (as Get
// does): intact, Put only compares its kind and returns; damaged (corrupt, truncated, of another
// format version), it is replaced by the new upload, so the producer of a corrupt artifact
// repairs it by running again.
func (s *JetStream) Put(ctx context.Context, job string, kind protocol.Kind, content []byte) (protocol.Ref, error) {
	if err := checkArgs(job, kind); err != nil {
		return protocol.Ref{}, err
	}
	ref := protocol.RefOf(content)
	wctx, cancel := natsconn.Watch(ctx, s.js.Conn())
	defer cancel()
	err := s.withBucket(wctx, job, true, func(obs jetstream.ObjectStore) error {
		return s.put(wctx, obs, job, kind, ref, content)
	})
	if err != nil {
		return protocol.Ref{}, dropped(ctx, wctx, err)
	}
	return ref, nil
}

// dropped reports err as ErrUnavailable when the connection dropped during the call: whatever
// the call saw then (a timeout, a stream cut short that looks truncated) is no verdict on the
// stored bytes.
func dropped(ctx, wctx context.Context, err error) error {
	if natsconn.Dropped(ctx, wctx) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: the NATS connection dropped during the call: %v", ErrUnavailable, err)
	}
	return err
}

func (s *JetStream) put(ctx context.Context, obs jetstream.ObjectStore, job string, kind protocol.Kind, ref protocol.Ref, content []byte) error {
	name := ref.String()
	_, err := obs.GetInfo(ctx, name)
	switch {
	case err == nil:
		stored, _, err := s.get(ctx, obs, job, ref)
		switch {
		case err == nil && stored != kind:
			return fmt.Errorf("artifact %s of job %s: %w: stored as %s, put as %s", ref, job, ErrKindConflict, stored, kind)
		case err == nil:
			return nil
		case !damaged(err):
			return err
		}
		// The stored object fails verification: upload it again over the damaged one.
	case !errors.Is(err, jetstream.ErrObjectNotFound):
		return unavailable(ctx, fmt.Errorf("artifact %s of job %s: looking it up: %w", ref, job, err))
	}
	opt := s.cfg.Encoding.options(kind)
	f, err := protocol.EncodeFrameRef(kind, ref, content, opt)
	if err != nil {
		return err
	}
	meta := jetstream.ObjectMeta{Name: name,
		Metadata: map[string]string{"kind": kind.String(), "codec": opt.Codec.String(),
			"content_length": strconv.Itoa(len(content))},
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(s.cfg.ChunkSize)}}
	if _, err := obs.Put(ctx, meta, fullReader{f.Reader()}); err != nil {
		return unavailable(ctx, fmt.Errorf("artifact %s of job %s: storing %d bytes: %w", ref, job, f.Header.FrameLen(), err))
	}
	return nil
}

// damaged reports whether a Get error is a verdict on the stored bytes (or their absence), as
// opposed to a failure to read them.
func damaged(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge) || errors.Is(err, protocol.ErrVersion) || errors.Is(err, ErrNotFound)
}

// unavailable marks err as a failure to reach the server (ErrUnavailable), unless it is the
// caller's context ending or already says so.
func unavailable(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// fullReader fills every Read as far as the underlying reader allows, so the object store, which
// sends one chunk per Read, sends full chunks (a MultiReader would send the header on its own).
type fullReader struct{ r io.Reader }

func (f fullReader) Read(p []byte) (int, error) {
	n, err := io.ReadFull(f.r, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

// Get implements Store: it streams the object (never GetBytes) into protocol.ReadFrame, which
// verifies it. The object store's own digest mismatch is reported as ErrCorrupt too.
func (s *JetStream) Get(ctx context.Context, job string, ref protocol.Ref) (protocol.Kind, []byte, error) {
	if err := checkArgs(job, 0); err != nil {
		return 0, nil, err
	}
	var kind protocol.Kind
	var content []byte
	wctx, cancel := natsconn.Watch(ctx, s.js.Conn())
	defer cancel()
	err := s.withBucket(wctx, job, false, func(obs jetstream.ObjectStore) error {
		var err error
		kind, content, err = s.get(wctx, obs, job, ref)
		return err
	})
	if err != nil {
		return 0, nil, dropped(ctx, wctx, err)
	}
	return kind, content, nil
}

func (s *JetStream) get(ctx context.Context, obs jetstream.ObjectStore, job string, ref protocol.Ref) (protocol.Kind, []byte, error) {
	res, err := obs.Get(ctx, ref.String())
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return 0, nil, notFound(job, ref)
	case err != nil:
		return 0, nil, unavailable(ctx, fmt.Errorf("artifact %s of job %s: %w", ref, job, err))
	}
	defer res.Close()
	kind, content, err := protocol.ReadFrame(res, ref, s.cfg.MaxContent)
	switch {
	case errors.Is(err, jetstream.ErrDigestMismatch) && !errors.Is(err, ErrCorrupt):
		return 0, nil, fmt.Errorf("job %s: %w: %w", job, ErrCorrupt, err)
	case err != nil && !damaged(err) && !errors.Is(err, protocol.ErrInvalid):
		// The stream broke off (a dropped connection, a timeout): not a verdict on the bytes.
		return 0, nil, unavailable(ctx, fmt.Errorf("job %s: %w", job, err))
	case err != nil:
		return 0, nil, fmt.Errorf("job %s: %w", job, err)
	}
	return kind, content, nil
}

// Delete implements Store.
func (s *JetStream) Delete(ctx context.Context, job string, ref protocol.Ref) error {
	if err := checkArgs(job, 0); err != nil {
		return err
	}
	err := s.withBucket(ctx, job, false, func(obs jetstream.ObjectStore) error {
		err := obs.Delete(ctx, ref.String())
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil
		}
		return err
	})
	if err == nil || errors.Is(err, ErrNotFound) {
		return nil
	}
	return fmt.Errorf("artifact %s of job %s: deleting: %w", ref, job, err)
}

// Ensure creates the job's bucket when it does not exist. The coordinator calls it when it
// accepts a job, so workers need no permission to create streams (deploy/nats/iteris.conf).
func (s *JetStream) Ensure(ctx context.Context, job string) error {
	if err := checkArgs(job, 0); err != nil {
		return err
	}
	_, _, err := s.bucket(ctx, job, true)
	return err
}

// DropJob implements Store: it deletes the job's bucket (and its stream).
func (s *JetStream) DropJob(ctx context.Context, job string) error {
	if err := checkArgs(job, 0); err != nil {
		return err
	}
	s.forget(job)
	err := s.js.DeleteObjectStore(ctx, BucketPrefix+job)
	if err == nil || gone(err) {
		return nil
	}
	return fmt.Errorf("artifact bucket of job %s: deleting: %w", job, err)
}

// Jobs returns the jobs that have an artifact bucket on the server (for cleaning up after jobs
// whose end was missed), sorted as the server lists them.
func (s *JetStream) Jobs(ctx context.Context) ([]string, error) {
	l := s.js.ObjectStoreNames(ctx)
	var out []string
	for name := range l.Name() {
		if job, ok := strings.CutPrefix(name, BucketPrefix); ok && protocol.ValidateJobID(job) == nil {
			out = append(out, job)
		}
	}
	if err := l.Error(); err != nil {
		return nil, fmt.Errorf("listing artifact buckets: %w", err)
	}
	return out, nil
}
