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
package linalg
