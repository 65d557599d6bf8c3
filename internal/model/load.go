package model

import (
	"fmt"
	"io"
	"unsafe"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

// viewSource is what a memory-mapped checkpoint adds to a tensorSource: tensors read in place,
// and the release of pages whose values were copied (safetensors.Checkpoint provides it).
type viewSource interface {
	Float32View(name string) ([]float32, bool, error)
	Uint16View(name string) ([]uint16, bool, error)
	Release(name string) error
}

// builder reads the tensors of one range; CheckCheckpoint has checked every shape already.
type builder struct {
	m      *Model
	src    tensorSource
	views  viewSource // nil: every tensor is converted through src.Float32
	closer io.Closer  // closes the mapping the views alias
	keep   *mapping   // set once a weight aliases the mapping
}

// record notes that name is read.
func (b *builder) record(name string) {
	if info, ok := b.src.Info(name); ok {
		b.m.Read = append(b.m.Read, TensorRead{Name: name, Bytes: info.End - info.Begin})
	}
}

// get reads a small tensor (norm weight, bias) converted to float32.
func (b *builder) get(name string) ([]float32, error) {
	b.record(name)
	return b.src.Float32(name)
}

// weight reads a rows x cols weight at its stored width: F32, BF16 and F16 in place where the
// checkpoint is mapped; anything else (F64) converted to float32.
func (b *builder) weight(name string, rows, cols int) (Weight, error) {
	info, _ := b.src.Info(name)
	if b.views != nil {
		switch info.DType {
		case safetensors.F32:
			b.record(name)
			v, mapped, err := b.views.Float32View(name)
			if err != nil {
				return Weight{}, err
			}
			if mapped && !aligned16(v) {
				// gonum's dot product kernel sums in an order that depends on the weight row's
				// offset from 16 bytes; a copy in a fresh allocation is aligned, as every weight
				// was when all were copies.
				v, mapped = append(make([]float32, 0, len(v)), v...), false
			}
			return Weight{dtype: safetensors.F32, rows: rows, cols: cols, f32: v, keep: b.kept(mapped)}, nil
		case safetensors.BF16, safetensors.F16:
			b.record(name)
			v, mapped, err := b.views.Uint16View(name)
			if err != nil {
				return Weight{}, err
			}
			return Weight{dtype: info.DType, rows: rows, cols: cols, u16: v, keep: b.kept(mapped)}, nil
		}
	}
	v, err := b.get(name)
	if err != nil {
		return Weight{}, err
	}
	return Float32Weight(rows, cols, v), nil
}

// kept returns the keep-alive of the mapping for a view that aliases it (nil for a copy).
func (b *builder) kept(mapped bool) *mapping {
	if !mapped {
		return nil
	}
	if b.keep == nil {
		b.keep = newMapping(b.closer)
	}
	return b.keep
}

// linears reads a group of linear modules that read the same input. When every weight of a
// group of two or more is stored as F32, the weights are copied one after another into one
// array, so the group runs as one product; the copied tensors' pages of the mapping are
// released. Otherwise each weight is read at its stored width.
func (b *builder) linears(group []linearSpec) ([]*Linear, error) {
	out := make([]*Linear, len(group))
	fuse := len(group) > 1
	total := 0
	for _, s := range group {
		info, _ := b.src.Info(s.name + ".weight")
		fuse = fuse && info.DType == safetensors.F32 && s.in%4 == 0 // see fusable
		total += s.out * s.in
	}
	var buf []float32
	if fuse {
		buf = make([]float32, total)
	}
	off := 0
	for i, s := range group {
		name := s.name + ".weight"
		l := &Linear{Name: s.name, Out: s.out, In: s.in}
		var err error
		if fuse {
			l.W, err = b.copied(name, buf[off:], s.out, s.in)
			off += s.out * s.in
		} else {
			l.W, err = b.weight(name, s.out, s.in)
		}
		if err != nil {
			return nil, err
		}
		if s.bias {
			if l.Bias, err = b.get(s.name + ".bias"); err != nil {
				return nil, err
			}
		}
		out[i] = l
	}
	return out, nil
}

// copied reads an F32 weight into the front of dst (whose capacity runs on to the group's next
// weights, which is how products find them contiguous) and releases its mapped pages.
func (b *builder) copied(name string, dst []float32, rows, cols int) (Weight, error) {
	n := rows * cols
	if b.views == nil {
		v, err := b.get(name)
		if err != nil {
			return Weight{}, err
		}
		copy(dst[:n], v)
		return Float32Weight(rows, cols, dst[:n]), nil
	}
	b.record(name)
	v, mapped, err := b.views.Float32View(name)
	if err != nil {
		return Weight{}, err
	}
	copy(dst[:n], v)
	if mapped {
		if err := b.views.Release(name); err != nil {
			return Weight{}, err
		}
	}
	return Float32Weight(rows, cols, dst[:n]), nil
}

// aligned16 reports whether v starts on a 16-byte boundary.
func aligned16(v []float32) bool {
	return len(v) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(v)))%16 == 0
}

// HeldBytes returns the bytes per weight the engine holds for the linear modules of a checkpoint
// of configuration c (the most of any of them): 2 when they are all stored as BF16 or F16, else 4
// (F32, and F64 narrowed to float32). It reads the headers only.
func (c Config) HeldBytes(ck TensorHeaders) int {
	held := 2
	for _, w := range c.tensors() {
		if len(w.shape) != 2 {
			continue
		}
		info, ok := ck.Info(w.name)
		if !ok || (info.DType != safetensors.BF16 && info.DType != safetensors.F16) {
			held = 4
		}
	}
	return held
}

// CheckpointHeldBytes opens the checkpoint in dir and returns c.HeldBytes of it: what the
// memory plan counts per weight.
func CheckpointHeldBytes(dir string, c Config) (int, error) {
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return 0, fmt.Errorf("model %s: %w", dir, err)
	}
	defer ck.Close()
	return c.HeldBytes(ck), nil
}
