// Package natstest runs the real nats-server for tests: the binary built from the nats-server
// module pinned in go.mod (not a system package, whose older versions silently ignore newer
// stream and consumer settings), started as a separate process on 127.0.0.1 with JetStream, so
// that tests can kill, stop and restart it.
package natstest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// serverModule is the module whose main package is the nats-server command.
const serverModule = "github.com/nats-io/nats-server/v2"

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the nats-server binary of the pinned module version, building it
// the first time on this machine (go build: under a second with Go's build cache warm, about 30 s
// cold on 2 cores). The binary is cached under the user cache directory (the temporary directory
// when there is none) by module version, platform and Go version; concurrent test
// binaries share one build (a file lock) and publish it atomically (a rename).
func Binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil { // no $HOME or $XDG_CACHE_HOME: share one directory per machine anyway
			cache = os.TempDir()
		}
		binPath, binErr = buildBinary(filepath.Join(cache, "iteris", "nats-server"))
	})
	if binErr != nil {
		t.Fatalf("natstest: %v", binErr)
	}
	return binPath
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// moduleVersion returns the version of the nats-server module that go.mod selects.
func moduleVersion(gotool string) (string, error) {
	out, err := exec.Command(gotool, "list", "-m", "-f", "{{.Version}}", serverModule).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list -m %s: %v: %s", serverModule, err, ee.Stderr)
		}
		return "", fmt.Errorf("go list -m %s: %w", serverModule, err)
	}
	v := strings.TrimSpace(string(out))
	if v == "" || strings.ContainsAny(v, `/\ `) {
		return "", fmt.Errorf("go list -m %s: unexpected version %q", serverModule, v)
	}
	return v, nil
}

// buildBinary returns the cached binary under root, building it when missing.
func buildBinary(root string) (string, error) {
	gotool := goTool()
	version, err := moduleVersion(gotool)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, fmt.Sprintf("%s-%s-%s-%s", version, runtime.GOOS, runtime.GOARCH, runtime.Version()))
	path := filepath.Join(dir, "nats-server")
	if isExecutable(path) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(filepath.Join(dir, "build.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(path) { // built by another process while we waited for the lock
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, "nats-server-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command(gotool, "build", "-o", tmp.Name(), serverModule)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s@%s: %v\n%s", serverModule, version, err, stderr.Bytes())
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
