package linalg

import (
	"math"
	"runtime"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	blasgonum "gonum.org/v1/gonum/blas/gonum"
	lapackgonum "gonum.org/v1/gonum/lapack/gonum"
)

type (
	nativeBLAS   = blasgonum.Implementation
	nativeLAPACK = lapackgonum.Implementation
)

// OpenBLAS is a gonum blas.Float32, blas.Float64 and lapack.Float64
// implementation. It embeds gonum's native implementations and sends the
// hot routines to OpenBLAS's Fortran interface. Row-major gonum calls are
// mapped onto column-major Fortran calls by swapping operands (BLAS,
// Dpotrf, Dgesvd) or by transposing into a scratch buffer (Dgetrf, Dgeqrf,
// Dorgqr, Dsyev's eigenvectors).
//
// Calls that gonum would reject, empty or tiny problems, and dimensions
// beyond 32-bit integers are passed to the embedded gonum implementation,
// so invalid arguments panic exactly as with gonum.
//
// Obtain one through Init; the zero value is not usable.
type OpenBLAS struct {
	nativeBLAS
	nativeLAPACK
	lib *library
}

// Size thresholds below which gonum's native code is used: for such small
// problems the call overhead outweighs OpenBLAS's speed.
const (
	minGemmWork = 16 * 16 * 16 // m*n*k for gemm and syrk, m*n*k for trsm
	minGemvWork = 64 * 64      // m*n
	minLapackN  = 16           // order / smaller dimension for LAPACK
)

// fits reports whether every value fits a 32-bit Fortran INTEGER.
func fits(vs ...int) bool {
	for _, v := range vs {
		if v > math.MaxInt32 || v < math.MinInt32 {
			return false
		}
	}
	return true
}

func validTrans(t blas.Transpose) bool {
	return t == blas.NoTrans || t == blas.Trans || t == blas.ConjTrans
}

func validUplo(u blas.Uplo) bool { return u == blas.Upper || u == blas.Lower }

// ftrans is the Fortran character for op(X); for real data ConjTrans is Trans.
func ftrans(t blas.Transpose) byte {
	if t == blas.NoTrans {
		return 'N'
	}
	return 'T'
}

// fflipTrans is the Fortran character for the transposed operation.
func fflipTrans(t blas.Transpose) byte {
	if t == blas.NoTrans {
		return 'T'
	}
	return 'N'
}

// fflipUplo maps a row-major triangle to the same storage seen column-major.
func fflipUplo(u blas.Uplo) byte {
	if u == blas.Upper {
		return 'L'
	}
	return 'U'
}

// gemmFast reports whether a gemm call passes gonum's checks and is large
// enough for OpenBLAS.
func gemmFast(tA, tB blas.Transpose, m, n, k, lda, ldb, ldc, la, lb, lc int) bool {
	if !validTrans(tA) || !validTrans(tB) || m <= 0 || n <= 0 || k <= 0 {
		return false
	}
	aTrans := tA != blas.NoTrans
	bTrans := tB != blas.NoTrans
	if aTrans {
		if lda < max(1, m) || la < (k-1)*lda+m {
			return false
		}
	} else if lda < max(1, k) || la < (m-1)*lda+k {
		return false
	}
	if bTrans {
		if ldb < max(1, k) || lb < (n-1)*ldb+k {
			return false
		}
	} else if ldb < max(1, n) || lb < (k-1)*ldb+n {
		return false
	}
	if ldc < max(1, n) || lc < (m-1)*ldc+n {
		return false
	}
	return m*n*k >= minGemmWork && fits(m, n, k, lda, ldb, ldc)
}

