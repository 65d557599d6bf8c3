package coordinator

import "testing"

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
