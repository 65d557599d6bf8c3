// Package linalg installs the BLAS/LAPACK implementation behind gonum and
// provides the dense solvers and low-rank truncations the merge math needs.
//
// Everything in iteris calls gonum's API (gonum.org/v1/gonum/mat, blas32,
// blas64, lapack64). Init chooses what runs underneath: gonum's pure Go
// implementation, or OpenBLAS loaded at run time through purego (no cgo).
// The OpenBLAS implementation embeds gonum's native implementations and
// overrides only the hot routines (Sgemm, Dgemm, Ssyrk, Dsyrk, Dtrsm, Sgemv,
// Dpotrf, Dgetrf, Dgeqrf, Dorgqr, Dsyev, Dgesvd); gonum's own Dpotrs and
// Dgetrs reach OpenBLAS through its Dtrsm. Every call is checked exactly as
// gonum checks it: a call that gonum rejects is handed to gonum, which
// panics with its usual message.
//
// The dense helpers (choleskySolve, luSolve, pinvSolveSym, SolveSym,
// TruncateFactors, TruncateDense) work on row-major *mat.Dense and
// *mat.SymDense values and go through lapack64/blas64, so they run on
// whichever backend Init installed.
//
// # The OpenBLAS kernel
//
// A DYNAMIC_ARCH build of OpenBLAS (Debian's libopenblas0, conda's, most
// distributions') carries kernels for many CPUs ("cores": Prescott, Haswell,
// SkylakeX, Cooperlake, Zen, ...) and picks one from cpuid when it is
// loaded. Its tables lag behind new CPUs: releases before 0.3.25 send every
// Intel family-6 model with an extended model above 10 (Raptor Lake, Arrow
// Lake, the 5th-gen Xeon) to the generic SSE3 Prescott kernel (family 6
// model 207 under 0.3.21: 4.2x slower than SkylakeX in bench/forward.sh),
// releases before 0.3.19 do so for any CPU they do not know, and every
// release up to 0.3.28 treats Intel's family 19 (base family 15) as a
// Pentium 4. Before loading, Init therefore decides the core as a careful
// user would, and sets OPENBLAS_CORETYPE for the load when (and only when)
// the user has not set it, the library would fall back to a generic core,
// and the CPU has AVX-512 or AVX2+FMA. The core set is the one OpenBLAS's
// own feature-based fallback picks (Cooperlake with AVX-512 BF16, SkylakeX
// with AVX-512, else Haswell, or Zen for AMD and Hygon as OpenBLAS maps
// their CPUs), limited to names the library's version accepts: Cooperlake
// only from 0.3.22 on, and never SapphireRapids, which no release up to
// 0.3.28 accepts (its sgemm/dgemm kernels are Cooperlake's). The decision is
// the pure function chooseCore; Backend.Kernel reports the core in use, the
// reason, and a warning when the core is generic anyway.
//
// Why a probe. OPENBLAS_CORETYPE is read once, by gotoblas_dynamic_init in
// the constructor that dlopen runs (driver/others/dynamic.c), so it must be
// in the C environment before dlopen; openblas_get_corename tells the core
// only after the load, when it is too late. Three ways to know the library's
// choice beforehand were weighed: copying its cpuid tables for every release
// (they gain CPUs in most releases, and a copy would be wrong for exactly the
// next CPU); loading it, asking, and re-running its initialisation through
// gotoblas_dynamic_quit and gotoblas_dynamic_init (exported, but internal
// and unsupported); and asking the library itself in another process. Init
// does the last: it runs /bin/true with the library in LD_PRELOAD and
// OPENBLAS_VERBOSE=2, so the library's own detection runs there and prints
// "Core: <name>" (about 15 ms, only on x86-64 CPUs with AVX2+FMA and only
// when OPENBLAS_CORETYPE is unset). The library's version comes from its
// file name (libopenblasp-r0.3.21.so, as make install names it); without one
// only core names every release since 0.3.1 accepts are used. When the probe
// cannot run (no /bin/true, macOS), the library's own choice is kept and a
// generic result is warned about. The variable is set with os.Setenv, which
// reaches the C environment through the runtime's cgo hook (purego provides
// it without cgo), and unset right after the load.
//
// Idle threads. OpenBLAS's pthread server lets a worker with nothing to do
// busy-wait (sched_yield) for OPENBLAS_THREAD_TIMEOUT's 2^n cycles, 2^28
// (about 0.1 s) by default, before it sleeps. The model engine runs its own
// element-wise work on all cores between products, and a spinning worker
// takes a core from it; Init therefore sets OPENBLAS_THREAD_TIMEOUT=16 for
// the load, the same way and for the same single read in the constructor,
// unless the user set it (chooseThreadTimeout, threadtimeout.go).
package linalg
