package linalg

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	blasgonum "gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/mat"
)

func TestInitGonum(t *testing.T) {
	b := useBackend(t, ModeGonum)
	if b.Name() != ModeGonum || b.Path() != "" || b.Threads() != runtime.GOMAXPROCS(0) {
		t.Errorf("backend %q path %q threads %d, want gonum, no path, GOMAXPROCS", b.Name(), b.Path(), b.Threads())
	}
	if _, ok := blas64.Implementation().(blasgonum.Implementation); !ok {
		t.Errorf("blas64 uses %T, want gonum's", blas64.Implementation())
	}
	if Current().Name() != ModeGonum {
		t.Errorf("Current() = %q, want gonum", Current().Name())
	}
}

func TestInitOpenBLAS(t *testing.T) {
	openBLASOrSkip(t)
	b := useBackend(t, ModeOpenBLAS)
	if b.Name() != ModeOpenBLAS || b.Path() == "" || b.ResolvedPath() == "" || !strings.Contains(b.Config(), "OpenBLAS") {
		t.Errorf("backend %q path %q resolved %q config %q", b.Name(), b.Path(), b.ResolvedPath(), b.Config())
	}
	for name, impl := range map[string]any{"blas32": blas32.Implementation(), "blas64": blas64.Implementation()} {
		if _, ok := impl.(*OpenBLAS); !ok {
			t.Errorf("%s uses %T, want *OpenBLAS", name, impl)
		}
	}
	// gonum's mat API now runs on OpenBLAS.
	before := b.lib.calls.Load()
	rng := newRNG(40)
	var c mat.Dense
	c.Mul(randDense(rng, 64, 64), randDense(rng, 64, 64))
	if b.lib.calls.Load() == before {
		t.Error("mat.Dense.Mul did not reach OpenBLAS")
	}
	threads := b.Threads()
	if threads < 1 {
		t.Fatalf("Threads() = %d", threads)
	}
	b.SetThreads(1)
	if got := b.Threads(); got != 1 {
		t.Errorf("after SetThreads(1), Threads() = %d", got)
	}
	Current().SetThreads(threads)
	if got := b.Threads(); got != threads {
		t.Errorf("after SetThreads(%d), Threads() = %d", threads, got)
	}
	if !strings.HasPrefix(b.String(), "openblas "+b.Path()) {
		t.Errorf("String() = %q", b.String())
	}
}

func TestInitAutoPrefersOpenBLAS(t *testing.T) {
	openBLASOrSkip(t)
	if b := useBackend(t, ""); b.Name() != ModeOpenBLAS {
		t.Errorf("auto chose %q (%s), want openblas", b.Name(), b.Fallback())
	}
}

func TestInitEnvOverridesMode(t *testing.T) {
	useBackend(t, ModeGonum)
	t.Setenv(EnvBLAS, "GONUM")
	b, err := Init(ModeOpenBLAS)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != ModeGonum {
		t.Errorf("%s=GONUM with Init(openblas) gave %q, want gonum", EnvBLAS, b.Name())
	}
	t.Setenv(EnvBLAS, "fast")
	if _, err := Init(ModeGonum); !errors.Is(err, ErrUnknownMode) || !strings.Contains(err.Error(), `"fast"`) {
		t.Errorf("%s=fast: error %v, want ErrUnknownMode naming \"fast\"", EnvBLAS, err)
	}
}

func TestInitUnknownMode(t *testing.T) {
	useBackend(t, ModeGonum)
	if _, err := Init("mkl"); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("error %v, want ErrUnknownMode", err)
	}
	if Current().Name() != ModeGonum {
		t.Errorf("a failed Init changed the backend to %q", Current().Name())
	}
}

func TestInitBadLibraryPath(t *testing.T) {
	useBackend(t, ModeGonum)
	notALib := filepath.Join(t.TempDir(), "libopenblas.so.0")
	if err := os.WriteFile(notALib, []byte("not a shared object\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, reason string
	}{
		{"missing file", "/nonexistent/iteris/libopenblas.so.0", "no such file"},
		{"not a library", notALib, "dlopen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvOpenBLAS, tc.path)
			_, err := Init(ModeOpenBLAS)
			if !errors.Is(err, ErrOpenBLASUnavailable) {
				t.Fatalf("error %v, want ErrOpenBLASUnavailable", err)
			}
			for _, want := range []string{tc.path, tc.reason, EnvOpenBLAS} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if Current().Name() != ModeGonum {
				t.Errorf("a failed Init changed the backend to %q", Current().Name())
			}
			b, err := Init(ModeAuto)
			if err != nil {
				t.Fatalf("auto: %v", err)
			}
			if b.Name() != ModeGonum || !strings.Contains(b.Fallback(), tc.path) {
				t.Errorf("auto: backend %q fallback %q, want gonum naming %s", b.Name(), b.Fallback(), tc.path)
			}
		})
	}
}

func TestInitLibraryWithoutSymbols(t *testing.T) {
	// The C library is always loaded and has none of the BLAS symbols.
	libc := ""
	for _, p := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6", "/lib64/libc.so.6"} {
		if _, err := os.Stat(p); err == nil {
			libc = p
			break
		}
	}
	if libc == "" {
		t.Skip("no libc.so.6 at the usual paths")
	}
	useBackend(t, ModeGonum)
	t.Setenv(EnvOpenBLAS, libc)
	_, err := Init(ModeOpenBLAS)
	if !errors.Is(err, ErrOpenBLASUnavailable) || !strings.Contains(err.Error(), "missing symbols sgemm_") {
		t.Errorf("error %v, want ErrOpenBLASUnavailable listing missing symbols", err)
	}
}
