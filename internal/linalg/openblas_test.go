package linalg

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/lapack"
)

// Each OpenBLAS override against gonum's native routine on the same input.
// Buffers carry padding (leading dimension > columns) that both must leave
// untouched, so whole buffers are compared.

const (
	tol64 = 1e-12 // relative Frobenius, float64
	tol32 = 2e-6  // relative Frobenius, float32
)

var transes = []blas.Transpose{blas.NoTrans, blas.Trans}

func TestOpenBLASGemm(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeBLAS{}
	rng := newRNG(1)
	sizes := []struct{ m, n, k int }{{1, 1, 1}, {3, 2, 4}, {37, 29, 41}, {64, 1, 100}, {1, 70, 80}, {65, 66, 67}}
	for _, sz := range sizes {
		for _, tA := range transes {
			for _, tB := range transes {
				for _, pad := range []int{0, 3} {
					name := fmt.Sprintf("%dx%dx%d/%c%c/pad%d", sz.m, sz.n, sz.k, tA, tB, pad)
					ar, ac := sz.m, sz.k
					if tA == blas.Trans {
						ar, ac = ac, ar
					}
					br, bc := sz.k, sz.n
					if tB == blas.Trans {
						br, bc = bc, br
					}
					lda, ldb, ldc := ac+pad, bc+pad, sz.n+pad
					a := randSlice(rng, ar*lda)
					b := randSlice(rng, br*ldb)
					c := randSlice(rng, sz.m*ldc)
					want, got := slices.Clone(c), slices.Clone(c)
					nat.Dgemm(tA, tB, sz.m, sz.n, sz.k, 1.5, a, lda, b, ldb, -0.5, want, ldc)
					ob.Dgemm(tA, tB, sz.m, sz.n, sz.k, 1.5, a, lda, b, ldb, -0.5, got, ldc)
					if e := relErrSlice(got, want); e > tol64 {
						t.Errorf("Dgemm %s: relative error %.3g", name, e)
					}
					a32, b32, c32 := randSlice32(rng, ar*lda), randSlice32(rng, br*ldb), randSlice32(rng, sz.m*ldc)
					want32, got32 := slices.Clone(c32), slices.Clone(c32)
					nat.Sgemm(tA, tB, sz.m, sz.n, sz.k, 1.5, a32, lda, b32, ldb, 0, want32, ldc)
					ob.Sgemm(tA, tB, sz.m, sz.n, sz.k, 1.5, a32, lda, b32, ldb, 0, got32, ldc)
					if e := relErrSlice32(got32, want32); e > tol32 {
						t.Errorf("Sgemm %s: relative error %.3g", name, e)
					}
				}
			}
		}
	}
}

func TestOpenBLASSyrk(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeBLAS{}
	rng := newRNG(2)
	for _, sz := range []struct{ n, k int }{{1, 1}, {5, 3}, {40, 30}, {33, 70}} {
		for _, ul := range []blas.Uplo{blas.Upper, blas.Lower} {
			for _, tA := range transes {
				name := fmt.Sprintf("n%d/k%d/%c/%c", sz.n, sz.k, ul, tA)
				row, col := sz.n, sz.k
				if tA == blas.Trans {
					row, col = col, row
				}
				lda, ldc := col+2, sz.n+1
				a := randSlice(rng, row*lda)
				c := randSlice(rng, sz.n*ldc)
				want, got := slices.Clone(c), slices.Clone(c)
				nat.Dsyrk(ul, tA, sz.n, sz.k, 0.7, a, lda, 2, want, ldc)
				ob.Dsyrk(ul, tA, sz.n, sz.k, 0.7, a, lda, 2, got, ldc)
				if e := relErrSlice(got, want); e > tol64 {
					t.Errorf("Dsyrk %s: relative error %.3g", name, e)
				}
				a32, c32 := randSlice32(rng, row*lda), randSlice32(rng, sz.n*ldc)
				want32, got32 := slices.Clone(c32), slices.Clone(c32)
				nat.Ssyrk(ul, tA, sz.n, sz.k, 0.7, a32, lda, 1, want32, ldc)
				ob.Ssyrk(ul, tA, sz.n, sz.k, 0.7, a32, lda, 1, got32, ldc)
				if e := relErrSlice32(got32, want32); e > tol32 {
					t.Errorf("Ssyrk %s: relative error %.3g", name, e)
				}
			}
		}
	}
}

