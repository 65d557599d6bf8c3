package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/natsserver/natstest"
	"github.com/iteris-dev/iteris/protocol"
)

// rawBucket returns the object store of a job, bypassing the artifact store.
func rawBucket(t *testing.T, js jetstream.JetStream, job string) jetstream.ObjectStore {
	t.Helper()
	obs, err := js.ObjectStore(ctxFor(t), artifact.BucketPrefix+job)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

// Overwriting the stored object with other bytes is caught by Get, naming the ref.
func TestJetStreamCorruption(t *testing.T) {
	nc := embedded(t, 0)
	js := jsOf(t, nc)
	s := newJetStream(t, nc, artifact.JetStreamConfig{ChunkSize: 64 << 10})
	ctx := ctxFor(t)
	c := content(200<<10, 7) // four chunks
	ref, err := s.Put(ctx, "j", protocol.KindRows, c)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := protocol.EncodeFrame(protocol.KindRows, c, protocol.EncodeOptions{})
	other, _ := protocol.EncodeFrame(protocol.KindRows, c[1:], protocol.EncodeOptions{})
	flipped := good.Bytes()
	flipped[len(flipped)/2] ^= 0x10
	cases := []struct {
		name  string
		bytes []byte
		sub   string
	}{
		{"garbage", []byte("not a frame at all"), "truncated header"},
		{"another artifact", other.Bytes(), "header names artifact " + other.Header.Ref.String()},
		{"truncated", good.Bytes()[:len(flipped)-1], "truncated payload"},
		{"one bit flipped", flipped, "content sha256 is"},
		{"a byte appended", append(good.Bytes(), 0), "after the payload"},
	}
	obs := rawBucket(t, js, "j")
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			if _, err := obs.PutBytes(ctx, ref.String(), cs.bytes); err != nil {
				t.Fatal(err)
			}
			_, _, err := s.Get(ctx, "j", ref)
			wantErr(t, err, artifact.ErrCorrupt, ref.String(), "job j", cs.sub)
		})
	}
	// Restored, it reads again.
	if _, err := obs.PutBytes(ctx, ref.String(), good.Bytes()); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "j", ref, protocol.KindRows, c)
}

// A chunk lost from the stream under the object: the object store's digest check or the frame
// check reports ErrCorrupt, and Get does not wait for the missing bytes.
func TestJetStreamLostChunk(t *testing.T) {
	nc := embedded(t, 0)
	js := jsOf(t, nc)
	s := newJetStream(t, nc, artifact.JetStreamConfig{ChunkSize: 64 << 10})
	ctx := ctxFor(t)
	c := content(300<<10, 8)
	ref, err := s.Put(ctx, "lost", protocol.KindRows, c)
	if err != nil {
		t.Fatal(err)
	}
	info, err := rawBucket(t, js, "lost").GetInfo(ctx, ref.String())
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+artifact.BucketPrefix+"lost")
	if err != nil {
		t.Fatal(err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, fmt.Sprintf("$O.%s.C.%s", artifact.BucketPrefix+"lost", info.NUID))
	if err != nil {
		t.Fatal(err)
	}
	// The chunks of one put into a fresh bucket are consecutive: delete the middle one.
	if err := stream.DeleteMsg(ctx, last.Sequence-uint64(info.Chunks)/2); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Get(ctx, "lost", ref)
	wantErr(t, err, artifact.ErrCorrupt, ref.String())
}

func TestJetStreamChunking(t *testing.T) {
	nc := embedded(t, 0)
	js := jsOf(t, nc)
	ctx := ctxFor(t)
	c := content(3<<20+5, 9) // frame: 64 + 3 MiB + 5 bytes
	for _, tc := range []struct {
		chunk, want int
	}{{0, 4}, {128 << 10, 25}, {1 << 20, 4}} {
		job := fmt.Sprintf("chunk-%d", tc.chunk)
		s := newJetStream(t, nc, artifact.JetStreamConfig{ChunkSize: tc.chunk})
		ref, err := s.Put(ctx, job, protocol.KindRows, c)
		if err != nil {
			t.Fatal(err)
		}
		obs := rawBucket(t, js, job)
		info, err := obs.GetInfo(ctx, ref.String())
		if err != nil {
			t.Fatal(err)
		}
		if int(info.Chunks) != tc.want || info.Size != uint64(len(c)+protocol.HeaderSize) {
			t.Fatalf("chunk size %d: %d chunks of %d bytes, want %d", tc.chunk, info.Chunks, info.Size, tc.want)
		}
		if info.Metadata["kind"] != "rows" || info.Metadata["codec"] != "raw" || info.Metadata["content_length"] != fmt.Sprint(len(c)) {
			t.Fatalf("metadata %v", info.Metadata)
		}
		// A second Put of the same content is a no-op: the object is not rewritten.
		if _, err := s.Put(ctx, job, protocol.KindRows, c); err != nil {
			t.Fatal(err)
		}
		again, _ := obs.GetInfo(ctx, ref.String())
		if again.NUID != info.NUID {
			t.Fatalf("second Put rewrote the object (nuid %s -> %s)", info.NUID, again.NUID)
		}
		mustGet(t, s, job, ref, protocol.KindRows, c)
	}
}

