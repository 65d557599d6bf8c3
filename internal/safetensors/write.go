package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// Tensor is a tensor to write: float32 values stored as DType.
type Tensor struct {
	// Name is the header key; it must be unique and not "__metadata__".
	Name string
	// DType is the stored type: F32, F16 or BF16 (round-to-nearest-even), or
	// F64 (exact widening).
	DType DType
	// Shape lists the dimensions; empty for a scalar.
	Shape []int
	// Data holds the values in row-major order, one per element.
	Data []float32
}

// writable reports the dtypes Write can produce.
func writable(dt DType) bool {
	return dt == F32 || dt == F16 || dt == BF16 || dt == F64
}

// Write writes tensors and metadata as one safetensors file to w. The header
// lists __metadata__ first (when non-empty) and then the tensors sorted by
// name, and is padded with spaces to a multiple of 8 bytes like the reference
// implementation; the data follows in name order with no gaps. Every tensor
// is validated before anything is written; errors wrap ErrInvalid or
// ErrUnsupportedDType and name the tensor.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	if err := write(w, tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	return nil
}

// write is Write without the error prefix.
func write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	sorted := make([]*Tensor, len(tensors))
	for i := range tensors {
		sorted[i] = &tensors[i]
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for i, t := range sorted {
		if err := checkTensor(t); err != nil {
			return err
		}
		if i > 0 && sorted[i-1].Name == t.Name {
			return fmt.Errorf("tensor %q: %w: duplicate name", t.Name, ErrInvalid)
		}
	}
	header, err := encodeHeader(sorted, metadata)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<16)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(header)))
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	for _, t := range sorted {
		for data := t.Data; len(data) > 0; {
			n := min(len(data), cap(buf)/8)
			buf = encodeValues(buf[:0], t.DType, data[:n])
			data = data[n:]
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// encodeValues appends vals stored as dt (little-endian) to buf.
func encodeValues(buf []byte, dt DType, vals []float32) []byte {
	le := binary.LittleEndian
	off := len(buf)
	buf = append(buf, make([]byte, len(vals)*dt.Bits()/8)...)
	out := buf[off:]
	switch dt {
	case F32:
		for i, v := range vals {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range vals {
			le.PutUint16(out[2*i:], Float32ToFloat16(v))
		}
	case BF16:
		for i, v := range vals {
			le.PutUint16(out[2*i:], Float32ToBFloat16(v))
		}
	case F64:
		for i, v := range vals {
			le.PutUint64(out[8*i:], math.Float64bits(float64(v)))
		}
	}
	return buf
}

// checkTensor validates one tensor given to Write.
func checkTensor(t *Tensor) error {
	if t.Name == metadataKey {
		return fmt.Errorf("tensor %q: %w: the name is reserved", t.Name, ErrInvalid)
	}
	if !writable(t.DType) {
		return fmt.Errorf("tensor %q: %w %q: Write stores F32, F16, BF16 or F64", t.Name, ErrUnsupportedDType, t.DType)
	}
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %q: %w: negative dimension in shape %v", t.Name, ErrInvalid, t.Shape)
		}
		if d != 0 && n > math.MaxInt/d {
			return fmt.Errorf("tensor %q: %w: shape %v overflows", t.Name, ErrInvalid, t.Shape)
		}
		n *= d
	}
	if n != len(t.Data) {
		return fmt.Errorf("tensor %q: %w: shape %v has %d elements, Data has %d", t.Name, ErrInvalid, t.Shape, n, len(t.Data))
	}
	return nil
}

// encodeHeader builds the padded JSON header for name-sorted tensors.
func encodeHeader(sorted []*Tensor, metadata map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if len(metadata) > 0 {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		writeJSONString(&b, metadataKey)
		b.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
	}
	var off int64
	for i, t := range sorted {
		if i > 0 || len(metadata) > 0 {
			b.WriteByte(',')
		}
		size := int64(len(t.Data)) * int64(t.DType.Bits()/8)
		writeJSONString(&b, t.Name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, string(t.DType))
		b.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		b.WriteString(`],"data_offsets":[`)
		b.WriteString(strconv.FormatInt(off, 10))
		b.WriteByte(',')
		b.WriteString(strconv.FormatInt(off+size, 10))
		b.WriteString("]}")
		off += size
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	if b.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header of %d bytes exceeds the limit %d", ErrInvalid, b.Len(), MaxHeaderSize)
	}
	return b.Bytes(), nil
}

// writeJSONString writes s as a JSON string without HTML escaping.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)           // cannot fail for a string
	b.Truncate(b.Len() - 1) // drop Encode's newline
}

// WriteFile writes tensors and metadata to path atomically: it writes a
// temporary file in the same directory, syncs it, and renames it over path,
// so path holds either its old content or the complete new file. Nothing is
// left behind on error.
func WriteFile(path string, tensors []Tensor, metadata map[string]string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp, tensors, metadata); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("safetensors: write %s: sync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: write %s: close: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil { // persist the rename; best effort
		d.Sync()
		d.Close()
	}
	return nil
}
