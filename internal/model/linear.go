package model

import (
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// linear computes x W^T + bias + sum Scale (x A^T) B^T for rows rows of x.
func linear(l *Linear, x []float32, rows int) []float32 {
	y := make([]float32, rows*l.Out)
	linearInto(l, x, rows, y, 0)
	return y
}

// linearInto computes y = beta*y + x W^T + bias + sum Scale (x A^T) B^T (beta 0 or 1).
func linearInto(l *Linear, x []float32, rows int, y []float32, beta float32) {
	project([]*Linear{l}, x, rows, y, l.Out, beta)
}

// project computes the modules ls, which all read x (rows x In), into y: module i's output takes
// the columns [off_i, off_i + Out_i) of every row of y (row stride ldy), where off_i is the sum of
// the earlier modules' widths. Each element is beta*y + the base product (one fused product
// where mulT allows), then each LoRA of its module, then its bias: the order of a single module.
func project(ls []*Linear, x []float32, rows int, y []float32, ldy int, beta float32) {
	var buf [3]Weight
	ws := buf[:0]
	for _, l := range ls {
		ws = append(ws, l.W)
	}
	mulT(x, ls[0].In, rows, ws, y, ldy, beta)
	off := 0
	for _, l := range ls {
		addLoRAs(l, x, rows, y[off:], ldy)
		if l.Bias != nil {
			for r := 0; r < rows; r++ {
				yr := y[r*ldy+off : r*ldy+off+l.Out]
				for j, b := range l.Bias {
					yr[j] += b
				}
			}
		}
		off += l.Out
	}
}

// addLoRAs adds Scale (x A^T) B^T of each of l's LoRAs to y (rows x Out, row stride ldy).
func addLoRAs(l *Linear, x []float32, rows int, y []float32, ldy int) {
	impl := blas32.Implementation()
	for _, u := range l.LoRAs {
		t := getScratch(rows * u.R)
		impl.Sgemm(blas.NoTrans, blas.Trans, rows, u.R, l.In, 1, x, l.In, u.A, l.In, 0, *t, u.R)
		impl.Sgemm(blas.NoTrans, blas.Trans, rows, l.Out, u.R, u.Scale, *t, u.R, u.B, u.R, 1, y, ldy)
		putScratch(t)
	}
}

// columns returns a fresh rows x n copy of columns [off, off+n) of x (row stride ld).
func columns(x []float32, ld, rows, off, n int) []float32 {
	out := make([]float32, rows*n)
	for r := 0; r < rows; r++ {
		copy(out[r*n:(r+1)*n], x[r*ld+off:r*ld+off+n])
	}
	return out
}

// parallelRows calls f on contiguous ranges of [0, rows) from up to GOMAXPROCS goroutines, none
// given fewer than minRows rows; f must treat rows independently (then the result does not
// depend on the split).
func parallelRows(rows, minRows int, f func(lo, hi int)) {
	parts := min(runtime.GOMAXPROCS(0), rows/max(1, minRows))
	if parts <= 1 {
		f(0, rows)
		return
	}
	var wg sync.WaitGroup
	for p := 1; p < parts; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(rows*p/parts, rows*(p+1)/parts)
		}()
	}
	f(0, rows/parts)
	wg.Wait()
}

// Scratch buffers of a layer's forward pass, reused across calls (see workspace).
const (
	bufNorm   = iota // input_layernorm / post_attention_layernorm output
	bufQKV           // fused q|k|v projection, rows x (heads + 2 kv_heads) * head_dim
	bufAttn          // attention output
	bufGateUp        // fused gate|up projection, rows x 2 intermediate
	bufAct           // silu(gate) * up
	numBufs
)

// workspace holds the scratch of one layer's forward pass. The buffers are handed to observers,
// which may only read them during the call (Observer's contract), so a workspace is reused by
// the next layer as soon as a layer returns.
type workspace struct {
	bufs [numBufs][]float32
}

var workspaces = sync.Pool{New: func() any { return new(workspace) }}

// get returns buffer i with n values (their contents are left over from earlier use).
func (w *workspace) get(i, n int) []float32 {
	if w == nil {
		return make([]float32, n)
	}
	if cap(w.bufs[i]) < n {
		w.bufs[i] = make([]float32, n)
	}
	return w.bufs[i][:n]
}
