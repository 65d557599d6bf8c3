package model

import (
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// Products of activations with weights. A float32 weight goes into the GEMM as it is held. A
// 16-bit weight is widened to float32 one tile of output columns at a time, and each tile is one
// GEMM. The q/k/v and gate/up projections, which read the same input, run as one GEMM over
// their concatenated weights where that cannot change a bit of the result.
//
// Why tiles and fusion leave every bit as it is. Each output element of a GEMM is a dot product
// over k, and both BLAS implementations behind blas32 compute it in an order fixed by k alone
// (gonum in 64-wide blocks of k on its parallel path, OpenBLAS in its GEMM_Q blocks of k), so
// which columns a call covers does not matter, as long as the call takes the same path as the
// whole product would: gonum's serial and parallel paths sum differently, and OpenBLAS has
// small-matrix kernels and a single-threaded driver that split k differently. bigProduct is
// every one of those thresholds; a tile (or a fused product) is only used where it and each of
// its parts are past all of them. TestTiledProductsBitIdentical holds this against both
// backends for the shapes of the fixtures and the benchmark model.

// Tile sizes of widened products: a tile has about tileBytes of float32 values and at least
// tileMin columns (fewer columns would repeat the packing of the activations too often). Tests
// lower them to make the fixtures' products run in many tiles.
var (
	tileBytes = 8 << 20
	tileMin   = 512
)

// bigProduct reports whether an m x k by k x n float32 product is past every size threshold at
// which the BLAS implementations change the order of the sums:
//   - gonum runs 64 x 64 blocks in parallel, k in blocks of 64, once there are 4 blocks of the
//     output, and a serial loop with one dot product over all of k below that;
//   - internal/linalg sends calls with m n k < 16^3 to gonum, larger ones to OpenBLAS;
//   - OpenBLAS runs one thread up to m n k = 64^3 (its single-threaded driver splits k unlike
//     the threaded one), and its small-matrix kernels (one pass over k) up to m n k = 100^3, the
//     TN one also only while its m n <= 1200.
func bigProduct(m, n, k int) bool {
	blocks := func(x int) int { return (x + 63) / 64 }
	return blocks(m)*blocks(n) >= 4 && m*n*k > 1_000_000 && m*n > 1200
}

// tileCols returns the width of the column tiles of an m x k by k x n product with a widened
// weight: n when the product is not big (then it is widened whole), else a multiple of 64 that
// keeps every tile big, near tileBytes and at least tileMin.
func tileCols(m, n, k int) int {
	if !bigProduct(m, n, k) {
		return n
	}
	t := max(tileMin, (tileBytes/(4*k))&^63, 64)
	for t < n && !bigProduct(m, t, k) {
		t += 64
	}
	if t*2 > n {
		return n
	}
	return t
}

// scratch holds float32 buffers for widened tiles and LoRA intermediates.
var scratch sync.Pool

func getScratch(n int) *[]float32 {
	if p, ok := scratch.Get().(*[]float32); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]float32, n)
	return &b
}

func putScratch(p *[]float32) { scratch.Put(p) }

// mulT computes y = beta*y + x W^T for the rows x k matrix x (row stride ldx), where W is the
// row-wise concatenation of ws (each Out_i x k), into the first sum(Out_i) columns of y (row
// stride ldy). Parts are fused into one product when they are float32 and contiguous, or 16-bit
// of one dtype, and every part is a big product on its own.
func mulT(x []float32, ldx, rows int, ws []Weight, y []float32, ldy int, beta float32) {
	k := ws[0].cols
	if len(ws) > 1 && fusable(rows, k, ws) {
		if f, ok := contiguous(ws); ok {
			gemmNT(x, ldx, rows, k, f, len(f)/k, y, ldy, beta)
			for _, w := range ws {
				runtime.KeepAlive(w.keep)
			}
			return
		}
		if ws[0].dtype != safetensors.F32 {
			widenedNT(x, ldx, rows, ws, y, ldy, beta)
			return
		}
	}
	off := 0
	for _, w := range ws {
		if w.dtype == safetensors.F32 {
			gemmNT(x, ldx, rows, k, w.f32, w.rows, y[off:], ldy, beta)
		} else {
			widenedNT(x, ldx, rows, []Weight{w}, y[off:], ldy, beta)
		}
		runtime.KeepAlive(w.keep)
		off += w.rows
	}
}