func TestOpenBLASTrsm(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeBLAS{}
	rng := newRNG(3)
	for _, sz := range []struct{ m, n int }{{1, 1}, {4, 3}, {40, 30}, {25, 60}} {
		for _, s := range []blas.Side{blas.Left, blas.Right} {
			for _, ul := range []blas.Uplo{blas.Upper, blas.Lower} {
				for _, tA := range transes {
					for _, d := range []blas.Diag{blas.NonUnit, blas.Unit} {
						name := fmt.Sprintf("%dx%d/%c%c%c%c", sz.m, sz.n, s, ul, tA, d)
						k := sz.n
						if s == blas.Left {
							k = sz.m
						}
						lda, ldb := k+1, sz.n+2
						a := randSlice(rng, k*lda)
						for i := range a {
							a[i] *= 0.1
						}
						for i := 0; i < k; i++ {
							a[i*lda+i] = 2 + math.Abs(a[i*lda+i])
						}
						b := randSlice(rng, sz.m*ldb)
						want, got := slices.Clone(b), slices.Clone(b)
						nat.Dtrsm(s, ul, tA, d, sz.m, sz.n, 1.25, a, lda, want, ldb)
						ob.Dtrsm(s, ul, tA, d, sz.m, sz.n, 1.25, a, lda, got, ldb)
						if e := relErrSlice(got, want); e > tol64 {
							t.Errorf("Dtrsm %s: relative error %.3g", name, e)
						}
					}
				}
			}
		}
	}
}

