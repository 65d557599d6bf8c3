package linalg

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/lapack"
)

// transposeBlock is the tile edge used when copying between layouts.
const transposeBlock = 64

// toColMajor copies the m×n row-major matrix a (stride lda) into dst in
// column-major order with leading dimension m.
func toColMajor(dst, a []float64, m, n, lda int) {
	for i0 := 0; i0 < m; i0 += transposeBlock {
		i1 := min(i0+transposeBlock, m)
		for j0 := 0; j0 < n; j0 += transposeBlock {
			j1 := min(j0+transposeBlock, n)
			for i := i0; i < i1; i++ {
				row := a[i*lda : i*lda+n]
				for j := j0; j < j1; j++ {
					dst[i+j*m] = row[j]
				}
			}
		}
	}
}

// fromColMajor copies the m×n column-major matrix src (leading dimension
// ldsrc) into the row-major a (stride lda).
func fromColMajor(a []float64, lda int, src []float64, m, n, ldsrc int) {
	for i0 := 0; i0 < m; i0 += transposeBlock {
		i1 := min(i0+transposeBlock, m)
		for j0 := 0; j0 < n; j0 += transposeBlock {
			j1 := min(j0+transposeBlock, n)
			for i := i0; i < i1; i++ {
				row := a[i*lda : i*lda+n]
				for j := j0; j < j1; j++ {
					row[j] = src[i+j*ldsrc]
				}
			}
		}
	}
}

// checkInfo panics when a Fortran routine reports an illegal argument:
// arguments are validated before every call, so this is a bug here.
func checkInfo(routine string, info int32) {
	if info < 0 {
		panic(fmt.Sprintf("linalg: OpenBLAS %s rejected argument %d (bug in linalg)", routine, -info))
	}
}

// Dpotrf computes the Cholesky factorization of the symmetric positive
// definite matrix A (see gonum's Dpotrf). It returns false when A is not
// positive definite.
func (o OpenBLAS) Dpotrf(ul blas.Uplo, n int, a []float64, lda int) (ok bool) {
	if !validUplo(ul) || n < minLapackN || lda < max(1, n) || len(a) < (n-1)*lda+n || !fits(n, lda) {
		return o.nativeLAPACK.Dpotrf(ul, n, a, lda)
	}
	// A symmetric row-major triangle is the opposite triangle column-major;
	// the factor comes back as the matching triangle of the same storage.
	fu := fflipUplo(ul)
	fn, flda := int32(n), int32(lda)
	var info int32
	o.lib.call(o.lib.dpotrf,
		uintptr(unsafe.Pointer(&fu)), uintptr(unsafe.Pointer(&fn)),
		uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&flda)),
		uintptr(unsafe.Pointer(&info)), 1)
	runtime.KeepAlive(a)
	checkInfo("dpotrf", info)
	if info > 0 {
		return false
	}
	// gonum (like reference LAPACK) also fails on a NaN pivot; OpenBLAS's
	// kernel lets NaN through.
	for i := 0; i < n; i++ {
		if math.IsNaN(a[i*lda+i]) {
			return false
		}
	}
	return true
}

// Dgetrf computes the LU factorization with partial pivoting A = P * L * U
// (see gonum's Dgetrf). ipiv holds zero-based row interchanges. It returns
// false when U has an exactly zero diagonal entry.
func (o OpenBLAS) Dgetrf(m, n int, a []float64, lda int, ipiv []int) (ok bool) {
	mn := min(m, n)
	if m <= 0 || n <= 0 || lda < max(1, n) || len(a) < (m-1)*lda+n || len(ipiv) != mn ||
		mn < minLapackN || !fits(m, n, lda, m*n) {
		return o.nativeLAPACK.Dgetrf(m, n, a, lda, ipiv)
	}
	t := make([]float64, m*n)
	toColMajor(t, a, m, n, lda)
	piv := make([]int32, mn)
	fm, fn, fld := int32(m), int32(n), int32(m)
	var info int32
	o.lib.call(o.lib.dgetrf,
		uintptr(unsafe.Pointer(&fm)), uintptr(unsafe.Pointer(&fn)),
		uintptr(unsafe.Pointer(&t[0])), uintptr(unsafe.Pointer(&fld)),
		uintptr(unsafe.Pointer(&piv[0])), uintptr(unsafe.Pointer(&info)))
	runtime.KeepAlive(t)
	runtime.KeepAlive(piv)
	checkInfo("dgetrf", info)
	fromColMajor(a, lda, t, m, n, m)
	for i, p := range piv {
		ipiv[i] = int(p) - 1
	}
	return info == 0
}

