package linalg

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// library is a loaded OpenBLAS shared object and the addresses of the
// Fortran-interface routines the OpenBLAS implementation calls.
type library struct {
	path     string // as found
	resolved string // symbolic links resolved
	config   string // openblas_get_config + core name
	core     string // openblas_get_corename; empty when the library lacks it
	kernel   Kernel // the core in use and how it was chosen

	handle uintptr

	sgemm, dgemm, ssyrk, dsyrk, dtrsm, sgemv uintptr
	dpotrf, dgetrf, dgeqrf, dorgqr           uintptr
	dsyevr, dgesdd                           uintptr
	setNumThreads, getNumThreads, getConfig  uintptr

	calls atomic.Int64 // routines called, for tests and diagnostics
}

// requiredSymbols are looked up in every candidate library; a library that
// lacks one of them is refused.
var requiredSymbols = []string{
	"sgemm_", "dgemm_", "ssyrk_", "dsyrk_", "dtrsm_", "sgemv_",
	"dpotrf_", "dgetrf_", "dgeqrf_", "dorgqr_", "dsyevr_", "dgesdd_",
	"openblas_set_num_threads", "openblas_get_num_threads", "openblas_get_config",
}

var (
	loadedMu sync.Mutex
	loaded   = map[string]*library{}
)

// loadOpenBLAS returns the first candidate that loads and has every
// required symbol. The error lists each candidate and why it was refused.
func loadOpenBLAS(candidates []string) (*library, error) {
	loadedMu.Lock()
	defer loadedMu.Unlock()
	var tried []string
	for _, p := range candidates {
		if lib, ok := loaded[p]; ok {
			return lib, nil
		}
		lib, err := defaultChooser.open(p)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", p, err))
			continue
		}
		loaded[p] = lib
		return lib, nil
	}
	hint := fmt.Sprintf("install libopenblas0 (Debian/Ubuntu) or set %s=/path/to/libopenblas.so", EnvOpenBLAS)
	if os.Getenv(EnvOpenBLAS) != "" {
		hint = fmt.Sprintf("the path comes from %s", EnvOpenBLAS)
	}
	return nil, fmt.Errorf("%w: tried %s; %s", ErrOpenBLASUnavailable, strings.Join(tried, "; "), hint)
}

// errNoSuchFile is the reason given for a candidate path that does not exist.
var errNoSuchFile = errors.New("no such file")

// missingFile reports whether p is a file path (not a bare name for the
// dynamic loader's search) that does not exist.
func missingFile(p string) bool {
	if !strings.ContainsRune(p, os.PathSeparator) {
		return false
	}
	_, err := os.Stat(p)
	return err != nil
}

// kernelChooser is what choosing the kernel reads from the machine; tests
// replace its parts.
type kernelChooser struct {
	lookupEnv func(string) (string, bool)
	cpu       func() cpuInfo
	probe     func(ctx context.Context, path string) (string, error)
}

var defaultChooser = kernelChooser{lookupEnv: os.LookupEnv, cpu: sync.OnceValue(hostCPU), probe: probeCore}

// open chooses the kernel and the idle threads' timeout for the library at
// p, loads the library with those choices in OPENBLAS_CORETYPE and
// OPENBLAS_THREAD_TIMEOUT and records the outcome in its kernel.
func (k kernelChooser) open(p string) (*library, error) {
	if missingFile(p) {
		return nil, errNoSuchFile
	}
	in := k.input(p)
	d := chooseCore(in)
	userTimeout, userSet := k.lookupEnv(EnvThreadTimeout)
	td := chooseThreadTimeout(userTimeout, userSet)
	var set []envVar
	if d.Set != "" {
		set = append(set, envVar{EnvCoreType, d.Set})
	}
	if td.Set != "" {
		set = append(set, envVar{EnvThreadTimeout, td.Set})
	}
	lib, err := openWithEnv(p, set)
	if err != nil {
		return nil, err
	}
	lib.kernel = kernelReport(in, d, lib.core, lib.config)
	lib.kernel.ThreadTimeout, lib.kernel.ThreadTimeoutReason = td.Set, td.Reason
	if userSet {
		lib.kernel.ThreadTimeout = userTimeout
	}
	return lib, nil
}

// input gathers the choice's inputs for the library at p; the probe runs
// only when its answer could change the choice.
func (k kernelChooser) input(p string) coreInput {
	in := coreInput{CPU: k.cpu(), Version: versionFromPath(resolve(p))}
	in.Env, in.EnvSet = k.lookupEnv(EnvCoreType)
	if wantsProbe(in) {
		core, err := k.probe(context.Background(), p)
		if err != nil {
			in.NoProbe = "probe: " + err.Error()
		}
		in.Detected = core
	}
	return in
}

// envVar is one variable of the environment a load runs in.
type envVar struct{ name, value string }

// openWithEnv loads p with the variables set in the environment during the
// load, then unsets them again: OpenBLAS reads them once, in the
// constructor dlopen runs, and leaving them set would make a later load look
// like the user's choice (and hand them to child processes). os.Setenv
// reaches the C library's environment (getenv) through the runtime's cgo
// hook, which purego provides without cgo too. The caller holds loadedMu;
// each variable was unset before (the choices set one only then).
func openWithEnv(p string, set []envVar) (*library, error) {
	for _, v := range set {
		if err := os.Setenv(v.name, v.value); err != nil {
			return nil, fmt.Errorf("setting %s=%s: %v", v.name, v.value, err)
		}
		defer os.Unsetenv(v.name)
	}
	return openLibrary(p)
}

// defaultLibraryPaths lists where OpenBLAS is usually installed, most
// specific first, then bare names for the dynamic loader's own search.
func defaultLibraryPaths() []string {
	if runtime.GOOS == "darwin" {
		return []string{
			"/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
			"/usr/local/opt/openblas/lib/libopenblas.dylib",
			"libopenblas.dylib",
		}
	}
	var triplet string
	switch runtime.GOARCH {
	case "amd64":
		triplet = "x86_64-linux-gnu"
	case "arm64":
		triplet = "aarch64-linux-gnu"
	}
	var paths []string
	if triplet != "" {
		dir := "/usr/lib/" + triplet
		paths = append(paths,
			dir+"/libopenblas.so.0",
			dir+"/openblas-pthread/libopenblas.so.0",
			dir+"/openblas-openmp/libopenblas.so.0",
			dir+"/openblas-serial/libopenblas.so.0",
		)
	}
	paths = append(paths,
		"/usr/lib64/libopenblasp.so.0",
		"/usr/lib64/libopenblas.so.0",
		"/usr/lib/libopenblas.so.0",
		"/usr/local/lib/libopenblas.so.0",
		"/opt/OpenBLAS/lib/libopenblas.so.0",
		"libopenblas.so.0",
		"libopenblas.so",
	)
	return paths
}

// resolve returns p with symbolic links resolved when p is a file path.
func resolve(p string) string {
	if !strings.ContainsRune(p, os.PathSeparator) {
		return p
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}
