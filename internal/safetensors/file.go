package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"sync"
)

// File is one open .safetensors file. Its data is memory-mapped read-only
// (or read into memory where mapping fails). A File is safe for concurrent
// use; slices returned by Raw, Float32View and Uint16View stay valid until
// Close.
type File struct {
	path    string
	tensors map[string]TensorInfo
	names   []string
	meta    map[string]string

	mu     sync.RWMutex
	data   []byte // whole file; nil after Close
	mapped bool   // data is a read-only mapping of the file (not a copy read into memory)
	unmap  func() error
	closed bool
}

// Open opens, maps and fully validates the safetensors file at path. Every
// error names the path and wraps ErrMalformed, ErrUnsupportedDType or an
// os error.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("safetensors: %s: %w: not a regular file", path, ErrMalformed)
	}
	if size < 8 {
		return nil, fmt.Errorf("safetensors: %s: %w: file is %d bytes, shorter than the 8-byte header length", path, ErrMalformed, size)
	}
	data, unmap, ok := mapFile(fh, size)
	if !ok {
		if int64(int(size)) != size {
			return nil, fmt.Errorf("safetensors: %s: file of %d bytes too large to read", path, size)
		}
		data = make([]byte, size)
		if _, err := io.ReadFull(fh, data); err != nil {
			return nil, fmt.Errorf("safetensors: %s: read: %w", path, err)
		}
		unmap = func() error { return nil }
	}
	f, err := newFile(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	f.mapped = ok
	return f, nil
}

// newFile parses the header of a whole file held in data.
func newFile(path string, data []byte) (*File, error) {
	size := int64(len(data))
	if size < 8 {
		return nil, fmt.Errorf("safetensors: %s: %w: file is %d bytes, shorter than the 8-byte header length", path, ErrMalformed, size)
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("safetensors: %s: %w: header length %d exceeds the limit %d", path, ErrMalformed, n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("safetensors: %s: %w: header length %d runs past the end of the %d-byte file", path, ErrMalformed, n, size)
	}
	tensors, meta, err := parseHeader(data[8:8+n], size-8-int64(n))
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	return &File{path: path, tensors: tensors, names: names, meta: meta, data: data}, nil
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Names returns the tensor names in sorted order. The caller may modify the
// returned slice.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Info returns the description of the named tensor.
func (f *File) Info(name string) (TensorInfo, bool) {
	t, ok := f.tensors[name]
	if ok {
		t.Shape = append([]int(nil), t.Shape...)
	}
	return t, ok
}

// Metadata returns a copy of the header's __metadata__ (empty if none).
func (f *File) Metadata() map[string]string {
	m := make(map[string]string, len(f.meta))
	for k, v := range f.meta {
		m[k] = v
	}
	return m
}

// lookup finds a tensor and returns its stored bytes; the read lock must be
// held.
func (f *File) lookup(name string) (TensorInfo, []byte, error) {
	if f.closed {
		return TensorInfo{}, nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, ErrClosed)
	}
	t, ok := f.tensors[name]
	if !ok {
		return TensorInfo{}, nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, ErrNotFound)
	}
	return t, f.data[t.Begin:t.End:t.End], nil
}

// Raw returns the tensor's bytes as stored. The slice aliases the file's
// read-only mapping: do not modify it, and do not use it after Close.
func (f *File) Raw(name string) ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, b, err := f.lookup(name)
	return b, err
}

// Float32 returns the tensor's values converted to a fresh []float32. F32,
// F16 and BF16 convert exactly; F64 is narrowed to the nearest float32. Other
// dtypes give ErrUnsupportedDType.
func (f *File) Float32(name string) ([]float32, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, b, err := f.lookup(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	if err := decodeFloat32(t.DType, b, out); err != nil {
		return nil, fmt.Errorf("safetensors: %s: tensor %q: %w", f.path, name, err)
	}
	return out, nil
}

// decodeFloat32 converts little-endian elements of dtype dt in b into dst,
// which has exactly one slot per element.
func decodeFloat32(dt DType, b []byte, dst []float32) error {
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = Float16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BFloat16ToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	default:
		return fmt.Errorf("%w %s: Float32 reads F32, F16, BF16 and F64", ErrUnsupportedDType, dt)
	}
	return nil
}

// Close unmaps the file. Raw slices obtained earlier become invalid; later
// calls return ErrClosed. Close is idempotent.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.data = nil
	if f.unmap != nil {
		if err := f.unmap(); err != nil {
			return fmt.Errorf("safetensors: %s: unmap: %w", f.path, err)
		}
	}
	return nil
}
