package protocol

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
)

// ContentVersion is the version of the content encodings (rows, factors, sequences) written by
// this build. Every content starts with a 4-byte magic naming its kind ("ROWS", "FCTR", "SEQS"),
// so the same bytes are never valid content of two kinds, then the version as a uint32.
const ContentVersion = 1

// The content magics.
const (
	rowsMagic      = "ROWS"
	factorsMagic   = "FCTR"
	sequencesMagic = "SEQS"
	promptsMagic   = "PRMT"
	filesMagic     = "FILS"
)

// appendContentHeader appends a content's magic and version.
func appendContentHeader(b []byte, magic string) []byte {
	return appendU32(append(b, magic...), ContentVersion)
}

// decoder walks content bytes. Every count is checked against the bytes left before anything is
// allocated for it; the first error sticks and later reads return zeros.
type decoder struct {
	b   []byte
	off int
	err error
	enc string // "rows", "factors", "sequences": the encoding named in errors
}

func newDecoder(enc string, b []byte) *decoder { return &decoder{b: b, enc: enc} }

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: at byte %d: %w: %s", d.enc, d.off, ErrMalformed, fmt.Sprintf(format, args...))
	}
}

// left returns the number of bytes not yet read.
func (d *decoder) left() int { return len(d.b) - d.off }

// need reports whether n more bytes are present (n = count * size, computed without overflow).
func (d *decoder) need(count, size uint64, what string) bool {
	if d.err != nil {
		return false
	}
	hi, n := bits.Mul64(count, size)
	if hi != 0 || n > uint64(d.left()) {
		d.fail("%s needs %d x %d bytes, %d are left", what, count, size, d.left())
		return false
	}
	return true
}

func (d *decoder) u32(what string) uint32 {
	if !d.need(1, 4, what) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

// header reads and checks the content's magic and version.
func (d *decoder) header(magic string) {
	if !d.need(4, 1, "magic") {
		return
	}
	if m := d.b[d.off : d.off+4]; string(m) != magic {
		d.fail("magic %q, want %q", m, magic)
		return
	}
	d.off += 4
	v := d.u32("version")
	if d.err == nil && v != ContentVersion {
		d.err = fmt.Errorf("%s: %w: content version %d (this build reads %d)", d.enc, ErrVersion, v, ContentVersion)
	}
}

// bytes returns the next n bytes (aliasing the input).
func (d *decoder) bytes(n uint64, what string) []byte {
	if !d.need(n, 1, what) {
		return nil
	}
	b := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return b
}

func (d *decoder) float32s(n uint64, what string) []float32 {
	if !d.need(n, 4, what) {
		return nil
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d.b[d.off:]))
		d.off += 4
	}
	return out
}

func (d *decoder) float64s(n uint64, what string) []float64 {
	if !d.need(n, 8, what) {
		return nil
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(d.b[d.off:]))
		d.off += 8
	}
	return out
}

// end checks that every byte was read.
func (d *decoder) end() error {
	if d.err == nil && d.left() != 0 {
		d.fail("%d bytes after the end", d.left())
	}
	return d.err
}

func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

func appendFloat32s(b []byte, x []float32) []byte {
	for _, v := range x {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

func appendFloat64s(b []byte, x []float64) []byte {
	for _, v := range x {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// fitsU32 reports whether every value is in [lo, MaxUint32].
func fitsU32(lo int, vs ...int) bool {
	for _, v := range vs {
		if v < lo || uint64(v) > math.MaxUint32 {
			return false
		}
	}
	return true
}
