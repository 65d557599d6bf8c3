// Package gram accumulates the Gram matrices that the IterIS and RegMean
// solves need, one block of feature rows at a time.
//
// A site (a target linear module) reads an input of width n. For task i the
// solver needs G = X^T X, P = X^T X~ and Q = X~^T X~ (n x n, summed over
// tokens), where X holds the site's inputs under the task model and X~ the
// inputs under the current merged model on the same tokens. Those sums can be
// built batch by batch and added across machines, so the features themselves
// are never stored: an Accumulator keeps only the n x n sums, in float64.
//
// Sites that read the same input (q/k/v_proj, gate/up_proj) share one
// Accumulator.
package gram

import (
	"errors"
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// Sentinel errors, wrapped with context by the functions that return them.
var (
	// ErrShape reports features or accumulators whose sizes do not agree.
	ErrShape = errors.New("gram: shape mismatch")
	// ErrMode reports mixing an accumulator with cross terms and one without.
	ErrMode = errors.New("gram: cross mode mismatch")
)

// chunkBytes bounds the float64 conversion buffer of one feature stream
// (1024 rows at n = 4096, next to the accumulator's own 3 x 128 MiB); larger
// chunks amortise the read-modify-write of the n x n sums in every call.
const chunkBytes = 32 << 20

// Accumulator holds running Gram sums for one input point of one task.
// It is not safe for concurrent use.
type Accumulator struct {
	n      int
	cross  bool
	tokens int
	// g and q hold the upper triangle only (Syrk); p is a full n x n matrix.
	g, p, q []float64
	// conversion buffers, chunk x n each
	bx, bxt []float64
	chunk   int
}

// NewAccumulator returns an empty accumulator for features of width n.
// With cross false only G is kept, for the solves in which X~ equals X
// (the first jacobi solve, RegMean); Grams then reports P and Q as G.
func NewAccumulator(n int, cross bool) *Accumulator {
	if n < 0 {
		n = 0
	}
	a := &Accumulator{n: n, cross: cross, g: make([]float64, n*n)}
	if cross {
		a.p = make([]float64, n*n)
		a.q = make([]float64, n*n)
	}
	a.chunk = 1
	if n > 0 {
		a.chunk = max(16, min(1024, chunkBytes/(8*n)))
	}
	return a
}

// N returns the feature width.
func (a *Accumulator) N() int { return a.n }

// Cross reports whether the accumulator keeps P and Q.
func (a *Accumulator) Cross() bool { return a.cross }

// Tokens returns the number of feature rows added so far.
func (a *Accumulator) Tokens() int { return a.tokens }

// Add accumulates rows feature rows: x and xt are rows x n row-major float32
// (the task model's and the merged model's inputs at the same tokens).
// G += X^T X, and with cross also P += X^T X~ and Q += X~^T X~, in float64.
// xt is ignored (and may be nil) when the accumulator has no cross terms.
// Rows are converted and multiplied in bounded chunks. A length mismatch is
// reported as ErrShape and leaves the sums unchanged.
func (a *Accumulator) Add(x, xt []float32, rows int) error {
	if err := a.check(len(x), len(xt), rows); err != nil || rows == 0 || a.n == 0 {
		return err
	}
	n := a.n
	for start := 0; start < rows; start += a.chunk {
		c := min(a.chunk, rows-start)
		if len(a.bx) < c*n {
			a.bx = make([]float64, c*n)
			if a.cross {
				a.bxt = make([]float64, c*n)
			}
		}
		bx := a.bx[:c*n]
		for i, v := range x[start*n : (start+c)*n] {
			bx[i] = float64(v)
		}
		var bxt []float64
		if a.cross {
			bxt = a.bxt[:c*n]
			for i, v := range xt[start*n : (start+c)*n] {
				bxt[i] = float64(v)
			}
		}
		a.addBlock(bx, bxt, c)
	}
	return nil
}

// AddFloat64 is Add for float64 feature rows (tests and float64 pipelines).
func (a *Accumulator) AddFloat64(x, xt []float64, rows int) error {
	if err := a.check(len(x), len(xt), rows); err != nil || rows == 0 || a.n == 0 {
		return err
	}
	a.addBlock(x, xt, rows)
	return nil
}

// check validates the lengths of one Add and counts its tokens.
func (a *Accumulator) check(nx, nxt, rows int) error {
	if rows < 0 || nx != rows*a.n {
		return fmt.Errorf("%w: x has %d values, want rows %d x width %d", ErrShape, nx, rows, a.n)
	}
	if a.cross && nxt != rows*a.n {
		return fmt.Errorf("%w: xt (merged-model features) has %d values, want rows %d x width %d", ErrShape, nxt, rows, a.n)
	}
	a.tokens += rows
	return nil
}

// addBlock adds one block of float64 rows: G += X^T X, and with cross P += X^T X~, Q += X~^T X~.
func (a *Accumulator) addBlock(x, xt []float64, rows int) {
	n := a.n
	gx := blas64.General{Rows: rows, Cols: n, Stride: n, Data: x}
	blas64.Syrk(blas.Trans, 1, gx, 1, a.sym(a.g))
	if a.cross {
		gxt := blas64.General{Rows: rows, Cols: n, Stride: n, Data: xt}
		blas64.Gemm(blas.Trans, blas.NoTrans, 1, gx, gxt, 1, blas64.General{Rows: n, Cols: n, Stride: n, Data: a.p})
		blas64.Syrk(blas.Trans, 1, gxt, 1, a.sym(a.q))
	}
}

func (a *Accumulator) sym(d []float64) blas64.Symmetric {
	return blas64.Symmetric{N: a.n, Stride: a.n, Uplo: blas.Upper, Data: d}
}

// Merge adds another accumulator's partial sums (another batch range or
// another machine's share of the tokens) into a.
func (a *Accumulator) Merge(b *Accumulator) error {
	if b == nil {
		return nil
	}
	if a.n != b.n {
		return fmt.Errorf("%w: merging accumulator of width %d into width %d", ErrShape, b.n, a.n)
	}
	if a.cross != b.cross {
		return fmt.Errorf("%w: merging cross=%v into cross=%v", ErrMode, b.cross, a.cross)
	}
	addTo(a.g, b.g)
	if a.cross {
		addTo(a.p, b.p)
		addTo(a.q, b.q)
	}
	a.tokens += b.tokens
	return nil
}

func addTo(dst, src []float64) {
	for i, v := range src {
		dst[i] += v
	}
}

// Grams are the accumulated sums of one task at one input point.
type Grams struct {
	// N is the feature width, Tokens the number of rows accumulated.
	N, Tokens int
	// G = X^T X, P = X^T X~, Q = X~^T X~, each n x n. G and Q are exactly
	// symmetric. Without cross terms P and Q are the same matrix as G.
	G, P, Q *mat.Dense
}

// Grams returns copies of the current sums as dense matrices; the
// accumulator can keep accumulating afterwards.
func (a *Accumulator) Grams() Grams {
	out := Grams{N: a.n, Tokens: a.tokens}
	if a.n == 0 {
		return out
	}
	out.G = symToDense(a.n, a.g)
	if !a.cross {
		out.P, out.Q = out.G, out.G
		return out
	}
	out.P = mat.NewDense(a.n, a.n, append([]float64(nil), a.p...))
	out.Q = symToDense(a.n, a.q)
	return out
}

// symToDense mirrors an upper-triangle n x n array into a full matrix.
func symToDense(n int, up []float64) *mat.Dense {
	d := make([]float64, n*n)
	for i := 0; i < n; i++ {
		row := up[i*n : (i+1)*n]
		copy(d[i*n+i:(i+1)*n], row[i:])
		for j := i + 1; j < n; j++ {
			d[j*n+i] = row[j]
		}
	}
	return mat.NewDense(n, n, d)
}

// FromFeatures builds Grams directly from explicit float64 feature matrices
// (tokens x n). xt may be nil, meaning X~ = X. It is meant for tests and
// small inputs.
func FromFeatures(x, xt *mat.Dense) (Grams, error) {
	r, n := x.Dims()
	cross := xt != nil
	a := NewAccumulator(n, cross)
	var xtd []float64
	if cross {
		rt, nt := xt.Dims()
		if rt != r || nt != n {
			return Grams{}, fmt.Errorf("%w: X~ is %dx%d, X is %dx%d", ErrShape, rt, nt, r, n)
		}
		xtd = denseData(xt)
	}
	if err := a.AddFloat64(denseData(x), xtd, r); err != nil {
		return Grams{}, err
	}
	return a.Grams(), nil
}

func denseData(m *mat.Dense) []float64 {
	r, c := m.Dims()
	raw := m.RawMatrix()
	if raw.Stride == c {
		return raw.Data[:r*c]
	}
	d := make([]float64, 0, r*c)
	for i := 0; i < r; i++ {
		d = append(d, raw.Data[i*raw.Stride:i*raw.Stride+c]...)
	}
	return d
}