// geqrfQuery returns the optimal Fortran workspace of dgeqrf_ for m×n.
func (o OpenBLAS) geqrfQuery(m, n int) int {
	fm, fn, fld, flwork := int32(m), int32(n), int32(max(1, m)), int32(-1)
	var info int32
	var q [1]float64
	var dummy [1]float64
	o.lib.call(o.lib.dgeqrf,
		uintptr(unsafe.Pointer(&fm)), uintptr(unsafe.Pointer(&fn)),
		uintptr(unsafe.Pointer(&dummy[0])), uintptr(unsafe.Pointer(&fld)),
		uintptr(unsafe.Pointer(&dummy[0])),
		uintptr(unsafe.Pointer(&q[0])), uintptr(unsafe.Pointer(&flwork)),
		uintptr(unsafe.Pointer(&info)))
	checkInfo("dgeqrf", info)
	return max(1, n, int(q[0]))
}

// Dgeqrf computes the QR factorization of the m×n matrix A (see gonum's
// Dgeqrf); the result has gonum's layout (reflectors below the diagonal,
// scalars in tau). A workspace query (lwork == -1) returns gonum's size,
// so callers pass the same workspace to either backend.
func (o OpenBLAS) Dgeqrf(m, n int, a []float64, lda int, tau, work []float64, lwork int) {
	k := min(m, n)
	if m <= 0 || n <= 0 || lda < max(1, n) || lwork == -1 || lwork < max(1, n) || len(work) < max(1, lwork) ||
		len(a) < (m-1)*lda+n || len(tau) != k || k < minLapackN || !fits(m, n, lda, m*n) {
		o.nativeLAPACK.Dgeqrf(m, n, a, lda, tau, work, lwork)
		return
	}
	t := make([]float64, m*n)
	toColMajor(t, a, m, n, lda)
	fwork := make([]float64, o.geqrfQuery(m, n))
	fm, fn, fld, flwork := int32(m), int32(n), int32(m), int32(len(fwork))
	var info int32
	o.lib.call(o.lib.dgeqrf,
		uintptr(unsafe.Pointer(&fm)), uintptr(unsafe.Pointer(&fn)),
		uintptr(unsafe.Pointer(&t[0])), uintptr(unsafe.Pointer(&fld)),
		uintptr(unsafe.Pointer(&tau[0])),
		uintptr(unsafe.Pointer(&fwork[0])), uintptr(unsafe.Pointer(&flwork)),
		uintptr(unsafe.Pointer(&info)))
	runtime.KeepAlive(t)
	runtime.KeepAlive(tau)
	runtime.KeepAlive(fwork)
	checkInfo("dgeqrf", info)
	fromColMajor(a, lda, t, m, n, m)
}

// Dorgqr generates the m×n matrix Q with orthonormal columns defined by k
// reflectors from Dgeqrf (see gonum's Dorgqr). A workspace query returns
// gonum's size.
func (o OpenBLAS) Dorgqr(m, n, k int, a []float64, lda int, tau, work []float64, lwork int) {
	if m <= 0 || n <= 0 || n > m || k <= 0 || k > n || lda < max(1, n) || lwork == -1 || lwork < max(1, n) ||
		len(work) < max(1, lwork) || len(a) < (m-1)*lda+n || len(tau) != k || n < minLapackN || !fits(m, n, lda, m*n) {
		o.nativeLAPACK.Dorgqr(m, n, k, a, lda, tau, work, lwork)
		return
	}
	t := make([]float64, m*n)
	toColMajor(t, a, m, n, lda)
	fm, fn, fk, fld := int32(m), int32(n), int32(k), int32(m)
	// call runs dorgqr on t with workspace w; lwork = -1 is LAPACK's workspace query (size in w[0]).
	call := func(w []float64, lwork int32) {
		var info int32
		o.lib.call(o.lib.dorgqr,
			uintptr(unsafe.Pointer(&fm)), uintptr(unsafe.Pointer(&fn)), uintptr(unsafe.Pointer(&fk)),
			uintptr(unsafe.Pointer(&t[0])), uintptr(unsafe.Pointer(&fld)),
			uintptr(unsafe.Pointer(&tau[0])),
			uintptr(unsafe.Pointer(&w[0])), uintptr(unsafe.Pointer(&lwork)),
			uintptr(unsafe.Pointer(&info)))
		runtime.KeepAlive(t)
		runtime.KeepAlive(tau)
		runtime.KeepAlive(w)
		checkInfo("dorgqr", info)
	}
	var q [1]float64
	call(q[:], -1)
	fwork := make([]float64, max(1, n, int(q[0])))
	call(fwork, int32(len(fwork)))
	fromColMajor(a, lda, t, m, n, m)
}

