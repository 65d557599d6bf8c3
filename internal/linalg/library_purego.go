//go:build (linux || darwin || freebsd || netbsd) && (amd64 || arm64)

package linalg

import (
	"fmt"
	"strings"

	"github.com/ebitengine/purego"
)

// openLibrary dlopens p and looks up every required symbol.
func openLibrary(p string) (*library, error) {
	if missingFile(p) {
		return nil, errNoSuchFile
	}
	h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("dlopen: %v", err)
	}
	lib := &library{path: p, resolved: resolve(p), handle: h}
	slots := map[string]*uintptr{
		"sgemm_": &lib.sgemm, "dgemm_": &lib.dgemm, "ssyrk_": &lib.ssyrk, "dsyrk_": &lib.dsyrk,
		"dtrsm_": &lib.dtrsm, "sgemv_": &lib.sgemv, "dpotrf_": &lib.dpotrf, "dgetrf_": &lib.dgetrf,
		"dgeqrf_": &lib.dgeqrf, "dorgqr_": &lib.dorgqr, "dsyevr_": &lib.dsyevr, "dgesdd_": &lib.dgesdd,
		"openblas_set_num_threads": &lib.setNumThreads, "openblas_get_num_threads": &lib.getNumThreads,
		"openblas_get_config": &lib.getConfig,
	}
	var missing []string
	for _, name := range requiredSymbols {
		addr, err := purego.Dlsym(h, name)
		if err != nil || addr == 0 {
			missing = append(missing, name)
			continue
		}
		*slots[name] = addr
	}
	if len(missing) > 0 {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("missing symbols %s", strings.Join(missing, ", "))
	}
	var getConfig func() string
	purego.RegisterFunc(&getConfig, lib.getConfig)
	lib.config = strings.TrimSpace(getConfig())
	if addr, err := purego.Dlsym(h, "openblas_get_corename"); err == nil && addr != 0 {
		var corename func() string
		purego.RegisterFunc(&corename, addr)
		lib.core = strings.TrimSpace(corename())
		lib.config += " core=" + lib.core
	}
	if strings.Contains(lib.config, "USE64BITINT") {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("built with 64-bit integers (%s); a 32-bit-integer (LP64) build is needed", lib.config)
	}
	return lib, nil
}

// call invokes a Fortran-interface routine; every argument is a pointer
// (or a hidden character length) converted in the caller's argument list,
// and go:uintptrescapes keeps the pointees on the heap and alive for the
// whole call, as purego.SyscallN does for its own arguments.
//
//go:uintptrescapes
func (l *library) call(fn uintptr, args ...uintptr) {
	l.calls.Add(1)
	purego.SyscallN(fn, args...)
}

func (l *library) threads() int {
	r, _, _ := purego.SyscallN(l.getNumThreads)
	return int(int32(r))
}

func (l *library) setThreads(n int) {
	purego.SyscallN(l.setNumThreads, uintptr(n))
}
