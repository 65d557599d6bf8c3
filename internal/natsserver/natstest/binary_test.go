package natstest

import (
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Two builds racing for an empty cache: one builds under the lock, the other finds its binary;
// both get the same working executable of the pinned version. (With Go's build cache warm the
// build is a link, under a second.)
func TestConcurrentBuildsShareOneBinary(t *testing.T) {
	root := t.TempDir()
	var wg sync.WaitGroup
	paths, errs := make([]string, 2), make([]error, 2)
	for i := range 2 {
		wg.Go(func() { paths[i], errs[i] = buildBinary(root) })
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	if paths[0] != paths[1] {
		t.Fatalf("two binaries: %s, %s", paths[0], paths[1])
	}
	out, err := exec.Command(paths[0], "--version").CombinedOutput()
	version, verr := moduleVersion(goTool())
	if err != nil || verr != nil || !strings.Contains(string(out), strings.TrimPrefix(version, "v")) {
		t.Fatalf("%s --version: %q, %v (module %s, %v)", paths[0], out, err, version, verr)
	}
	again, err := buildBinary(root)
	if err != nil || again != paths[0] {
		t.Fatalf("cached lookup: %s, %v", again, err)
	}
}
