package output

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/spec"
)

func testSpec(t *testing.T) *spec.Spec {
	t.Helper()
	s, err := spec.Parse([]byte("base_model: base\nmethod: cat\nadapters:\n  - {name: a, path: a}\n"), "merge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testMods() []*adapter.Module {
	return []*adapter.Module{{Name: "model.layers.0.self_attn.q_proj", R: 1, In: 2, Out: 3,
		A: []float32{1, 2}, B: []float32{3, 4, 5}, Alpha: 1, Scale: 1}}
}

func testReport() *Report {
	return &Report{Version: "test", Method: "cat", Timings: map[string]float64{"total": 1}}
}

// names lists a directory's entries, sorted.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

var written = []string{"README.md", "adapter_config.json", "adapter_model.safetensors", "iteris_config.yaml", "merge_report.json"}

func TestWriteNewAndReplace(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "sub", "out")
	opt := Options{Dir: out, Spec: testSpec(t)}
	if err := Write(context.Background(), opt, testReport(), testMods()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, out); !reflect.DeepEqual(got, written) {
		t.Fatalf("OUT_DIR holds %v, want %v", got, written)
	}
	if got := names(t, filepath.Dir(out)); !reflect.DeepEqual(got, []string{"out"}) {
		t.Fatalf("staging left next to OUT_DIR: %v", got)
	}
	// A second write needs Force; without it nothing changes.
	if err := os.WriteFile(filepath.Join(out, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Write(context.Background(), opt, testReport(), testMods())
	if err == nil || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), out) {
		t.Fatalf("write over a non-empty OUT_DIR without force: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "keep.txt")); string(b) != "mine" {
		t.Fatal("OUT_DIR changed after a refused write")
	}
	opt.Force = true
	if err := Write(context.Background(), opt, testReport(), testMods()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, out); !reflect.DeepEqual(got, written) {
		t.Fatalf("replaced OUT_DIR holds %v, want %v", got, written)
	}
	if got := names(t, filepath.Dir(out)); !reflect.DeepEqual(got, []string{"out"}) {
		t.Fatalf("staging or old contents left next to OUT_DIR: %v", got)
	}
}

func TestWriteCancelled(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "keep.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Write(ctx, Options{Dir: out, Force: true, Spec: testSpec(t)}, testReport(), testMods())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if got := names(t, parent); !reflect.DeepEqual(got, []string{"out"}) {
		t.Fatalf("parent holds %v after a cancelled write", got)
	}
	if got := names(t, out); !reflect.DeepEqual(got, []string{"keep.txt"}) {
		t.Fatalf("OUT_DIR holds %v after a cancelled write", got)
	}
}

func TestWriteThroughSymlink(t *testing.T) {
	parent := t.TempDir()
	real := filepath.Join(parent, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(real, "old.txt"), nil, 0o644)
	link := filepath.Join(parent, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := Write(context.Background(), Options{Dir: link, Force: true, Spec: testSpec(t)}, testReport(), testMods()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi, err)
	}
	if got := names(t, real); !reflect.DeepEqual(got, written) {
		t.Fatalf("the link's target holds %v, want %v", got, written)
	}
}

// TestCommitRollback makes the final rename fail after the old OUT_DIR was moved aside: the old
// contents must come back, and the error must say so.
func TestCommitRollback(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	os.Mkdir(out, 0o755)
	os.WriteFile(filepath.Join(out, "keep.txt"), []byte("mine"), 0o644)
	st, err := newStage(out)
	if err != nil {
		t.Fatal(err)
	}
	// No staged directory: the rename into place fails.
	err = st.commit(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "back in place") {
		t.Fatalf("commit: %v, want a failure that restored the old directory", err)
	}
	if derr := st.discard(); derr != nil {
		t.Fatal(derr)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "keep.txt")); string(b) != "mine" {
		t.Fatal("the old OUT_DIR was not restored")
	}
	if got := names(t, parent); !reflect.DeepEqual(got, []string{"out"}) {
		t.Fatalf("parent holds %v", got)
	}
}

func TestCleanStale(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "merged")
	mk := func(name string, lock bool, age time.Duration) string {
		t.Helper()
		p := filepath.Join(parent, name)
		if err := os.MkdirAll(filepath.Join(p, "out"), 0o755); err != nil {
			t.Fatal(err)
		}
		if lock {
			if err := os.WriteFile(filepath.Join(p, lockFile), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	killed := mk(".merged.tmp-111", true, 0)          // its merge died: the lock file is unlocked
	orphan := mk(".merged.tmp-222", false, time.Hour) // killed before it could lock
	mk(".merged.tmp-333", false, 0)                   // just created by a running merge
	mk(".other.tmp-444", true, 0)                     // another OUT_DIR's
	running, err := newStage(out)                     // a merge still running
	if err != nil {
		t.Fatal(err)
	}
	defer running.discard()
	removed, err := CleanStale(out)
	sort.Strings(removed)
	if want := []string{killed, orphan}; !reflect.DeepEqual(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	if err == nil || !strings.Contains(err.Error(), running.dir) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %v, want one naming the locked %s", err, running.dir)
	}
	want := []string{".merged.tmp-333", filepath.Base(running.dir), ".other.tmp-444"}
	sort.Strings(want)
	if got := names(t, parent); !reflect.DeepEqual(got, want) {
		t.Errorf("parent holds %v, want %v", got, want)
	}
}
