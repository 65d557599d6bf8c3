package artifact_test

import (
	"testing"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/protocol"
)

// damage is one way a stored frame goes bad.
var damages = []struct {
	name string
	fn   func(frame []byte) []byte
	sub  string
}{
	{"wrong bytes for the hash", func(f []byte) []byte {
		f = append([]byte(nil), f...)
		f[len(f)-3] ^= 0x40
		return f
	}, "content sha256 is"},
	{"truncated", func(f []byte) []byte { return append([]byte(nil), f[:len(f)/2]...) }, "the header declares"},
}

// A Put of content whose stored copy is damaged replaces it (the producer of a corrupt artifact
// repairs it by running again); a Put over an intact copy stores nothing.
func TestPutRepairsDamagedArtifact(t *testing.T) {
	c := content(300<<10, 11)
	good, err := protocol.EncodeFrame(protocol.KindRows, c, protocol.EncodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range damages {
		t.Run("memory/"+d.name, func(t *testing.T) {
			m, err := artifact.NewMemory(artifact.Encoding{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxFor(t)
			ref, err := m.Put(ctx, "j", protocol.KindRows, c)
			if err != nil {
				t.Fatal(err)
			}
			m.SetRaw("j", ref, d.fn(good.Bytes()))
			_, _, err = m.Get(ctx, "j", ref)
			wantErr(t, err, artifact.ErrCorrupt, ref.String(), d.sub)
			if _, err := m.Put(ctx, "j", protocol.KindRows, c); err != nil {
				t.Fatalf("Put over the damaged copy: %v", err)
			}
			mustGet(t, m, "j", ref, protocol.KindRows, c)
		})
		t.Run("jetstream/"+d.name, func(t *testing.T) {
			nc := embedded(t, 0)
			js := jsOf(t, nc)
			s := newJetStream(t, nc, artifact.JetStreamConfig{ChunkSize: 64 << 10})
			ctx := ctxFor(t)
			ref, err := s.Put(ctx, "j", protocol.KindRows, c)
			if err != nil {
				t.Fatal(err)
			}
			obs := rawBucket(t, js, "j")
			if _, err := obs.PutBytes(ctx, ref.String(), d.fn(good.Bytes())); err != nil {
				t.Fatal(err)
			}
			_, _, err = s.Get(ctx, "j", ref)
			wantErr(t, err, artifact.ErrCorrupt, ref.String())
			if _, err := s.Put(ctx, "j", protocol.KindRows, c); err != nil {
				t.Fatalf("Put over the damaged copy: %v", err)
			}
			mustGet(t, s, "j", ref, protocol.KindRows, c)
			repaired, err := obs.GetInfo(ctx, ref.String())
			if err != nil {
				t.Fatal(err)
			}
			if repaired.Metadata["kind"] != "rows" {
				t.Errorf("repaired object's metadata %v, want kind rows", repaired.Metadata)
			}
			if _, err := s.Put(ctx, "j", protocol.KindRows, c); err != nil {
				t.Fatal(err)
			}
			again, err := obs.GetInfo(ctx, ref.String())
			if err != nil {
				t.Fatal(err)
			}
			if again.NUID != repaired.NUID {
				t.Errorf("a Put over the intact copy rewrote it (nuid %s -> %s)", repaired.NUID, again.NUID)
			}
		})
	}
}

// A store whose connection is gone reports ErrUnavailable (the call may succeed later), not
// ErrCorrupt or ErrNotFound.
func TestJetStreamUnavailable(t *testing.T) {
	nc := embedded(t, 0)
	s := newJetStream(t, nc, artifact.JetStreamConfig{})
	ctx := ctxFor(t)
	ref, err := s.Put(ctx, "j", protocol.KindRows, []byte("rows"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	_, _, err = s.Get(ctx, "j", ref)
	wantErr(t, err, artifact.ErrUnavailable, ref.String())
	_, err = s.Put(ctx, "j", protocol.KindRows, []byte("more rows"))
	wantErr(t, err, artifact.ErrUnavailable, "job j")
	_, _, err = s.Get(ctx, "other", ref)
	wantErr(t, err, artifact.ErrUnavailable, "other")
}
