package natsconn

import (
	"context"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/natsserver"
)

// A watched context ends when the connection closes, and Dropped says why; a context whose
// parent ended is not Dropped.
func TestWatch(t *testing.T) {
	e, err := natsserver.New(natsserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	nc, err := e.Connect()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, cancel := Watch(ctx, nc)
	defer cancel()
	select {
	case <-w.Done():
		t.Fatal("the watched context ended while connected")
	case <-time.After(3 * WatchEvery):
	}
	nc.Close()
	select {
	case <-w.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the watched context did not end when the connection closed")
	}
	if !Dropped(ctx, w) {
		t.Fatal("Dropped is false after the connection closed")
	}
	w2, cancel2 := Watch(ctx, nc)
	defer cancel2()
	if w2.Err() == nil || !Dropped(ctx, w2) {
		t.Fatal("a watch of a closed connection is not ended at once")
	}
	parent, stop := context.WithCancel(ctx)
	w3, cancel3 := Watch(parent, nil)
	defer cancel3()
	stop()
	<-w3.Done()
	if Dropped(parent, w3) {
		t.Fatal("a parent that ended counts as a dropped connection")
	}
}
