package safetensors

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// littleEndian reports whether the machine stores values the way safetensors does, so that a
// tensor's bytes can be read in place as Go values.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Float32View returns the values of an F32 tensor without converting them: a slice that aliases
// the file's read-only mapping when the data is 4-byte aligned and the machine little-endian
// (mapped is true), else a fresh copy. An aliasing slice must not be modified and is valid until
// Close; reading it after Close is a use after unmap. Other dtypes give ErrUnsupportedDType (use
// Float32 to convert them).
func (f *File) Float32View(name string) (vals []float32, mapped bool, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, b, err := f.lookup(name)
	if err != nil {
		return nil, false, err
	}
	if t.DType != F32 {
		return nil, false, fmt.Errorf("safetensors: %s: tensor %q: %w %s: Float32View reads F32", f.path, name, ErrUnsupportedDType, t.DType)
	}
	n := t.NumElements()
	if n == 0 {
		return []float32{}, false, nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n), true, nil
	}
	out := make([]float32, n)
	if err := decodeFloat32(F32, b, out); err != nil {
		return nil, false, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, err)
	}
	return out, false, nil
}

// Uint16View returns the elements of a 16-bit tensor (BF16, F16, I16 or U16) as their raw bits,
// as Float32View does for F32: aliasing the read-only mapping when the data is 2-byte aligned
// and the machine little-endian, else a fresh copy. Other dtypes give ErrUnsupportedDType.
func (f *File) Uint16View(name string) (vals []uint16, mapped bool, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, b, err := f.lookup(name)
	if err != nil {
		return nil, false, err
	}
	if t.DType.Bits() != 16 {
		return nil, false, fmt.Errorf("safetensors: %s: tensor %q: %w %s: Uint16View reads 16-bit dtypes", f.path, name, ErrUnsupportedDType, t.DType)
	}
	n := t.NumElements()
	if n == 0 {
		return []uint16{}, false, nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), n), true, nil
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out, false, nil
}

// Release tells the operating system that the process no longer needs the mapped pages that lie
// wholly inside the tensor's data (madvise MADV_DONTNEED), so they stop counting towards the
// process's resident memory once their values have been copied elsewhere. Nothing is lost: the
// mapping is read-only and file-backed, so a later read of the tensor faults the pages in again
// from the page cache or the file. Release does nothing where the file is not mapped.
func (f *File) Release(name string) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, b, err := f.lookup(name)
	if err != nil {
		return err
	}
	if !f.mapped || len(b) == 0 {
		return nil
	}
	if err := releasePages(b); err != nil {
		return fmt.Errorf("safetensors: %s: tensor %q: release: %w", f.path, t.Name, err)
	}
	return nil
}

// Float32View is File.Float32View on the file holding the tensor.
func (c *Checkpoint) Float32View(name string) ([]float32, bool, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, false, c.notFound(name)
	}
	return f.Float32View(name)
}

// Uint16View is File.Uint16View on the file holding the tensor.
func (c *Checkpoint) Uint16View(name string) ([]uint16, bool, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, false, c.notFound(name)
	}
	return f.Uint16View(name)
}

// Release is File.Release on the file holding the tensor.
func (c *Checkpoint) Release(name string) error {
	f, ok := c.where[name]
	if !ok {
		return c.notFound(name)
	}
	return f.Release(name)
}
