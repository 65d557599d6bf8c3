package output

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFilesRefusesUnsafeNames: the file names of a cluster's output come from the network;
// one that is not a plain file name is refused and nothing is written anywhere.
func TestWriteFilesRefusesUnsafeNames(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	for _, name := range []string{"../evil", "a/b", "/etc/evil", "..", ".", "", `a\b`, "x\x00y"} {
		err := WriteFiles(context.Background(), out, false, map[string][]byte{"README.md": []byte("ok"), name: []byte("evil")})
		if err == nil || !strings.Contains(err.Error(), "is not a plain file name") {
			t.Errorf("name %q: %v", name, err)
		}
	}
	ents, err := os.ReadDir(parent)
	if err != nil || len(ents) != 0 {
		t.Fatalf("the refused writes left %v (%v)", ents, err)
	}
	if err := WriteFiles(context.Background(), out, false, map[string][]byte{"README.md": []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "README.md")); err != nil || string(b) != "ok" {
		t.Fatalf("plain name: %q, %v", b, err)
	}
}
