package linalg

import (
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
		lib, err := openLibrary(p)
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
