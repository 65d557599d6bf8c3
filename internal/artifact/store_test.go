package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/natsserver"
	"github.com/iteris-dev/iteris/protocol"
)

// embedded starts an embedded server and returns a connection to it.
func embedded(t testing.TB, maxPayload int32) *nats.Conn {
	t.Helper()
	e, err := natsserver.New(natsserver.Config{Dir: t.TempDir(), MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func jsOf(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func newJetStream(t testing.TB, nc *nats.Conn, cfg artifact.JetStreamConfig) *artifact.JetStream {
	t.Helper()
	s, err := artifact.NewJetStream(jsOf(t, nc), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stores are the implementations every conformance test runs on.
var stores = []struct {
	name string
	make func(t *testing.T) artifact.Store
}{
	{"memory", func(t *testing.T) artifact.Store {
		m, err := artifact.NewMemory(artifact.Encoding{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}},
	{"jetstream", func(t *testing.T) artifact.Store {
		return newJetStream(t, embedded(t, 0), artifact.JetStreamConfig{})
	}},
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// content returns n bytes of a fixed pseudo-random sequence that depends on seed.
func content(n int, seed uint32) []byte {
	b := make([]byte, n)
	x := seed*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func mustGet(t *testing.T, s artifact.Store, job string, ref protocol.Ref, kind protocol.Kind, want []byte) {
	t.Helper()
	k, got, err := s.Get(ctxFor(t), job, ref)
	if err != nil {
		t.Fatalf("Get %s: %v", ref, err)
	}
	if k != kind || !bytes.Equal(got, want) {
		t.Fatalf("Get %s: kind %v, %d bytes; want %v, %d bytes (equal: %v)", ref, k, len(got), kind, len(want), bytes.Equal(got, want))
	}
}

func wantErr(t *testing.T, err, target error, subs ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}
}

func TestStoreRoundTrips(t *testing.T) {
	sizes := []int{0, 1, 1<<20 + 1, 64 << 20}
	kinds := []protocol.Kind{protocol.KindRows, protocol.KindSequences, protocol.KindFactors, protocol.KindRows}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.make(t)
			for i, n := range sizes {
				c := content(n, uint32(i))
				ref, err := s.Put(ctxFor(t), "job-1", kinds[i], c)
				if err != nil {
					t.Fatalf("Put %d bytes: %v", n, err)
				}
				if ref != protocol.RefOf(c) {
					t.Fatalf("Put %d bytes: ref %s, want the content's sha256", n, ref)
				}
				mustGet(t, s, "job-1", ref, kinds[i], c)
				again, err := s.Put(ctxFor(t), "job-1", kinds[i], c)
				if err != nil || again != ref {
					t.Fatalf("second Put: %s, %v", again, err)
				}
			}
		})
	}
}

func TestStoreMissingDeleteAndDrop(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s, ctx := st.make(t), ctxFor(t)
			absent := protocol.RefOf([]byte("never stored"))
			_, _, err := s.Get(ctx, "nojob", absent)
			wantErr(t, err, artifact.ErrNotFound, "nojob")
			a1, _ := s.Put(ctx, "a", protocol.KindRows, []byte("a1"))
			a2, _ := s.Put(ctx, "a", protocol.KindRows, []byte("a2"))
			b1, err := s.Put(ctx, "b", protocol.KindRows, []byte("a1")) // same content, other job
			if err != nil || b1 != a1 {
				t.Fatalf("put in job b: %s, %v", b1, err)
			}
			_, _, err = s.Get(ctx, "a", absent)
			wantErr(t, err, artifact.ErrNotFound, absent.String(), "job a")

			if err := s.Delete(ctx, "a", a2); err != nil {
				t.Fatal(err)
			}
			_, _, err = s.Get(ctx, "a", a2)
			wantErr(t, err, artifact.ErrNotFound, a2.String())
			if err := s.Delete(ctx, "a", a2); err != nil {
				t.Fatalf("deleting again: %v", err)
			}
			if err := s.Delete(ctx, "nojob", a2); err != nil {
				t.Fatalf("deleting in an unknown job: %v", err)
			}
			// Put after Delete stores it again.
			if _, err := s.Put(ctx, "a", protocol.KindRows, []byte("a2")); err != nil {
				t.Fatal(err)
			}
			mustGet(t, s, "a", a2, protocol.KindRows, []byte("a2"))

			if err := s.DropJob(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			for _, r := range []protocol.Ref{a1, a2} {
				_, _, err = s.Get(ctx, "a", r)
				wantErr(t, err, artifact.ErrNotFound)
			}
			mustGet(t, s, "b", b1, protocol.KindRows, []byte("a1"))
			if err := s.DropJob(ctx, "a"); err != nil {
				t.Fatalf("dropping again: %v", err)
			}
			// The job can be used again after a drop.
			if _, err := s.Put(ctx, "a", protocol.KindRows, []byte("a3")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStoreRefusesBadArguments(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s, ctx := st.make(t), ctxFor(t)
			for _, job := range []string{"", "A", "a.b", "a>", "a*", "../x", strings.Repeat("j", 65)} {
				_, err := s.Put(ctx, job, protocol.KindRows, nil)
				wantErr(t, err, protocol.ErrBadJobID)
				_, _, err = s.Get(ctx, job, protocol.Ref{})
				wantErr(t, err, protocol.ErrBadJobID)
				wantErr(t, s.Delete(ctx, job, protocol.Ref{}), protocol.ErrBadJobID)
				wantErr(t, s.DropJob(ctx, job), protocol.ErrBadJobID)
			}
			_, err := s.Put(ctx, "j", protocol.Kind(9), nil)
			wantErr(t, err, protocol.ErrInvalid, "kind 9")
			ref, err := s.Put(ctx, "j", protocol.KindRows, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Put(ctx, "j", protocol.KindFactors, []byte("x"))
			wantErr(t, err, artifact.ErrKindConflict, ref.String(), "stored as rows, put as factors")
		})
	}
}

func TestMemoryCorruption(t *testing.T) {
	m, err := artifact.NewMemory(artifact.Encoding{}, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	c := content(300, 1)
	ref, _ := m.Put(ctx, "j", protocol.KindRows, c)
	frame, _ := m.Raw("j", ref)
	cases := map[string][]byte{
		"flipped":   func() []byte { b := bytes.Clone(frame); b[len(b)-1] ^= 1; return b }(),
		"truncated": frame[:len(frame)-1],
		"other":     []byte("other bytes"),
	}
	for name, b := range cases {
		m.SetRaw("j", ref, b)
		_, _, err := m.Get(ctx, "j", ref)
		if !errors.Is(err, artifact.ErrCorrupt) || !strings.Contains(err.Error(), ref.String()) {
			t.Errorf("%s: %v, want ErrCorrupt naming %s", name, err, ref)
		}
	}
	big, _ := m.Put(ctx, "j", protocol.KindRows, content(2000, 2))
	_, _, err = m.Get(ctx, "j", big)
	wantErr(t, err, artifact.ErrTooLarge, big.String())
}

func TestEncodingIsApplied(t *testing.T) {
	m, err := artifact.NewMemory(artifact.Encoding{Codecs: map[protocol.Kind]protocol.Codec{protocol.KindRows: protocol.CodecShuffle4Zstd}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	zeros := make([]byte, 1<<16)
	for kind, want := range map[protocol.Kind]protocol.Codec{protocol.KindRows: protocol.CodecShuffle4Zstd,
		protocol.KindFactors: protocol.CodecRaw, protocol.KindSequences: protocol.CodecZstd} {
		c := append(slices.Clone(zeros), byte(kind))
		ref, err := m.Put(ctx, "j", kind, c)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := m.Raw("j", ref)
		h, err := protocol.ParseHeader(raw)
		if err != nil || h.Codec != want {
			t.Fatalf("%v stored with %v (%v), want %v", kind, h.Codec, err, want)
		}
		mustGet(t, m, "j", ref, kind, c)
	}
	for _, bad := range []artifact.Encoding{{Level: 9}, {Codecs: map[protocol.Kind]protocol.Codec{protocol.KindRows: 7}}} {
		if _, err := artifact.NewMemory(bad, 0); !errors.Is(err, protocol.ErrInvalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func ExampleMemory() {
	s, _ := artifact.NewMemory(artifact.Encoding{}, 0)
	ctx := context.Background()
	content, _ := protocol.EncodeSequences([][][]int{{{256, 60, 257}}})
	ref, _ := s.Put(ctx, "job-1", protocol.KindSequences, content)
	kind, back, _ := s.Get(ctx, "job-1", ref)
	seqs, _ := protocol.DecodeSequences(back)
	fmt.Println(kind, seqs)
	// Output: sequences [[[256 60 257]]]
}
