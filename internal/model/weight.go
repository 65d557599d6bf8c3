package model

import (
	"io"
	"math"
	"runtime"
	"sync"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// Weight is a row-major Rows x Cols matrix held at the width its checkpoint stores it: float32
// values, or bfloat16 / float16 bits that the products widen to float32 a tile at a time on the
// way into the GEMM (so a 16-bit checkpoint takes 2 bytes per weight in memory, and a product
// gives bit for bit what it gives on the float32 values the bits stand for). The data may alias
// the checkpoint's read-only memory mapping: it is never written. The zero Weight holds nothing.
type Weight struct {
	dtype      safetensors.DType // F32, BF16 or F16
	rows, cols int
	f32        []float32
	u16        []uint16
	keep       *mapping // the mapping the data aliases, or nil
}

// mapping keeps a checkpoint's memory mapping alive while weights alias it. The checkpoint is
// closed, and unmapped, by a cleanup once no weight (and no model) refers to it any more.
type mapping struct {
	_ [8]byte // a cleanup needs an object of non-zero size
}

// newMapping returns the keep-alive of ck's mapping: ck is closed once the mapping is unreachable.
func newMapping(ck io.Closer) *mapping {
	mp := &mapping{}
	runtime.AddCleanup(mp, func(c io.Closer) { _ = c.Close() }, ck)
	return mp
}

// Float32Weight returns a float32 weight of rows x cols holding data (row-major, used in place and
// never modified). It panics when data does not have rows x cols values.
func Float32Weight(rows, cols int, data []float32) Weight {
	if len(data) != rows*cols {
		panic("model: Float32Weight: data does not hold rows x cols values")
	}
	return Weight{dtype: safetensors.F32, rows: rows, cols: cols, f32: data}
}

// DType is the stored element type: F32, BF16 or F16.
func (w Weight) DType() safetensors.DType { return w.dtype }

// Dims returns the shape.
func (w Weight) Dims() (rows, cols int) { return w.rows, w.cols }

// Len is the number of weights, Rows x Cols.
func (w Weight) Len() int { return w.rows * w.cols }

// Bytes is the memory the values take as held: 4 or 2 bytes per weight.
func (w Weight) Bytes() int64 { return int64(w.Len()) * int64(w.elemBytes()) }

// Mapped reports whether the values alias the checkpoint's memory mapping (rather than a copy
// in the heap).
func (w Weight) Mapped() bool { return w.keep != nil }

func (w Weight) elemBytes() int {
	if w.dtype == safetensors.F32 {
		return 4
	}
	return 2
}

// Float32 returns a fresh copy of the values in float32.
func (w Weight) Float32() []float32 {
	out := make([]float32, w.Len())
	if w.Len() > 0 {
		w.widen(out, 0)
	}
	return out
}

// Shares reports whether w and o hold their values in the same memory (a tied lm_head shares the
// embeddings'), rather than equal values in two places.
func (w Weight) Shares(o Weight) bool {
	switch {
	case w.dtype != o.dtype || w.Len() != o.Len() || w.Len() == 0:
		return false
	case w.dtype == safetensors.F32:
		return &w.f32[0] == &o.f32[0]
	default:
		return &w.u16[0] == &o.u16[0]
	}
}

// Float64 returns a fresh copy of the values in float64.
func (w Weight) Float64() []float64 {
	out := make([]float64, w.Len())
	if w.dtype == safetensors.F32 {
		for i, v := range w.f32 {
			out[i] = float64(v)
		}
	} else {
		buf := make([]float32, min(w.Len(), 1<<16))
		for off := 0; off < len(out); off += len(buf) {
			n := min(len(buf), len(out)-off)
			w.widen(buf[:n], off)
			for i, v := range buf[:n] {
				out[off+i] = float64(v)
			}
		}
	}
	runtime.KeepAlive(w.keep)
	return out
}

// widen writes the float32 values of elements [off, off+len(dst)) into dst.
func (w Weight) widen(dst []float32, off int) {
	switch w.dtype {
	case safetensors.F32:
		copy(dst, w.f32[off:off+len(dst)])
	case safetensors.BF16:
		widenBF16(dst, w.u16[off:off+len(dst)])
	case safetensors.F16:
		widenF16(dst, w.u16[off:off+len(dst)])
	default:
		panic("model: weight of dtype " + string(w.dtype))
	}
	runtime.KeepAlive(w.keep)
}

// widenRows writes rows [lo, hi) into dst, (hi-lo) x Cols.
func (w Weight) widenRows(dst []float32, lo, hi int) {
	w.widen(dst[:(hi-lo)*w.cols], lo*w.cols)
}

// widenCols writes columns [lo, hi) of every row into dst, Rows x (hi-lo).
func (w Weight) widenCols(dst []float32, lo, hi int) {
	n := hi - lo
	for r := 0; r < w.rows; r++ {
		w.widen(dst[r*n:(r+1)*n], r*w.cols+lo)
	}
}

// row writes row i into dst (Cols values).
func (w Weight) row(dst []float32, i int) { w.widen(dst[:w.cols], i*w.cols) }

// widenBF16 converts bfloat16 bits to float32 exactly (a bfloat16 is the top half of a float32).
func widenBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// widenF16 converts IEEE binary16 bits to float32 exactly, through a table of all 65536 values.
func widenF16(dst []float32, src []uint16) {
	t := f16Table()
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = t[h]
	}
}

// f16Table returns the float32 value of every binary16 bit pattern (256 KiB, built on first use).
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for h := range t {
		t[h] = safetensors.Float16ToFloat32(uint16(h))
	}
	return &t
})

// float32Copy returns a fresh float32 copy of the values.
func (w Weight) float32Copy() []float32 { return w.Float32() }