// Dsyev computes the eigenvalues (ascending, in w) and optionally the
// eigenvectors (columns of A) of the symmetric matrix A (see gonum's
// Dsyev), with LAPACK's dsyevr (MRRR). It returns false when the
// algorithm fails to converge. A workspace query returns gonum's size.
func (o OpenBLAS) Dsyev(jobz lapack.EVJob, uplo blas.Uplo, n int, a []float64, lda int, w, work []float64, lwork int) (ok bool) {
	if (jobz != lapack.EVNone && jobz != lapack.EVCompute) || !validUplo(uplo) || n < minLapackN ||
		lda < max(1, n) || lwork == -1 || lwork < max(1, 3*n-1) || len(work) < max(1, lwork) ||
		len(a) < (n-1)*lda+n || len(w) < n || !fits(n, lda, n*n, 26*n) {
		return o.nativeLAPACK.Dsyev(jobz, uplo, n, a, lda, w, work, lwork)
	}
	fjobz, frange, fu := byte(jobz), byte('A'), fflipUplo(uplo)
	fn, flda := int32(n), int32(lda)
	var vl, vu, abstol float64
	var il, iu, mfound, info int32
	var z []float64
	fldz := int32(1)
	if jobz == lapack.EVCompute {
		z = make([]float64, n*n)
		fldz = fn
	} else {
		z = make([]float64, 1)
	}
	isuppz := make([]int32, 2*n)
	call := func(work []float64, lwork int32, iwork []int32, liwork int32) {
		o.lib.call(o.lib.dsyevr,
			uintptr(unsafe.Pointer(&fjobz)), uintptr(unsafe.Pointer(&frange)), uintptr(unsafe.Pointer(&fu)),
			uintptr(unsafe.Pointer(&fn)), uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&flda)),
			uintptr(unsafe.Pointer(&vl)), uintptr(unsafe.Pointer(&vu)),
			uintptr(unsafe.Pointer(&il)), uintptr(unsafe.Pointer(&iu)),
			uintptr(unsafe.Pointer(&abstol)), uintptr(unsafe.Pointer(&mfound)),
			uintptr(unsafe.Pointer(&w[0])), uintptr(unsafe.Pointer(&z[0])), uintptr(unsafe.Pointer(&fldz)),
			uintptr(unsafe.Pointer(&isuppz[0])),
			uintptr(unsafe.Pointer(&work[0])), uintptr(unsafe.Pointer(&lwork)),
			uintptr(unsafe.Pointer(&iwork[0])), uintptr(unsafe.Pointer(&liwork)),
			uintptr(unsafe.Pointer(&info)), 1, 1, 1)
		runtime.KeepAlive(a)
		runtime.KeepAlive(w)
		runtime.KeepAlive(z)
		runtime.KeepAlive(isuppz)
		runtime.KeepAlive(work)
		runtime.KeepAlive(iwork)
		checkInfo("dsyevr", info)
	}
	qw, qi := make([]float64, 1), make([]int32, 1)
	call(qw, -1, qi, -1)
	fwork := make([]float64, max(26*n, int(qw[0])))
	iwork := make([]int32, max(10*n, int(qi[0])))
	call(fwork, int32(len(fwork)), iwork, int32(len(iwork)))
	if info > 0 {
		return false
	}
	if jobz == lapack.EVCompute {
		// z holds the eigenvectors as columns (column-major, ld n); gonum
		// returns them as the columns of the row-major A.
		fromColMajor(a, lda, z, n, n, n)
	}
	return true
}

