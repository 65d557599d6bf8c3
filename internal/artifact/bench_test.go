package artifact_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/natsserver/natstest"
	"github.com/iteris-dev/iteris/protocol"
)

// BenchmarkJetStream measures Put and Get (raw codec, verified) of 1, 16 and 256 MiB artifacts
// with 128 KiB and 1 MiB chunks, on the embedded server (in-process connection) and on the
// nats-server binary over loopback TCP. MB/s is content bytes per second.
//
// go test ./internal/artifact -run '^$' -bench JetStream -benchtime 3x
func BenchmarkJetStream(b *testing.B) {
	for _, server := range []string{"embedded", "tcp"} {
		b.Run(server, func(b *testing.B) {
			nc := embedded(b, 0)
			if server == "tcp" {
				nc = natstest.Start(b, natstest.Options{}).Connect()
			}
			for _, size := range []int{1 << 20, 16 << 20, 256 << 20} {
				c := content(size, uint32(size))
				for _, chunk := range []int{128 << 10, 1 << 20} {
					s := newJetStream(b, nc, artifact.JetStreamConfig{ChunkSize: chunk})
					name := fmt.Sprintf("%dMiB/chunk%dKiB", size>>20, chunk>>10)
					benchPutGet(b, s, name, c)
				}
			}
		})
	}
}

func benchPutGet(b *testing.B, s *artifact.JetStream, name string, c []byte) {
	ctx := context.Background()
	const job = "bench"
	ref := protocol.RefOf(c)
	b.Run("put/"+name, func(b *testing.B) {
		b.SetBytes(int64(len(c)))
		for b.Loop() {
			if _, err := s.Put(ctx, job, protocol.KindRows, c); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := s.Delete(ctx, job, ref); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	if _, err := s.Put(ctx, job, protocol.KindRows, c); err != nil {
		b.Fatal(err)
	}
	b.Run("get/"+name, func(b *testing.B) {
		b.SetBytes(int64(len(c)))
		for b.Loop() {
			if _, _, err := s.Get(ctx, job, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
	if err := s.DropJob(ctx, job); err != nil {
		b.Fatal(err)
	}
}
