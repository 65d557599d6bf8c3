package coordinator

import (
	"errors"
	"strings"
	"testing"
)

// TestLogEntriesAndSnapshotsRefuseOtherVersions: a raft command or a snapshot of another format
// version is refused with both versions named, never applied.
func TestLogEntriesAndSnapshotsRefuseOtherVersions(t *testing.T) {
	c := Command{Type: CmdCancel, At: 1, Job: "j"}
	b := c.Encode()
	if !strings.HasPrefix(string(b), `{"v":1,`) {
		t.Fatalf("a command does not start with its version: %s", b)
	}
	if _, err := DecodeCommand([]byte(`{"type":"cancel","at":1,"job":"j"}`)); err != nil {
		t.Fatalf("an entry without a version (written before it existed) is refused: %v", err)
	}
	_, err := DecodeCommand([]byte(strings.Replace(string(b), `"v":1`, `"v":2`, 1)))
	if !errors.Is(err, ErrBadCommand) || !strings.Contains(err.Error(), "cancel command of version 2 (this build reads 1)") {
		t.Fatalf("command of version 2: %v", err)
	}
	if _, err := DecodeCommand(make([]byte, MaxCommandSize+1)); !errors.Is(err, ErrBadCommand) || !strings.Contains(err.Error(), "(at most 8388608)") {
		t.Fatalf("oversized command: %v", err)
	}
	snap := string(NewState().Snapshot())
	_, err = RestoreState([]byte(strings.Replace(snap, `"v":1`, `"v":2`, 1)))
	if !errors.Is(err, ErrBadCommand) || !strings.Contains(err.Error(), "snapshot version 2 (this build reads 1)") {
		t.Fatalf("snapshot of version 2: %v", err)
	}
}

// TestSnapshotsRefuseUnsafeIDs: a snapshot from a peer whose job or worker ids could escape a
// name is refused.
func TestSnapshotsRefuseUnsafeIDs(t *testing.T) {
	for _, snap := range []string{
		`{"v":1,"state":{"jobs":{"../x":{"id":"../x","state":"queued","spec":{"config":null,"path":"","dir":"","hash":"","method":"","workers":1,"layers":1,"steps":null},"plan":{"shards":null,"steps":null},"tasks":null,"shards":null,"submitted":0}},"order":["../x"],"workers":{},"index":0,"now":0}}`,
		`{"v":1,"state":{"jobs":{},"order":[],"workers":{"../w":{"id":"../w","version":"v","memory":1,"alive":true,"shard":0}},"index":0,"now":0}}`,
	} {
		if _, err := RestoreState([]byte(snap)); !errors.Is(err, ErrBadCommand) || !strings.Contains(err.Error(), "is malformed") {
			t.Errorf("snapshot %s: %v", snap, err)
		}
	}
}