// Sgemm computes C = alpha * op(A) * op(B) + beta * C (float32).
func (o OpenBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if alpha == 0 || !gemmFast(tA, tB, m, n, k, lda, ldb, ldc, len(a), len(b), len(c)) {
		o.nativeBLAS.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	gemm(o.lib, o.lib.sgemm, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dgemm computes C = alpha * op(A) * op(B) + beta * C (float64).
func (o OpenBLAS) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if alpha == 0 || !gemmFast(tA, tB, m, n, k, lda, ldb, ldc, len(a), len(b), len(c)) {
		o.nativeBLAS.Dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	gemm(o.lib, o.lib.dgemm, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// gemm calls the Fortran ?gemm. Row-major C = op(A) op(B) is column-major
// Cᵀ = op(B)ᵀ op(A)ᵀ.
func gemm[T float32 | float64](lib *library, sym uintptr, tA, tB blas.Transpose, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	ta, tb := ftrans(tA), ftrans(tB)
	fm, fn, fk := int32(n), int32(m), int32(k)
	flda, fldb, fldc := int32(lda), int32(ldb), int32(ldc)
	lib.call(sym,
		uintptr(unsafe.Pointer(&tb)), uintptr(unsafe.Pointer(&ta)),
		uintptr(unsafe.Pointer(&fm)), uintptr(unsafe.Pointer(&fn)), uintptr(unsafe.Pointer(&fk)),
		uintptr(unsafe.Pointer(&alpha)),
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&fldb)),
		uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&flda)),
		uintptr(unsafe.Pointer(&beta)),
		uintptr(unsafe.Pointer(&c[0])), uintptr(unsafe.Pointer(&fldc)),
		1, 1)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
}

// syrkFast reports whether a syrk call passes gonum's checks and is large
// enough for OpenBLAS.
func syrkFast(ul blas.Uplo, tA blas.Transpose, n, k, lda, ldc, la, lc int) bool {
	if !validUplo(ul) || !validTrans(tA) || n <= 0 || k <= 0 {
		return false
	}
	row, col := k, n
	if tA == blas.NoTrans {
		row, col = n, k
	}
	if lda < max(1, col) || ldc < max(1, n) || la < lda*(row-1)+col || lc < ldc*(n-1)+n {
		return false
	}
	return n*n*k >= minGemmWork && fits(n, k, lda, ldc)
}

// Ssyrk computes the triangle ul of C = alpha * A * Aᵀ + beta * C (or
// alpha * Aᵀ * A + beta * C) for float32.
func (o OpenBLAS) Ssyrk(ul blas.Uplo, tA blas.Transpose, n, k int, alpha float32, a []float32, lda int, beta float32, c []float32, ldc int) {
	if alpha == 0 || !syrkFast(ul, tA, n, k, lda, ldc, len(a), len(c)) {
		o.nativeBLAS.Ssyrk(ul, tA, n, k, alpha, a, lda, beta, c, ldc)
		return
	}
	syrk(o.lib, o.lib.ssyrk, ul, tA, n, k, alpha, a, lda, beta, c, ldc)
}

// Dsyrk computes the triangle ul of C = alpha * A * Aᵀ + beta * C (or
// alpha * Aᵀ * A + beta * C) for float64.
func (o OpenBLAS) Dsyrk(ul blas.Uplo, tA blas.Transpose, n, k int, alpha float64, a []float64, lda int, beta float64, c []float64, ldc int) {
	if alpha == 0 || !syrkFast(ul, tA, n, k, lda, ldc, len(a), len(c)) {
		o.nativeBLAS.Dsyrk(ul, tA, n, k, alpha, a, lda, beta, c, ldc)
		return
	}
	syrk(o.lib, o.lib.dsyrk, ul, tA, n, k, alpha, a, lda, beta, c, ldc)
}

// syrk calls the Fortran ?syrk. Column-major, A is seen transposed and the
// triangle flips.
func syrk[T float32 | float64](lib *library, sym uintptr, ul blas.Uplo, tA blas.Transpose, n, k int, alpha T, a []T, lda int, beta T, c []T, ldc int) {
	fu, ft := fflipUplo(ul), fflipTrans(tA)
	fn, fk, flda, fldc := int32(n), int32(k), int32(lda), int32(ldc)
	lib.call(sym,
		uintptr(unsafe.Pointer(&fu)), uintptr(unsafe.Pointer(&ft)),
		uintptr(unsafe.Pointer(&fn)), uintptr(unsafe.Pointer(&fk)),
		uintptr(unsafe.Pointer(&alpha)),
		uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&flda)),
		uintptr(unsafe.Pointer(&beta)),
		uintptr(unsafe.Pointer(&c[0])), uintptr(unsafe.Pointer(&fldc)),
		1, 1)
	runtime.KeepAlive(a)
	runtime.KeepAlive(c)
}

