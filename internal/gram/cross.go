package gram

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// CrossAccumulator holds the running rectangular sum R = D^T X~ of one task
// at one site that writes into the residual stream (o_proj, down_proj): D
// (rows x out) is the residual drift h - h~ between the task model's and
// the merged model's residual stream, X~ (rows x in) the site's input under
// the merged model, on the same tokens. R is out x in, in float64. The
// residual-corrected solve (merge.SolveCorrected) adds R to the site's
// right-hand side W_t P_t.
//
// Like Accumulator it converts float32 rows in bounded chunks, adds across
// batches and machines (Merge), and is not safe for concurrent use.
type CrossAccumulator struct {
	out, in int
	tokens  int
	r       []float64 // out x in, row-major
	// conversion buffers, chunk x out and chunk x in
	bd, bx []float64
	chunk  int
}

// NewCrossAccumulator returns an empty accumulator of R = D^T X~ for drift
// rows of width out and input rows of width in.
func NewCrossAccumulator(out, in int) *CrossAccumulator {
	out, in = max(out, 0), max(in, 0)
	a := &CrossAccumulator{out: out, in: in, r: make([]float64, out*in), chunk: 1}
	if w := max(out, in); w > 0 {
		a.chunk = max(16, min(1024, chunkBytes/(8*w)))
	}
	return a
}

// Dims returns the widths (out, in) of R.
func (a *CrossAccumulator) Dims() (out, in int) { return a.out, a.in }

// Tokens returns the number of rows added so far.
func (a *CrossAccumulator) Tokens() int { return a.tokens }

// Add accumulates R += D^T X~ for rows rows: d is rows x out and xt rows x
// in, row-major float32, row i of both at the same token. A length mismatch
// is reported as ErrShape and leaves the sum unchanged.
func (a *CrossAccumulator) Add(d, xt []float32, rows int) error {
	if err := a.check(len(d), -1, len(xt), rows); err != nil {
		return err
	}
	a.addChunks(rows, func(dst []float64, start, c int) {
		for i, v := range d[start*a.out : (start+c)*a.out] {
			dst[i] = float64(v)
		}
	}, xt)
	return nil
}

// AddDiff accumulates R += (H - H~)^T X~ for rows rows, with the drift
// formed in float64 from the two residual streams: h and ht (the task
// model's and the merged model's residual, rows x out) and xt (rows x in),
// row-major float32. A length mismatch is reported as ErrShape and leaves
// the sum unchanged.
func (a *CrossAccumulator) AddDiff(h, ht, xt []float32, rows int) error {
	if err := a.check(len(h), len(ht), len(xt), rows); err != nil {
		return err
	}
	a.addChunks(rows, func(dst []float64, start, c int) {
		lo, hi := start*a.out, (start+c)*a.out
		for i, v := range h[lo:hi] {
			dst[i] = float64(v) - float64(ht[lo+i])
		}
	}, xt)
	return nil
}

// AddFloat64 is Add for float64 rows (tests and float64 pipelines).
func (a *CrossAccumulator) AddFloat64(d, xt []float64, rows int) error {
	if err := a.check(len(d), -1, len(xt), rows); err != nil {
		return err
	}
	if rows > 0 && a.out > 0 && a.in > 0 {
		a.addBlock(d, xt, rows)
	}
	return nil
}

// check validates the lengths of one call and counts its tokens; nh < 0
// means the call has no second drift stream.
func (a *CrossAccumulator) check(nd, nh, nxt, rows int) error {
	if rows < 0 || nd != rows*a.out {
		return fmt.Errorf("%w: drift rows have %d values, want rows %d x width %d", ErrShape, nd, rows, a.out)
	}
	if nh >= 0 && nh != rows*a.out {
		return fmt.Errorf("%w: merged-model residual rows have %d values, want rows %d x width %d", ErrShape, nh, rows, a.out)
	}
	if nxt != rows*a.in {
		return fmt.Errorf("%w: xt (merged-model features) has %d values, want rows %d x width %d", ErrShape, nxt, rows, a.in)
	}
	a.tokens += rows
	return nil
}

// addChunks converts rows rows in chunks (fill writes the drift of rows
// [start, start+c) into its argument) and adds each chunk.
func (a *CrossAccumulator) addChunks(rows int, fill func(dst []float64, start, c int), xt []float32) {
	if rows == 0 || a.out == 0 || a.in == 0 {
		return
	}
	for start := 0; start < rows; start += a.chunk {
		c := min(a.chunk, rows-start)
		if len(a.bd) < c*a.out {
			a.bd = make([]float64, c*a.out)
		}
		if len(a.bx) < c*a.in {
			a.bx = make([]float64, c*a.in)
		}
		bd, bx := a.bd[:c*a.out], a.bx[:c*a.in]
		fill(bd, start, c)
		for i, v := range xt[start*a.in : (start+c)*a.in] {
			bx[i] = float64(v)
		}
		a.addBlock(bd, bx, c)
	}
}

// addBlock adds one block of float64 rows: R += D^T X~.
func (a *CrossAccumulator) addBlock(d, xt []float64, rows int) {
	gd := blas64.General{Rows: rows, Cols: a.out, Stride: a.out, Data: d}
	gx := blas64.General{Rows: rows, Cols: a.in, Stride: a.in, Data: xt}
	blas64.Gemm(blas.Trans, blas.NoTrans, 1, gd, gx, 1, blas64.General{Rows: a.out, Cols: a.in, Stride: a.in, Data: a.r})
}

// Merge adds another accumulator's partial sum (another batch range or
// another machine's share of the tokens) into a.
func (a *CrossAccumulator) Merge(b *CrossAccumulator) error {
	if b == nil {
		return nil
	}
	if a.out != b.out || a.in != b.in {
		return fmt.Errorf("%w: merging cross accumulator of %dx%d into %dx%d", ErrShape, b.out, b.in, a.out, a.in)
	}
	addTo(a.r, b.r)
	a.tokens += b.tokens
	return nil
}

// Sum returns a copy of R (out x in); the accumulator can keep
// accumulating afterwards. It returns nil when either width is zero.
func (a *CrossAccumulator) Sum() *mat.Dense {
	if a.out == 0 || a.in == 0 {
		return nil
	}
	return mat.NewDense(a.out, a.in, append([]float64(nil), a.r...))
}
