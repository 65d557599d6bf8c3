package coordinator

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeCommand checks that no log entry makes the decoder or Apply panic.
func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"type":"submit","at":1,"job":"j","spec":{"config":"eA==","path":"","dir":"","hash":"","method":"iteris","workers":1,"layers":4,"steps":[{"kind":"sweep"}]}}`))
	f.Add([]byte(`{"type":"register","at":1,"worker":{"id":"w","memory":5}}`))
	f.Add([]byte(`{"type":"start","at":2,"job":"j","plan":{"shards":[{"lo":0,"hi":4}],"steps":[{"kind":"sweep"}]},"workers":["w"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		s := NewState()
		_ = s.Apply(1, Command{Type: CmdRegister, At: 1, Worker: &WorkerInfo{ID: "w", Memory: 5}})
		_ = s.Apply(2, c)
		if _, err := RestoreState(s.Snapshot()); err != nil {
			t.Fatalf("state after an accepted command does not restore: %v", err)
		}
	})
}

// FuzzRestoreState checks that no snapshot makes the decoder panic.
func FuzzRestoreState(f *testing.F) {
	f.Add(NewState().Snapshot())
	f.Add([]byte(`{"v":1,"state":{"jobs":{"j":{"id":"j","state":"running","spec":{"config":null,"path":"","dir":"","hash":"","method":"","workers":1,"layers":1,"steps":null},"plan":{"shards":[{"lo":0,"hi":1,"memory":0}],"steps":[{"kind":"sweep"}]},"tasks":[[{"state":"pending","attempt":0,"outputs":{},"stats":{"seconds":0,"bytes_in":0,"bytes_out":0}}]],"shards":[{"loaded":false}],"submitted":0}},"order":["j"],"workers":{},"index":0,"now":0}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := RestoreState(b)
		if err != nil {
			return
		}
		_ = Decide(s, Policy{Now: 5, LeaseMS: 1})
		for id := range s.Jobs {
			_ = s.Apply(s.Index+1, Command{Type: CmdCancel, At: 6, Job: id})
		}
	})
}

// memConn is a connection whose peer sent fixed bytes (then EOF); what is written is kept.
type memConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzRaftHello feeds arbitrary first bytes of a raft connection to the accepting side: it never
// panics, reads at most one bounded line, accepts exactly the hello of its own version (and
// answers OK), and answers anything else with a refusal or nothing.
func FuzzRaftHello(f *testing.F) {
	f.Add([]byte(helloPrefix + "v1\n"))
	f.Add([]byte(helloPrefix + "v1\nraft bytes"))
	f.Add([]byte(helloPrefix + "v2\n"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(bytes.Repeat([]byte("a"), 600))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &memConn{r: bytes.NewReader(b)}
		ac := &acceptedConn{Conn: c, s: &streamLayer{version: "v1", log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
		err := ac.handshake()
		want := bytes.HasPrefix(b, []byte(helloPrefix+"v1\n"))
		if (err == nil) != want {
			t.Fatalf("hello %q: %v", b, err)
		}
		if read := len(b) - c.r.Len(); read > maxHello+1 || (want && read != len(helloPrefix)+3) {
			t.Fatalf("read %d bytes of %q", read, b)
		}
		if ans := c.w.String(); (want && ans != "OK\n") || (!want && ans != "" && !strings.HasPrefix(ans, "NO ")) {
			t.Fatalf("answered %q to %q", ans, b)
		}
	})
}