// Dgesvd computes the singular value decomposition A = U * Σ * Vᵀ (see
// gonum's Dgesvd) with LAPACK's divide-and-conquer dgesdd. It returns
// false when the algorithm fails to converge. A workspace query returns
// gonum's size. SVDOverwrite is refused, as by gonum.
func (o OpenBLAS) Dgesvd(jobU, jobVT lapack.SVDJob, m, n int, a []float64, lda int, s, u []float64, ldu int, vt []float64, ldvt int, work []float64, lwork int) (ok bool) {
	minmn := min(m, n)
	validJob := func(j lapack.SVDJob) bool {
		return j == lapack.SVDAll || j == lapack.SVDStore || j == lapack.SVDNone
	}
	wantua, wantus := jobU == lapack.SVDAll, jobU == lapack.SVDStore
	wantva, wantvs := jobVT == lapack.SVDAll, jobVT == lapack.SVDStore
	minwork := max(3*minmn+max(m, n), 5*minmn)
	fast := validJob(jobU) && validJob(jobVT) && m > 0 && n > 0 && lda >= max(1, n) &&
		ldu >= 1 && !(wantua && ldu < m) && !(wantus && ldu < minmn) &&
		ldvt >= 1 && !((wantva || wantvs) && ldvt < n) &&
		lwork != -1 && lwork >= minwork && len(work) >= max(1, lwork) &&
		len(a) >= (m-1)*lda+n && len(s) >= minmn &&
		!((len(u) < (m-1)*ldu+m && wantua) || (len(u) < (m-1)*ldu+minmn && wantus)) &&
		!((len(vt) < (n-1)*ldvt+n && wantva) || (len(vt) < (minmn-1)*ldvt+n && wantvs)) &&
		minmn >= minLapackN && fits(m, n, lda, ldu, ldvt, m*m, n*n, 8*minmn)
	if !fast {
		return o.nativeLAPACK.Dgesvd(jobU, jobVT, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork)
	}
	// The row-major m×n A is the column-major n×m Aᵀ = V Σ Uᵀ: LAPACK's
	// left vectors of Aᵀ, column-major with leading dimension ldvt, are
	// exactly the rows of our Vᵀ; its right vectors (rows of its VT,
	// leading dimension ldu) are exactly the columns of our U. dgesdd
	// computes both sides alike, so the side that wants less gets scratch.
	rank := func(j lapack.SVDJob) int {
		switch j {
		case lapack.SVDAll:
			return 2
		case lapack.SVDStore:
			return 1
		}
		return 0
	}
	jobz := jobU
	if rank(jobVT) > rank(jobU) {
		jobz = jobVT
	}
	// Our U side (LAPACK's VT of Aᵀ): m×m for 'A', m×minmn for 'S'.
	uCols := map[lapack.SVDJob]int{lapack.SVDAll: m, lapack.SVDStore: minmn, lapack.SVDNone: 1}[jobz]
	uBuf, uLd := u, ldu
	if jobU != jobz {
		uBuf, uLd = make([]float64, m*uCols), uCols
	}
	// Our Vᵀ side (LAPACK's U of Aᵀ): n×n for 'A', minmn×n for 'S'.
	vRows := map[lapack.SVDJob]int{lapack.SVDAll: n, lapack.SVDStore: minmn, lapack.SVDNone: 1}[jobz]
	vBuf, vLd := vt, ldvt
	if jobVT != jobz {
		vBuf, vLd = make([]float64, vRows*n), n
	}
	if jobz == lapack.SVDNone {
		uBuf, uLd, vBuf, vLd = make([]float64, 1), 1, make([]float64, 1), 1
	}
	fjobz := byte(jobz)
	fm, fn, flda, fldu, fldvt := int32(n), int32(m), int32(lda), int32(vLd), int32(uLd)
	iwork := make([]int32, 8*minmn)
	var info int32
	call := func(work []float64, lwork int32) {
		o.lib.call(o.lib.dgesdd,
			uintptr(unsafe.Pointer(&fjobz)),
			uintptr(unsafe.Pointer(&fm)), uintptr(unsafe.Pointer(&fn)),
			uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&flda)),
			uintptr(unsafe.Pointer(&s[0])),
			uintptr(unsafe.Pointer(&vBuf[0])), uintptr(unsafe.Pointer(&fldu)),
			uintptr(unsafe.Pointer(&uBuf[0])), uintptr(unsafe.Pointer(&fldvt)),
			uintptr(unsafe.Pointer(&work[0])), uintptr(unsafe.Pointer(&lwork)),
			uintptr(unsafe.Pointer(&iwork[0])), uintptr(unsafe.Pointer(&info)), 1)
		runtime.KeepAlive(a)
		runtime.KeepAlive(s)
		runtime.KeepAlive(uBuf)
		runtime.KeepAlive(vBuf)
		runtime.KeepAlive(work)
		runtime.KeepAlive(iwork)
		checkInfo("dgesdd", info)
	}
	q := make([]float64, 1)
	call(q, -1)
	fwork := make([]float64, max(1, int(q[0])))
	call(fwork, int32(len(fwork)))
	if info > 0 {
		return false
	}
	if jobU == lapack.SVDStore && jobz == lapack.SVDAll {
		for i := 0; i < m; i++ {
			copy(u[i*ldu:i*ldu+minmn], uBuf[i*uLd:i*uLd+minmn])
		}
	}
	if jobVT == lapack.SVDStore && jobz == lapack.SVDAll {
		for i := 0; i < minmn; i++ {
			copy(vt[i*ldvt:i*ldvt+n], vBuf[i*vLd:i*vLd+n])
		}
	}
	return true
}
