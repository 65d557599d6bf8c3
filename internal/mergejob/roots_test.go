package mergejob

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/protocol"
)

func catConfig(base, adapters string) string {
	c := "base_model: " + base + "\nmethod: cat\nadapters:\n"
	for _, n := range []string{"rev", "upc"} {
		c += "  - {name: " + n + ", path: " + adapters + "/" + n + "}\n"
	}
	return c
}

// TestPrepareConfinesPaths: with input roots, a config naming a path outside them (directly,
// through "..", or through a symbolic link inside a root) is refused before anything is read
// from it, naming the key and the path as written and resolved.
func TestPrepareConfinesPaths(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fixture := filepath.Join(repo, "testdata", "tiny-skills")
	link := t.TempDir()
	if err := os.Symlink(filepath.Join(fixture, "model"), filepath.Join(link, "model")); err != nil {
		t.Fatal(err)
	}
	store, err := artifact.NewMemory(artifact.Encoding{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		roots  []string
		config string
		want   string // "" = accepted
	}{
		{"inside", []string{fixture}, catConfig("testdata/tiny-skills/model", "testdata/tiny-skills/adapters"), ""},
		{"no roots", nil, catConfig("testdata/tiny-skills/model", "testdata/tiny-skills/adapters"), ""},
		{"base outside", []string{filepath.Join(fixture, "adapters")}, catConfig("testdata/tiny-skills/model", "testdata/tiny-skills/adapters"),
			"merge.yaml: base_model: testdata/tiny-skills/model (" + filepath.Join(fixture, "model") + ") is outside the cluster's input directories (" + filepath.Join(fixture, "adapters") + ")"},
		{"dot-dot", []string{filepath.Join(fixture, "adapters")}, catConfig(filepath.Join(fixture, "adapters", "..", "model"), "testdata/tiny-skills/adapters"),
			"base_model: " + filepath.Join(fixture, "model") + " is outside"},
		{"symbolic link out of a root", []string{link, filepath.Join(fixture, "adapters")}, catConfig(filepath.Join(link, "model"), "testdata/tiny-skills/adapters"),
			"base_model: " + filepath.Join(link, "model") + " is outside"},
		{"adapter outside", []string{filepath.Join(fixture, "model")}, catConfig("testdata/tiny-skills/model", "testdata/tiny-skills/adapters"),
			"adapters[0].path: testdata/tiny-skills/adapters/rev"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Version: "test", Roots: tc.roots}
			_, err := h.Prepare(context.Background(), protocol.Submit{Config: []byte(tc.config), Path: "merge.yaml", Dir: repo}, "j1", store)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrOutsideInputs) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Prepare: %v, want %q", err, tc.want)
			}
		})
	}
}