func TestJetStreamConfig(t *testing.T) {
	nc := embedded(t, 0) // max payload 1 MiB
	js := jsOf(t, nc)
	if _, err := artifact.NewJetStream(js, artifact.JetStreamConfig{ChunkSize: 1<<20 + 1}); err == nil ||
		!strings.Contains(err.Error(), "exceeds the server's max payload") {
		t.Fatalf("chunk over the max payload: %v", err)
	}
	for _, bad := range []artifact.JetStreamConfig{{ChunkSize: -1}, {ChunkSize: 65 << 20}, {MaxContent: -1}, {Replicas: 6},
		{Encoding: artifact.Encoding{Level: -1}}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	big := embedded(t, 8<<20)
	s := newJetStream(t, big, artifact.JetStreamConfig{ChunkSize: 4 << 20, MaxContent: 1000})
	ctx := ctxFor(t)
	c := content(5<<20, 3)
	ref, err := s.Put(ctx, "big", protocol.KindRows, c)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Get(ctx, "big", ref)
	wantErr(t, err, artifact.ErrTooLarge, ref.String(), "limit is 1000")
}

// Two stores on one server: a job dropped through one is recreated by the other's next Put
// (its cached bucket handle is stale), and Jobs lists only artifact buckets.
func TestJetStreamSharedServer(t *testing.T) {
	nc := embedded(t, 0)
	js := jsOf(t, nc)
	s1 := newJetStream(t, nc, artifact.JetStreamConfig{})
	s2 := newJetStream(t, nc, artifact.JetStreamConfig{})
	ctx := ctxFor(t)
	r1, err := s1.Put(ctx, "shared", protocol.KindRows, []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	mustGet(t, s2, "shared", r1, protocol.KindRows, []byte("one"))
	if err := s2.DropJob(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	_, _, err = s1.Get(ctx, "shared", r1)
	wantErr(t, err, artifact.ErrNotFound)
	r2, err := s1.Put(ctx, "shared", protocol.KindRows, []byte("two"))
	if err != nil {
		t.Fatalf("Put after the bucket was dropped elsewhere: %v", err)
	}
	mustGet(t, s2, "shared", r2, protocol.KindRows, []byte("two"))

	if _, err := s1.Put(ctx, "other-job", protocol.KindFactors, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "not-ours"}); err != nil {
		t.Fatal(err)
	}
	jobs, err := s2.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(jobs)
	if !slices.Equal(jobs, []string{"other-job", "shared"}) {
		t.Fatalf("jobs %v", jobs)
	}
}

func TestJetStreamCancelledGet(t *testing.T) {
	nc := embedded(t, 0)
	s := newJetStream(t, nc, artifact.JetStreamConfig{})
	ref, err := s.Put(ctxFor(t), "c", protocol.KindRows, content(4<<20, 4))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = s.Get(ctx, "c", ref)
	if err == nil || errors.Is(err, artifact.ErrCorrupt) {
		t.Fatalf("Get with a cancelled context: %v, want an error that is not ErrCorrupt", err)
	}
}

// The same store over TCP to the nats-server binary.
func TestJetStreamOverTCP(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	s := newJetStream(t, srv.Connect(), artifact.JetStreamConfig{})
	ctx := ctxFor(t)
	for i, n := range []int{0, 1<<20 + 1, 16 << 20} {
		c := content(n, uint32(100+i))
		ref, err := s.Put(ctx, "tcp", protocol.KindRows, c)
		if err != nil {
			t.Fatal(err)
		}
		_, got, err := s.Get(ctx, "tcp", ref)
		if err != nil || !bytes.Equal(got, c) {
			t.Fatalf("%d bytes over TCP: %v", n, err)
		}
	}
}
