package natsserver

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func startEmbedded(t testing.TB, cfg Config) *Embedded {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestEmbeddedJetStream(t *testing.T) {
	e := startEmbedded(t, Config{Dir: t.TempDir(), MaxPayload: 2 << 20})
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := nc.MaxPayload(); got != 2<<20 {
		t.Fatalf("max payload %d, want %d", got, 2<<20)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, "s.1")
	if err != nil || string(msg.Data) != "hello" {
		t.Fatalf("stored message %v, %v", msg, err)
	}
	dir := e.StoreDir()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("store dir: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("store dir %s after Close: %v, want it removed", dir, err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestEmbeddedLifecycleErrors(t *testing.T) {
	e, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Connect(); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Connect before Start: %v", err)
	}
	ctx := context.Background()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start: %v", err)
	}
	e.Close()
	if err := e.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v", err)
	}
	if _, err := e.Connect(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Connect after Close: %v", err)
	}

	// A context that has already ended: Start fails and leaves no directory behind.
	parent := t.TempDir()
	e2, _ := New(Config{Dir: parent})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := e2.Start(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context: %v", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Fatalf("left in the store parent: %v", left)
	}
}

func TestConfigValidate(t *testing.T) {
	file := t.TempDir() + "/f"
	os.WriteFile(file, nil, 0o644)
	for _, c := range []Config{{MaxPayload: -1}, {MaxStore: -1}, {Dir: "/does/not/exist"}, {Dir: file}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// BenchmarkEmbeddedStart measures New + Start (ready for in-process connections with JetStream)
// + Close.
func BenchmarkEmbeddedStart(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	for b.Loop() {
		e, err := New(Config{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		e.Close()
		b.StartTimer()
	}
}