func TestOpenBLASSgemv(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeBLAS{}
	rng := newRNG(4)
	for _, sz := range []struct{ m, n int }{{1, 1}, {3, 5}, {80, 70}, {64, 130}} {
		for _, tA := range transes {
			for _, inc := range []struct{ x, y int }{{1, 1}, {2, -1}, {-3, 2}} {
				name := fmt.Sprintf("%dx%d/%c/inc%d,%d", sz.m, sz.n, tA, inc.x, inc.y)
				lenX, lenY := sz.n, sz.m
				if tA == blas.Trans {
					lenX, lenY = lenY, lenX
				}
				lda := sz.n + 1
				a := randSlice32(rng, sz.m*lda)
				x := randSlice32(rng, 1+(lenX-1)*abs(inc.x))
				y := randSlice32(rng, 1+(lenY-1)*abs(inc.y))
				want, got := slices.Clone(y), slices.Clone(y)
				nat.Sgemv(tA, sz.m, sz.n, 2, a, lda, x, inc.x, 0.5, want, inc.y)
				ob.Sgemv(tA, sz.m, sz.n, 2, a, lda, x, inc.x, 0.5, got, inc.y)
				if e := relErrSlice32(got, want); e > tol32 {
					t.Errorf("Sgemv %s: relative error %.3g", name, e)
				}
			}
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestOpenBLASPotrf(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeLAPACK{}
	rng := newRNG(5)
	for _, n := range []int{1, 7, 16, 50, 130} {
		for _, ul := range []blas.Uplo{blas.Upper, blas.Lower} {
			h := gram(rng, n+5, n, 0)
			lda := n + 3
			a := randSlice(rng, n*lda) // the other triangle is garbage that must stay
			for i := 0; i < n; i++ {
				for j := 0; j < n; j++ {
					if (ul == blas.Upper && j >= i) || (ul == blas.Lower && j <= i) {
						a[i*lda+j] = h.At(i, j)
					}
				}
			}
			want, got := slices.Clone(a), slices.Clone(a)
			okW := nat.Dpotrf(ul, n, want, lda)
			okG := ob.Dpotrf(ul, n, got, lda)
			if !okW || !okG {
				t.Fatalf("n=%d %c: ok gonum=%v openblas=%v, want true", n, ul, okW, okG)
			}
			if e := relErrSlice(got, want); e > tol64 {
				t.Errorf("Dpotrf n=%d %c: relative error %.3g", n, ul, e)
			}
		}
	}
	// Not positive definite, and NaN on the diagonal: both report false.
	for _, tc := range []struct {
		name string
		set  func(a []float64, n int)
	}{
		{"negative eigenvalue", func(a []float64, n int) { a[(n/2)*n+n/2] = -1e3 }},
		{"NaN", func(a []float64, n int) { a[(n/2)*n+n/2] = math.NaN() }},
	} {
		n := 40
		h := gram(rng, n+5, n, 0)
		a := slices.Clone(h.RawSymmetric().Data)
		tc.set(a, n)
		okW := nat.Dpotrf(blas.Upper, n, slices.Clone(a), n)
		okG := ob.Dpotrf(blas.Upper, n, slices.Clone(a), n)
		if okW || okG {
			t.Errorf("%s: ok gonum=%v openblas=%v, want false", tc.name, okW, okG)
		}
	}
}

func TestOpenBLASGetrf(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeLAPACK{}
	rng := newRNG(6)
	for _, sz := range []struct{ m, n int }{{1, 1}, {5, 5}, {40, 40}, {50, 30}, {30, 50}, {100, 100}} {
		lda := sz.n + 2
		a := randSlice(rng, sz.m*lda)
		mn := min(sz.m, sz.n)
		want, got := slices.Clone(a), slices.Clone(a)
		pw, pg := make([]int, mn), make([]int, mn)
		okW := nat.Dgetrf(sz.m, sz.n, want, lda, pw)
		okG := ob.Dgetrf(sz.m, sz.n, got, lda, pg)
		if okW != okG || !okW {
			t.Errorf("%dx%d: ok gonum=%v openblas=%v, want true", sz.m, sz.n, okW, okG)
		}
		if !slices.Equal(pw, pg) {
			t.Errorf("%dx%d: pivots differ: gonum %v openblas %v", sz.m, sz.n, pw, pg)
		}
		if e := relErrSlice(got, want); e > tol64 {
			t.Errorf("Dgetrf %dx%d: relative error %.3g", sz.m, sz.n, e)
		}
	}
	// An exactly zero column gives an exactly zero pivot: both report false.
	n := 30
	a := randSlice(rng, n*n)
	for i := 0; i < n; i++ {
		a[i*n+7] = 0
	}
	okW := nat.Dgetrf(n, n, slices.Clone(a), n, make([]int, n))
	okG := ob.Dgetrf(n, n, slices.Clone(a), n, make([]int, n))
	if okW || okG {
		t.Errorf("zero column: ok gonum=%v openblas=%v, want false", okW, okG)
	}
}

func TestOpenBLASQR(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeLAPACK{}
	rng := newRNG(7)
	for _, sz := range []struct{ m, n, k int }{{1, 1, 1}, {40, 30, 30}, {30, 40, 30}, {50, 50, 50}, {60, 40, 25}} {
		name := fmt.Sprintf("%dx%d", sz.m, sz.n)
		lda := sz.n + 1
		a := randSlice(rng, sz.m*lda)
		k := min(sz.m, sz.n)
		want, got := slices.Clone(a), slices.Clone(a)
		tw, tg := make([]float64, k), make([]float64, k)
		work := make([]float64, 1)
		nat.Dgeqrf(sz.m, sz.n, want, lda, tw, work, -1)
		lwork := int(work[0])
		if ob.Dgeqrf(sz.m, sz.n, got, lda, tg, work, -1); int(work[0]) != lwork {
			t.Errorf("Dgeqrf %s: workspace query %v, want gonum's %d", name, work[0], lwork)
		}
		nat.Dgeqrf(sz.m, sz.n, want, lda, tw, make([]float64, lwork), lwork)
		ob.Dgeqrf(sz.m, sz.n, got, lda, tg, make([]float64, lwork), lwork)
		if e := relErrSlice(got, want); e > tol64 {
			t.Errorf("Dgeqrf %s: relative error %.3g", name, e)
		}
		if e := relErrSlice(tg, tw); e > tol64 {
			t.Errorf("Dgeqrf %s: tau relative error %.3g", name, e)
		}
		if sz.n > sz.m {
			continue
		}
		// Q from the first k reflectors (gonum's factorization for both).
		qn := sz.n
		kk := sz.k
		work = make([]float64, 1)
		nat.Dorgqr(sz.m, qn, kk, want, lda, tw[:kk], work, -1)
		lwork = int(work[0])
		qw, qg := slices.Clone(want), slices.Clone(want)
		nat.Dorgqr(sz.m, qn, kk, qw, lda, tw[:kk], make([]float64, lwork), lwork)
		ob.Dorgqr(sz.m, qn, kk, qg, lda, tw[:kk], make([]float64, lwork), lwork)
		if e := relErrSlice(qg, qw); e > tol64 {
			t.Errorf("Dorgqr %s k=%d: relative error %.3g", name, kk, e)
		}
	}
}

// signFixCols flips each column of the row-major n×cols x (stride ld) so
// that its largest-magnitude entry is positive.
func signFixCols(x []float64, rows, cols, ld int) {
	for j := 0; j < cols; j++ {
		best := 0
		for i := 0; i < rows; i++ {
			if math.Abs(x[i*ld+j]) > math.Abs(x[best*ld+j]) {
				best = i
			}
		}
		if x[best*ld+j] < 0 {
			for i := 0; i < rows; i++ {
				x[i*ld+j] = -x[i*ld+j]
			}
		}
	}
}

func signFixRows(x []float64, rows, cols, ld int) {
	for i := 0; i < rows; i++ {
		row := x[i*ld : i*ld+cols]
		best := 0
		for j, v := range row {
			if math.Abs(v) > math.Abs(row[best]) {
				best = j
			}
		}
		if row[best] < 0 {
			for j := range row {
				row[j] = -row[j]
			}
		}
	}
}

func TestOpenBLASSyev(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeLAPACK{}
	rng := newRNG(8)
	for _, n := range []int{1, 8, 16, 40, 90} {
		for _, ul := range []blas.Uplo{blas.Upper, blas.Lower} {
			for _, job := range []lapack.EVJob{lapack.EVCompute, lapack.EVNone} {
				name := fmt.Sprintf("n%d/%c/%c", n, ul, job)
				lda := n + 2
				a := randSlice(rng, n*lda)
				for i := 0; i < n; i++ {
					for j := 0; j < i; j++ {
						a[i*lda+j] = a[j*lda+i] // symmetric, both triangles
					}
				}
				work := make([]float64, 1)
				nat.Dsyev(job, ul, n, a, lda, nil, work, -1)
				lwork := int(work[0])
				want, got := slices.Clone(a), slices.Clone(a)
				ww, wg := make([]float64, n), make([]float64, n)
				okW := nat.Dsyev(job, ul, n, want, lda, ww, make([]float64, lwork), lwork)
				okG := ob.Dsyev(job, ul, n, got, lda, wg, make([]float64, lwork), lwork)
				if !okW || !okG {
					t.Fatalf("%s: ok gonum=%v openblas=%v", name, okW, okG)
				}
				if e := relErrSlice(wg, ww); e > tol64 {
					t.Errorf("Dsyev %s: eigenvalues relative error %.3g", name, e)
				}
				if job == lapack.EVCompute {
					signFixCols(want, n, n, lda)
					signFixCols(got, n, n, lda)
					for i := 0; i < n; i++ {
						if e := relErrSlice(got[i*lda:i*lda+n], want[i*lda:i*lda+n]); e > 1e-9 {
							t.Errorf("Dsyev %s: eigenvector row %d relative error %.3g", name, i, e)
							break
						}
					}
				}
			}
		}
	}
}

func TestOpenBLASGesvd(t *testing.T) {
	ob := openBLASOrSkip(t)
	nat := nativeLAPACK{}
	rng := newRNG(9)
	jobs := []struct{ u, vt lapack.SVDJob }{
		{lapack.SVDAll, lapack.SVDAll}, {lapack.SVDStore, lapack.SVDStore}, {lapack.SVDNone, lapack.SVDNone},
		{lapack.SVDAll, lapack.SVDNone}, {lapack.SVDStore, lapack.SVDAll}, {lapack.SVDNone, lapack.SVDStore},
		{lapack.SVDAll, lapack.SVDStore},
	}
	for _, sz := range []struct{ m, n int }{{1, 1}, {6, 4}, {40, 30}, {30, 40}, {33, 33}, {70, 20}} {
		for _, job := range jobs {
			name := fmt.Sprintf("%dx%d/%c%c", sz.m, sz.n, job.u, job.vt)
			m, n, mn := sz.m, sz.n, min(sz.m, sz.n)
			lda := n + 1
			a := randSlice(rng, m*lda)
			ucols, vtrows := map[lapack.SVDJob]int{lapack.SVDAll: m, lapack.SVDStore: mn, lapack.SVDNone: 1}[job.u],
				map[lapack.SVDJob]int{lapack.SVDAll: n, lapack.SVDStore: mn, lapack.SVDNone: 1}[job.vt]
			ldu, ldvt := ucols+1, n+2
			u0 := randSlice(rng, m*ldu)
			vt0 := randSlice(rng, vtrows*ldvt)
			work := make([]float64, 1)
			nat.Dgesvd(job.u, job.vt, m, n, a, lda, nil, u0, ldu, vt0, ldvt, work, -1)
			lwork := int(work[0])
			aw, ag := slices.Clone(a), slices.Clone(a)
			sw, sg := make([]float64, mn), make([]float64, mn)
			uw, ug := slices.Clone(u0), slices.Clone(u0)
			vw, vg := slices.Clone(vt0), slices.Clone(vt0)
			okW := nat.Dgesvd(job.u, job.vt, m, n, aw, lda, sw, uw, ldu, vw, ldvt, make([]float64, lwork), lwork)
			okG := ob.Dgesvd(job.u, job.vt, m, n, ag, lda, sg, ug, ldu, vg, ldvt, make([]float64, lwork), lwork)
			if !okW || !okG {
				t.Fatalf("%s: ok gonum=%v openblas=%v", name, okW, okG)
			}
			if e := relErrSlice(sg, sw); e > tol64 {
				t.Errorf("Dgesvd %s: singular values relative error %.3g", name, e)
			}
			// The first min(m,n) singular vectors are unique up to sign; the
			// rest of a full U or Vᵀ only spans the complement, so check
			// that it is orthonormal.
			if job.u != lapack.SVDNone {
				signFixCols(uw, m, mn, ldu)
				signFixCols(ug, m, mn, ldu)
				for i := 0; i < m; i++ {
					if e := relErrSlice(ug[i*ldu:i*ldu+mn], uw[i*ldu:i*ldu+mn]); e > 1e-9 {
						t.Errorf("Dgesvd %s: U row %d relative error %.3g", name, i, e)
						break
					}
				}
				checkOrthonormalCols(t, name+" U", ug, m, ucols, ldu)
			}
			if job.vt != lapack.SVDNone {
				signFixRows(vw, mn, n, ldvt)
				signFixRows(vg, mn, n, ldvt)
				if e := relErrSlice(vg[:(mn-1)*ldvt+n], vw[:(mn-1)*ldvt+n]); e > 1e-9 {
					t.Errorf("Dgesvd %s: Vᵀ relative error %.3g", name, e)
				}
				checkOrthonormalRows(t, name+" Vᵀ", vg, vtrows, n, ldvt)
			}
		}
	}
}

func checkOrthonormalCols(t *testing.T, name string, x []float64, rows, cols, ld int) {
	t.Helper()
	for p := 0; p < cols; p++ {
		for q := p; q < cols; q++ {
			var d float64
			for i := 0; i < rows; i++ {
				d += x[i*ld+p] * x[i*ld+q]
			}
			want := 0.0
			if p == q {
				want = 1
			}
			if math.Abs(d-want) > 1e-12 {
				t.Errorf("%s: columns %d,%d dot %.3g, want %v", name, p, q, d, want)
				return
			}
		}
	}
}

func checkOrthonormalRows(t *testing.T, name string, x []float64, rows, cols, ld int) {
	t.Helper()
	for p := 0; p < rows; p++ {
		for q := p; q < rows; q++ {
			var d float64
			for j := 0; j < cols; j++ {
				d += x[p*ld+j] * x[q*ld+j]
			}
			want := 0.0
			if p == q {
				want = 1
			}
			if math.Abs(d-want) > 1e-12 {
				t.Errorf("%s: rows %d,%d dot %.3g, want %v", name, p, q, d, want)
				return
			}
		}
	}
}

// TestOpenBLASPanicsLikeGonum checks that invalid calls panic with
// gonum's exact message on the OpenBLAS implementation.
func TestOpenBLASPanicsLikeGonum(t *testing.T) {
	ob := openBLASOrSkip(t)
	type impls struct {
		b interface {
			blas.Float64
			blas.Float32
		}
		l lapack.Float64
	}
	both := map[string]impls{
		"gonum":    {nativeBLAS{}, nativeLAPACK{}},
		"openblas": {ob, ob},
	}
	big := make([]float64, 100*100)
	big32 := make([]float32, 100*100)
	cases := []struct {
		name string
		call func(i impls)
	}{
		{"Dgemm bad transpose", func(i impls) { i.b.Dgemm('X', blas.NoTrans, 50, 50, 50, 1, big, 50, big, 50, 0, big, 50) }},
		{"Dgemm m<0", func(i impls) { i.b.Dgemm(blas.NoTrans, blas.NoTrans, -1, 50, 50, 1, big, 50, big, 50, 0, big, 50) }},
		{"Dgemm bad lda", func(i impls) { i.b.Dgemm(blas.NoTrans, blas.NoTrans, 50, 50, 50, 1, big, 40, big, 50, 0, big, 50) }},
		{"Dgemm short a", func(i impls) {
			i.b.Dgemm(blas.NoTrans, blas.NoTrans, 50, 50, 50, 1, big[:100], 50, big, 50, 0, big, 50)
		}},
		{"Sgemm short c", func(i impls) {
			i.b.Sgemm(blas.Trans, blas.NoTrans, 50, 50, 50, 1, big32, 50, big32, 50, 0, big32[:10], 50)
		}},
		{"Dsyrk bad uplo", func(i impls) { i.b.Dsyrk('X', blas.NoTrans, 50, 50, 1, big, 50, 0, big, 50) }},
		{"Ssyrk bad ldc", func(i impls) { i.b.Ssyrk(blas.Upper, blas.NoTrans, 50, 50, 1, big32, 50, 0, big32, 49) }},
		{"Dtrsm bad side", func(i impls) {
			i.b.Dtrsm('X', blas.Upper, blas.NoTrans, blas.Unit, 50, 50, 1, big, 50, big, 50)
		}},
		{"Dtrsm bad diag", func(i impls) {
			i.b.Dtrsm(blas.Left, blas.Upper, blas.NoTrans, 'X', 50, 50, 1, big, 50, big, 50)
		}},
		{"Sgemv zero incX", func(i impls) { i.b.Sgemv(blas.NoTrans, 80, 80, 1, big32, 80, big32, 0, 0, big32, 1) }},
		{"Sgemv short y", func(i impls) { i.b.Sgemv(blas.NoTrans, 80, 80, 1, big32, 80, big32, 1, 0, big32[:79], 1) }},
		{"Dpotrf bad uplo", func(i impls) { i.l.Dpotrf('X', 50, big, 50) }},
		{"Dpotrf short a", func(i impls) { i.l.Dpotrf(blas.Upper, 50, big[:100], 50) }},
		{"Dgetrf bad ipiv", func(i impls) { i.l.Dgetrf(50, 50, big, 50, make([]int, 49)) }},
		{"Dgeqrf small lwork", func(i impls) { i.l.Dgeqrf(50, 50, big, 50, make([]float64, 50), big, 10) }},
		{"Dorgqr n>m", func(i impls) { i.l.Dorgqr(20, 30, 20, big, 30, make([]float64, 20), big, 100) }},
		{"Dsyev bad job", func(i impls) { i.l.Dsyev('X', blas.Upper, 50, big, 50, big, big, 1000) }},
		{"Dsyev short w", func(i impls) { i.l.Dsyev(lapack.EVCompute, blas.Upper, 50, big, 50, big[:10], big[:1000], 1000) }},
		{"Dgesvd overwrite", func(i impls) {
			i.l.Dgesvd(lapack.SVDOverwrite, lapack.SVDNone, 50, 50, big, 50, big, big, 50, big, 50, big, 1000)
		}},
		{"Dgesvd small lwork", func(i impls) {
			i.l.Dgesvd(lapack.SVDAll, lapack.SVDAll, 50, 50, big, 50, big, big, 50, big, 50, big, 10)
		}},
	}
	for _, tc := range cases {
		msgs := map[string]any{}
		for name, i := range both {
			func() {
				defer func() { msgs[name] = recover() }()
				tc.call(i)
			}()
		}
		if msgs["gonum"] == nil {
			t.Errorf("%s: gonum did not panic", tc.name)
			continue
		}
		if msgs["gonum"] != msgs["openblas"] {
			t.Errorf("%s: openblas panicked with %v, want gonum's %v", tc.name, msgs["openblas"], msgs["gonum"])
		}
	}
}

// TestOpenBLASCallsLibrary checks that problems above the size thresholds
// reach the library and tiny ones stay in gonum.
func TestOpenBLASCallsLibrary(t *testing.T) {
	ob := openBLASOrSkip(t)
	rng := newRNG(10)
	n := 64
	a, b, c := randSlice(rng, n*n), randSlice(rng, n*n), randSlice(rng, n*n)
	a32 := randSlice32(rng, n*n)
	spd := gram(rng, n+3, n, 0).RawSymmetric().Data
	work := make([]float64, 100*n)
	cases := []struct {
		name  string
		calls int64
		f     func()
	}{
		{"Dgemm", 1, func() { ob.Dgemm(blas.NoTrans, blas.NoTrans, n, n, n, 1, a, n, b, n, 0, c, n) }},
		{"Dgemm tiny", 0, func() { ob.Dgemm(blas.NoTrans, blas.NoTrans, 4, 4, 4, 1, a, n, b, n, 0, c, n) }},
		{"Dgemm alpha=0", 0, func() { ob.Dgemm(blas.NoTrans, blas.NoTrans, n, n, n, 0, a, n, b, n, 2, c, n) }},
		{"Sgemm", 1, func() { ob.Sgemm(blas.Trans, blas.NoTrans, n, n, n, 1, a32, n, a32, n, 0, make([]float32, n*n), n) }},
		{"Dsyrk", 1, func() { ob.Dsyrk(blas.Upper, blas.NoTrans, n, n, 1, a, n, 0, c, n) }},
		{"Ssyrk", 1, func() { ob.Ssyrk(blas.Lower, blas.Trans, n, n, 1, a32, n, 0, make([]float32, n*n), n) }},
		{"Dtrsm", 1, func() {
			ob.Dtrsm(blas.Left, blas.Upper, blas.NoTrans, blas.Unit, n, n, 1, a, n, slices.Clone(b), n)
		}},
		{"Sgemv", 1, func() { ob.Sgemv(blas.NoTrans, n, n, 1, a32, n, a32, 1, 0, make([]float32, n), 1) }},
		{"Dpotrf", 1, func() { ob.Dpotrf(blas.Upper, n, slices.Clone(spd), n) }},
		{"Dgetrf", 1, func() { ob.Dgetrf(n, n, slices.Clone(a), n, make([]int, n)) }},
		{"Dgeqrf", 2, func() { ob.Dgeqrf(n, n, slices.Clone(a), n, make([]float64, n), work, len(work)) }},
		{"Dgeqrf query", 0, func() { ob.Dgeqrf(n, n, slices.Clone(a), n, make([]float64, n), work, -1) }},
		{"Dorgqr", 2, func() { ob.Dorgqr(n, n, n, slices.Clone(a), n, make([]float64, n), work, len(work)) }},
		{"Dsyev", 2, func() {
			ob.Dsyev(lapack.EVCompute, blas.Upper, n, slices.Clone(spd), n, make([]float64, n), work, len(work))
		}},
		{"Dgesvd", 2, func() {
			ob.Dgesvd(lapack.SVDAll, lapack.SVDNone, n, n, slices.Clone(a), n, make([]float64, n), make([]float64, n*n), n, nil, 1, work, len(work))
		}},
		{"Dgesvd tiny", 0, func() {
			ob.Dgesvd(lapack.SVDAll, lapack.SVDAll, 3, 3, slices.Clone(a), 3, make([]float64, 3), make([]float64, 9), 3, make([]float64, 9), 3, work, len(work))
		}},
	}
	for _, tc := range cases {
		before := ob.lib.calls.Load()
		tc.f()
		if got := ob.lib.calls.Load() - before; got != tc.calls {
			t.Errorf("%s: %d library calls, want %d", tc.name, got, tc.calls)
		}
	}
}

// TestOpenBLASConcurrentCalls: goroutines calling OpenBLAS at once get the
// same results as sequential calls (merge workers solve sites in parallel).
func TestOpenBLASConcurrentCalls(t *testing.T) {
	ob := openBLASOrSkip(t)
	rng := newRNG(11)
	const workers, n = 6, 96
	inputs := make([][]float64, workers)
	for i := range inputs {
		inputs[i] = gram(rng, n+4, n, 0).RawSymmetric().Data
	}
	compute := func(in []float64) []float64 {
		c := make([]float64, n*n)
		ob.Dgemm(blas.NoTrans, blas.Trans, n, n, n, 1, in, n, in, n, 0, c, n)
		if !ob.Dpotrf(blas.Upper, n, c, n) {
			panic("not positive definite")
		}
		return c
	}
	want := make([][]float64, workers)
	for i, in := range inputs {
		want[i] = compute(in)
	}
	got := make([][]float64, workers)
	var wg sync.WaitGroup
	for i, in := range inputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := 0; rep < 5; rep++ {
				got[i] = compute(in)
			}
		}()
	}
	wg.Wait()
	for i := range want {
		if e := relErrSlice(got[i], want[i]); e > tol64 {
			t.Errorf("worker %d: relative difference %.3g from the sequential result", i, e)
		}
	}
}