// fusable reports whether the parts may run as one product: one dtype, one width that is a
// multiple of 4 (so every row keeps its alignment to 16 bytes, see widenedNT), and each part big
// (then so is the whole, and every element keeps its order of summation).
func fusable(rows, k int, ws []Weight) bool {
	if k%4 != 0 {
		return false
	}
	for _, w := range ws {
		if w.dtype != ws[0].dtype || w.cols != k || !bigProduct(rows, w.rows, k) {
			return false
		}
	}
	return true
}

// contiguous returns the values of float32 parts that lie one after another in one array.
func contiguous(ws []Weight) ([]float32, bool) {
	if ws[0].dtype != safetensors.F32 {
		return nil, false
	}
	all := ws[0].f32
	for _, w := range ws[1:] {
		n := len(all)
		if w.dtype != safetensors.F32 || len(w.f32) == 0 || cap(all)-n < len(w.f32) || &all[:n+1][n] != &w.f32[0] {
			return nil, false
		}
		all = all[:n+len(w.f32)]
	}
	return all, true
}

// gemmNT is y = beta*y + x w^T for w of n x k.
func gemmNT(x []float32, ldx, rows, k int, w []float32, n int, y []float32, ldy int, beta float32) {
	blas32.Implementation().Sgemm(blas.NoTrans, blas.Trans, rows, n, k, 1, x, ldx, w, k, beta, y, ldy)
}

// widenedNT is mulT over 16-bit parts: the concatenated rows are widened a tile at a time (a
// tile may span parts) and each tile is one product.
//
// A tile row starts where it would in a float32 copy of its weight in a fresh (16-byte aligned)
// allocation, relative to a 16-byte boundary: gonum's dot product kernel peels elements until
// its second operand, the weight row, is aligned, so the alignment decides the order of the
// sums. Tiles start at multiples of 64 rows, and fused parts have widths that are multiples of 4.
func widenedNT(x []float32, ldx, rows int, ws []Weight, y []float32, ldy int, beta float32) {
	k, n := ws[0].cols, 0
	for _, w := range ws {
		n += w.rows
	}
	t := tileCols(rows, n, k)
	buf := getScratch(min(n, 2*t)*k + 3) // the last tile takes the remainder: < 2t columns
	defer putScratch(buf)
	for j0 := 0; j0 < n; j0 += t {
		j1 := min(n, j0+t)
		if n-j1 < t { // the last tile takes the remainder, so no tile is narrower than t
			j1 = n
		}
		o := j0 * k % 4
		tile := (*buf)[o : o+(j1-j0)*k]
		widenSpan(tile, ws, j0, j1)
		gemmNT(x, ldx, rows, k, tile, j1-j0, y[j0:], ldy, beta)
		if j1 == n {
			break
		}
	}
	for _, w := range ws {
		runtime.KeepAlive(w.keep)
	}
}

// widenSpan writes rows [lo, hi) of the row-wise concatenation of ws into dst.
func widenSpan(dst []float32, ws []Weight, lo, hi int) {
	k, base := ws[0].cols, 0
	for _, w := range ws {
		a, b := max(lo, base), min(hi, base+w.rows)
		if a < b {
			w.widenRows(dst[(a-lo)*k:(b-lo)*k], a-base, b-base)
		}
		base += w.rows
	}
}

// mulN computes dx = dx + dy W for dy of rows x Out (row stride Out) and dx of rows x In (row
// stride In): the product of the backward pass. A 16-bit W is widened in tiles of columns.
func mulN(dy []float32, rows int, w Weight, dx []float32) {
	out, in := w.rows, w.cols
	impl := blas32.Implementation()
	if w.dtype == safetensors.F32 {
		impl.Sgemm(blas.NoTrans, blas.NoTrans, rows, in, out, 1, dy, out, w.f32, in, 1, dx, in)
		runtime.KeepAlive(w.keep)
		return
	}
	t := tileCols(rows, in, out)
	buf := getScratch(out * min(in, 2*t))
	defer putScratch(buf)
	for j0 := 0; j0 < in; j0 += t {
		j1 := min(in, j0+t)
		if in-j1 < t {
			j1 = in
		}
		tile := (*buf)[:out*(j1-j0)]
		w.widenCols(tile, j0, j1)
		impl.Sgemm(blas.NoTrans, blas.NoTrans, rows, j1-j0, out, 1, dy, out, tile, j1-j0, 1, dx[j0:], in)
		if j1 == in {
			break
		}
	}
	runtime.KeepAlive(w.keep)
}
