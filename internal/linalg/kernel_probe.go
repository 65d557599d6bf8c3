package linalg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// probeTimeout bounds one probe; loading OpenBLAS into /bin/true takes
// about 15 ms.
const probeTimeout = 10 * time.Second

// probeOutputLimit bounds the stderr a probe keeps.
const probeOutputLimit = 64 << 10

// truePrograms are the trivial executable the probe preloads the library
// into; the first of these that exists is used.
var truePrograms = []string{"/bin/true", "/usr/bin/true"}

// probeCore learns the core the library at path picks by itself on this
// machine, without loading it into this process: it runs /bin/true with the
// library in LD_PRELOAD and OPENBLAS_VERBOSE=2, so the library's constructor
// runs its own CPU detection in that process and prints "Core: <name>" on
// stderr (OpenBLAS's DYNAMIC_ARCH builds do; a build for one fixed core
// prints nothing). The environment is this process's, so the library sees
// what it will see here.
func probeCore(ctx context.Context, path string) (string, error) {
	if runtime.GOOS == "darwin" {
		return "", errors.New("no probe on macOS (DYLD_INSERT_LIBRARIES is stripped for system programs)")
	}
	if strings.ContainsAny(path, ": \t\n") {
		return "", fmt.Errorf("the library path %q cannot be put in LD_PRELOAD (it contains a separator)", path)
	}
	prog := ""
	for _, p := range truePrograms {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			prog = p
			break
		}
	}
	if prog == "" {
		return "", fmt.Errorf("none of %s exists to preload the library into", strings.Join(truePrograms, ", "))
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog)
	cmd.Env = probeEnv(os.Environ(), path)
	var stderr limitedBuffer
	stderr.max = probeOutputLimit
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		return "", fmt.Errorf("LD_PRELOAD=%s %s: %v: %s", path, prog, err, firstLine(stderr.Bytes()))
	}
	core, err := parseProbeOutput(stderr.Bytes())
	if err != nil {
		return "", fmt.Errorf("LD_PRELOAD=%s %s: %w", path, prog, err)
	}
	return core, nil
}

// probeEnv is env with the library preloaded ahead of any LD_PRELOAD the
// user has, OPENBLAS_VERBOSE=2 so the library names its core, and one
// thread so it starts no thread pool (the thread count plays no part in the
// core it picks).
func probeEnv(env []string, lib string) []string {
	out := make([]string, 0, len(env)+3)
	preload := lib
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "LD_PRELOAD":
			if v != "" {
				preload += ":" + v
			}
			continue
		case "OPENBLAS_VERBOSE", "OPENBLAS_NUM_THREADS":
			continue
		}
		out = append(out, kv)
	}
	return append(out, "LD_PRELOAD="+preload, "OPENBLAS_VERBOSE=2", "OPENBLAS_NUM_THREADS=1")
}

// coreLine matches OpenBLAS's "Core: %s\n" (gotoblas_dynamic_init; the name
// is at most 20 characters).
var coreLine = regexp.MustCompile(`^Core: ([A-Za-z0-9_]{1,20})$`)

// errNoCoreLine is returned by parseProbeOutput when the library did not
// name its core.
var errNoCoreLine = errors.New(`the library printed no "Core:" line (not a DYNAMIC_ARCH build, whose core is fixed at build time, or not OpenBLAS)`)

// parseProbeOutput returns the core named by the last "Core: <name>" line of
// a probe's stderr.
func parseProbeOutput(out []byte) (string, error) {
	core := ""
	for _, line := range bytes.Split(out, []byte("\n")) {
		if m := coreLine.FindSubmatch(bytes.TrimRight(line, "\r")); m != nil {
			core = string(m[1])
		}
	}
	if core == "" {
		if l := firstLine(out); l != "" {
			return "", fmt.Errorf("%w; it printed %q", errNoCoreLine, l)
		}
		return "", errNoCoreLine
	}
	return core, nil
}

// firstLine is the first non-empty line of b, at most 200 bytes.
func firstLine(b []byte) string {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			if len(l) > 200 {
				l = l[:200]
			}
			return string(l)
		}
	}
	return ""
}

// pathVersion matches the version that OpenBLAS's make install puts in the
// library's file name: libopenblasp-r0.3.21.so, libopenblas_haswellp-r0.3.26.so,
// libopenblas-r0.3.28.dev.dylib.
var pathVersion = regexp.MustCompile(`^lib.*-r([0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}(?:\.dev)?)\.(?:so|dylib)(?:\.[0-9]+)*$`)

// versionFromPath is the OpenBLAS version in the (symbolic-link resolved)
// file name of a library, or "" when the name carries none.
func versionFromPath(path string) string {
	if m := pathVersion.FindStringSubmatch(filepath.Base(path)); m != nil {
		return m[1]
	}
	return ""
}

// limitedBuffer keeps the first max bytes written to it and discards the
// rest, so a misbehaving child cannot exhaust memory.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte { return b.buf.Bytes() }
