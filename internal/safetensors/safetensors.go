// Package safetensors reads and writes the safetensors tensor file format
// used by Hugging Face models and PEFT adapters.
//
// A file is an 8-byte little-endian unsigned header length N, N bytes of a
// JSON object describing every tensor
//
//	{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
//	 "__metadata__": {"key": "value"}}
//
// and then the raw little-endian tensor data. data_offsets are relative to
// the start of the data section (the byte after the header).
//
// Open memory-maps a file and validates its whole header before returning, so
// later reads never see inconsistent offsets. OpenCheckpoint opens a model
// directory that holds either one model.safetensors or shards listed by a
// model.safetensors.index.json. Write and WriteFile produce files that the
// reference implementation reads unchanged (header padded with spaces to a
// multiple of 8 bytes), converting float32 data to F32, F16 or BF16 with
// round-to-nearest-even.
//
// Every error wraps one of the sentinel errors below and names the file and,
// where there is one, the tensor.
package safetensors

import (
	"errors"
	"fmt"
)

// Sentinel errors. Returned errors wrap them with the file, tensor and the
// expectation that failed; test with errors.Is.
var (
	// ErrMalformed reports a file, header or index that breaks the format.
	ErrMalformed = errors.New("malformed safetensors")
	// ErrUnsupportedDType reports a dtype an operation cannot handle.
	ErrUnsupportedDType = errors.New("unsupported dtype")
	// ErrNotFound reports a tensor, file or shard that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid reports a Tensor given to Write that cannot be written.
	ErrInvalid = errors.New("invalid tensor")
	// ErrClosed reports use of a File or Checkpoint after Close.
	ErrClosed = errors.New("safetensors file closed")
)

// MaxHeaderSize is the largest header length accepted, as in the reference
// implementation (100 MB).
const MaxHeaderSize = 100_000_000

// DType is a tensor element type, spelled as in the safetensors header.
type DType string

// The dtypes of the safetensors specification.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E5M2 DType = "F8_E5M2"
	F8E4M3 DType = "F8_E4M3"
	F8E8M0 DType = "F8_E8M0"
	F4     DType = "F4"
	F6E2M3 DType = "F6_E2M3"
	F6E3M2 DType = "F6_E3M2"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	F64    DType = "F64"
	I64    DType = "I64"
	U64    DType = "U64"
	C64    DType = "C64"
)

// dtypeBits maps every known dtype to its element size in bits.
var dtypeBits = map[DType]int{
	BOOL: 8, U8: 8, I8: 8, F8E5M2: 8, F8E4M3: 8, F8E8M0: 8,
	F4: 4, F6E2M3: 6, F6E3M2: 6,
	I16: 16, U16: 16, F16: 16, BF16: 16,
	I32: 32, U32: 32, F32: 32,
	F64: 64, I64: 64, U64: 64, C64: 64,
}

// Bits returns the element size in bits, or 0 for an unknown dtype.
func (d DType) Bits() int { return dtypeBits[d] }

// Valid reports whether d is a dtype of the specification.
func (d DType) Valid() bool { return dtypeBits[d] != 0 }

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	// Name is the tensor's key in the header.
	Name string
	// DType is the stored element type.
	DType DType
	// Shape lists the dimensions; empty for a scalar.
	Shape []int
	// Begin and End are absolute byte offsets of the data in the file
	// (header included), End exclusive.
	Begin, End int64
}

// NumElements returns the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Size returns the number of data bytes, End - Begin.
func (t TensorInfo) Size() int64 { return t.End - t.Begin }

// String formats the tensor as name dtype[shape].
func (t TensorInfo) String() string {
	return fmt.Sprintf("%s %s%v", t.Name, t.DType, t.Shape)
}