// Dtrsm solves op(A) * X = alpha * B or X * op(A) = alpha * B for X,
// overwriting B, with A triangular.
func (o OpenBLAS) Dtrsm(s blas.Side, ul blas.Uplo, tA blas.Transpose, d blas.Diag, m, n int, alpha float64, a []float64, lda int, b []float64, ldb int) {
	fast := (s == blas.Left || s == blas.Right) && validUplo(ul) && validTrans(tA) &&
		(d == blas.NonUnit || d == blas.Unit) && m > 0 && n > 0 && alpha != 0
	k := n
	if s == blas.Left {
		k = m
	}
	fast = fast && lda >= max(1, k) && ldb >= max(1, n) &&
		len(a) >= lda*(k-1)+k && len(b) >= ldb*(m-1)+n &&
		m*n*k >= minGemmWork && fits(m, n, lda, ldb)
	if !fast {
		o.nativeBLAS.Dtrsm(s, ul, tA, d, m, n, alpha, a, lda, b, ldb)
		return
	}
	// Column-major, B is Bᵀ (n×m): the side and the triangle flip.
	fs := byte('L')
	if s == blas.Left {
		fs = 'R'
	}
	fu, ft := fflipUplo(ul), ftrans(tA)
	fd := byte('N')
	if d == blas.Unit {
		fd = 'U'
	}
	fm, fn, flda, fldb := int32(n), int32(m), int32(lda), int32(ldb)
	o.lib.call(o.lib.dtrsm,
		uintptr(unsafe.Pointer(&fs)), uintptr(unsafe.Pointer(&fu)),
		uintptr(unsafe.Pointer(&ft)), uintptr(unsafe.Pointer(&fd)),
		uintptr(unsafe.Pointer(&fm)), uintptr(unsafe.Pointer(&fn)),
		uintptr(unsafe.Pointer(&alpha)),
		uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&flda)),
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&fldb)),
		1, 1, 1, 1)
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
}

// Sgemv computes y = alpha * op(A) * x + beta * y (float32).
func (o OpenBLAS) Sgemv(tA blas.Transpose, m, n int, alpha float32, a []float32, lda int, x []float32, incX int, beta float32, y []float32, incY int) {
	fast := validTrans(tA) && m > 0 && n > 0 && lda >= max(1, n) && incX != 0 && incY != 0 && alpha != 0
	lenX, lenY := m, n
	if tA == blas.NoTrans {
		lenX, lenY = n, m
	}
	fast = fast &&
		!((incX > 0 && (lenX-1)*incX >= len(x)) || (incX < 0 && (1-lenX)*incX >= len(x))) &&
		!((incY > 0 && (lenY-1)*incY >= len(y)) || (incY < 0 && (1-lenY)*incY >= len(y))) &&
		len(a) >= lda*(m-1)+n && m*n >= minGemvWork && fits(m, n, lda, incX, incY)
	if !fast {
		o.nativeBLAS.Sgemv(tA, m, n, alpha, a, lda, x, incX, beta, y, incY)
		return
	}
	// Column-major, A is Aᵀ (n×m).
	ft := fflipTrans(tA)
	fm, fn, flda, fincx, fincy := int32(n), int32(m), int32(lda), int32(incX), int32(incY)
	o.lib.call(o.lib.sgemv,
		uintptr(unsafe.Pointer(&ft)),
		uintptr(unsafe.Pointer(&fm)), uintptr(unsafe.Pointer(&fn)),
		uintptr(unsafe.Pointer(&alpha)),
		uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&flda)),
		uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&fincx)),
		uintptr(unsafe.Pointer(&beta)),
		uintptr(unsafe.Pointer(&y[0])), uintptr(unsafe.Pointer(&fincy)),
		1)
	runtime.KeepAlive(a)
	runtime.KeepAlive(x)
	runtime.KeepAlive(y)
}
