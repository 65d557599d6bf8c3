package linalg

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"

	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	blasgonum "gonum.org/v1/gonum/blas/gonum"
	lapackgonum "gonum.org/v1/gonum/lapack/gonum"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// Backend modes accepted by Init and by the ITERIS_BLAS environment variable.
const (
	ModeAuto     = "auto"     // OpenBLAS when it loads, else gonum
	ModeGonum    = "gonum"    // gonum's pure Go BLAS/LAPACK
	ModeOpenBLAS = "openblas" // OpenBLAS; an error when it cannot be loaded
)

// Environment variables read by Init.
const (
	// EnvBLAS overrides the mode passed to Init when it is set and non-empty.
	EnvBLAS = "ITERIS_BLAS"
	// EnvOpenBLAS names the OpenBLAS shared library to load; when it is set,
	// no other location is tried.
	EnvOpenBLAS = "ITERIS_OPENBLAS"
)

var (
	// ErrUnknownMode is returned by Init for a mode other than auto, gonum
	// or openblas.
	ErrUnknownMode = errors.New("linalg: unknown BLAS mode")
	// ErrOpenBLASUnavailable is returned by Init in openblas mode when no
	// usable OpenBLAS library was found; the message lists what was tried.
	ErrOpenBLASUnavailable = errors.New("linalg: OpenBLAS unavailable")
)

// Backend describes the implementation Init installed.
type Backend struct {
	name     string
	path     string
	resolved string
	config   string
	fallback string
	lib      *library
}

// Name is "gonum" or "openblas".
func (b Backend) Name() string { return b.name }

// Path is the shared library that was loaded as it was found (for example
// /usr/lib/x86_64-linux-gnu/libopenblas.so.0); empty for gonum.
func (b Backend) Path() string { return b.path }

// ResolvedPath is Path with symbolic links resolved; empty for gonum.
func (b Backend) ResolvedPath() string { return b.resolved }

// Config is OpenBLAS's build description (openblas_get_config and the
// core it chose); empty for gonum.
func (b Backend) Config() string { return b.config }

// Fallback says why auto mode did not install OpenBLAS; empty otherwise.
func (b Backend) Fallback() string { return b.fallback }

// Kernel is the OpenBLAS core in use and how it was chosen; the zero Kernel
// for gonum. Kernel().Warning is non-empty when that core is slower than
// the CPU allows; callers show it to the user.
func (b Backend) Kernel() Kernel {
	if b.lib == nil {
		return Kernel{}
	}
	return b.lib.kernel
}

// Core is the OpenBLAS core in use, e.g. "SkylakeX" (openblas_get_corename);
// empty for gonum.
func (b Backend) Core() string { return b.Kernel().Core }

// Threads is the number of threads the backend computes with: OpenBLAS's
// thread count, or GOMAXPROCS for gonum (whose Dgemm runs goroutines).
func (b Backend) Threads() int {
	if b.lib != nil {
		return b.lib.threads()
	}
	return runtime.GOMAXPROCS(0)
}

// SetThreads sets OpenBLAS's thread count (openblas_set_num_threads).
// It does nothing for gonum, whose parallelism follows GOMAXPROCS.
func (b Backend) SetThreads(n int) {
	if b.lib != nil && n > 0 {
		b.lib.setThreads(n)
	}
}

// String gives a one-line description for logs and reports.
func (b Backend) String() string {
	if b.lib == nil {
		s := fmt.Sprintf("gonum (pure Go, GOMAXPROCS=%d)", b.Threads())
		if b.fallback != "" {
			s += "; OpenBLAS not used: " + b.fallback
		}
		return s
	}
	k := b.lib.kernel
	return fmt.Sprintf("openblas %s (%s), %d threads; core %s: %s; %s", b.path, b.config, b.Threads(), k.Core, k.Reason, k.ThreadTimeoutReason)
}

var (
	currentMu sync.Mutex
	current   = Backend{name: ModeGonum}
)

// Current returns the backend installed by the last successful Init
// (gonum before any Init).
func Current() Backend {
	currentMu.Lock()
	defer currentMu.Unlock()
	return current
}

// Init installs a BLAS/LAPACK implementation for gonum's blas32, blas64 and
// lapack64 packages, so every gonum mat, blas and lapack call uses it.
//
// mode is "auto" (or empty), "gonum" or "openblas"; the environment variable
// ITERIS_BLAS overrides it when set. OpenBLAS is looked up at
// ITERIS_OPENBLAS when that is set, else in the usual library locations.
// In openblas mode a library that cannot be loaded is an error naming every
// path tried; in auto mode it falls back to gonum and Backend.Fallback says
// why. Before OpenBLAS is loaded its core is chosen (see the package doc and
// Backend.Kernel), once per library and process. Init must not run
// concurrently with linear algebra in other goroutines: gonum's Use
// functions are not synchronised.
func Init(mode string) (Backend, error) {
	if env := strings.TrimSpace(os.Getenv(EnvBLAS)); env != "" {
		mode = env
	}
	mode = strings.ToLower(strings.TrimSpace(mode))
	if mode == "" {
		mode = ModeAuto
	}
	switch mode {
	case ModeGonum:
		b := Backend{name: ModeGonum}
		install(b)
		return b, nil
	case ModeAuto, ModeOpenBLAS:
		lib, err := loadOpenBLAS(candidatePaths())
		if err != nil {
			if mode == ModeOpenBLAS {
				return Current(), err
			}
			b := Backend{name: ModeGonum, fallback: err.Error()}
			install(b)
			return b, nil
		}
		b := Backend{name: ModeOpenBLAS, path: lib.path, resolved: lib.resolved, config: lib.config, lib: lib}
		install(b)
		return b, nil
	default:
		return Current(), fmt.Errorf("%w %q (from %s or Init): want %q, %q or %q",
			ErrUnknownMode, mode, EnvBLAS, ModeAuto, ModeGonum, ModeOpenBLAS)
	}
}

// install points gonum's blas32, blas64 and lapack64 at the backend.
func install(b Backend) {
	currentMu.Lock()
	defer currentMu.Unlock()
	if b.lib == nil {
		blas32.Use(blasgonum.Implementation{})
		blas64.Use(blasgonum.Implementation{})
		lapack64.Use(lapackgonum.Implementation{})
	} else {
		impl := &OpenBLAS{lib: b.lib}
		blas32.Use(impl)
		blas64.Use(impl)
		lapack64.Use(impl)
	}
	current = b
}

// candidatePaths lists the libraries Init tries, in order.
func candidatePaths() []string {
	if p := strings.TrimSpace(os.Getenv(EnvOpenBLAS)); p != "" {
		return []string{p}
	}
	return defaultLibraryPaths()
}
