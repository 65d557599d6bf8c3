package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/iteris-dev/iteris/internal/jsonx"
)

// metadataKey is the reserved header key holding string metadata.
const metadataKey = "__metadata__"

// objectMembers splits a JSON object into its members in file order with
// jsonx, refusing anything that is not exactly one object, and duplicate
// keys (which encoding/json would silently collapse to the last one). what
// names the object in errors, which wrap ErrMalformed.
func objectMembers(data []byte, what string) ([]jsonx.Member, error) {
	members, err := jsonx.ObjectMembers(data)
	if err == nil {
		return members, nil
	}
	var e *jsonx.Error
	if !errors.As(err, &e) { // jsonx returns only *Error
		e = &jsonx.Error{Problem: jsonx.NotJSON, Err: err}
	}
	switch e.Problem {
	case jsonx.NotObject:
		return nil, fmt.Errorf("%w: %s is %s, want a JSON object", ErrMalformed, what, e.Kind)
	case jsonx.BadValue:
		return nil, fmt.Errorf("%w: %s: value of %q is not valid JSON: %v", ErrMalformed, what, e.Key, e.Err)
	case jsonx.DuplicateKey:
		return nil, fmt.Errorf("%w: %s: duplicate key %q", ErrMalformed, what, e.Key)
	case jsonx.TrailingData:
		return nil, fmt.Errorf("%w: %s: data after the object: %v", ErrMalformed, what, e.Err)
	}
	return nil, fmt.Errorf("%w: %s is not valid JSON: %v", ErrMalformed, what, e.Err)
}

// rawString decodes a JSON string value, rejecting every other type
// (json.Unmarshal would accept null).
func rawString(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// rawInts decodes a JSON array of non-negative integers that fit an int64.
// It returns the index of the first bad element, or -1 if the value is not an
// array at all.
func rawInts(raw json.RawMessage) ([]int64, int, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return nil, -1, false
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, -1, false
	}
	out := make([]int64, len(elems))
	for i, e := range elems {
		v, err := strconv.ParseInt(string(bytes.TrimSpace(e)), 10, 64)
		if err != nil || v < 0 {
			return nil, i, false
		}
		out[i] = v
	}
	return out, -1, true
}

// parseHeader parses and validates a safetensors header: the N JSON bytes
// that follow the 8-byte length, exactly as stored (trailing space padding
// included). dataLen is the size of the data section, that is the file size
// minus 8 minus len(header). The returned TensorInfo offsets are absolute
// file offsets (8 + len(header) + the relative data_offsets). Metadata is nil
// when the header has none.
//
// Errors wrap ErrMalformed (ErrUnsupportedDType for an unknown dtype) and
// name the tensor concerned; they do not name a file, which callers add.
func parseHeader(header []byte, dataLen int64) (map[string]TensorInfo, map[string]string, error) {
	if dataLen < 0 {
		return nil, nil, fmt.Errorf("%w: negative data section length %d", ErrMalformed, dataLen)
	}
	if int64(len(header)) > MaxHeaderSize {
		return nil, nil, fmt.Errorf("%w: header is %d bytes, more than the limit %d", ErrMalformed, len(header), MaxHeaderSize)
	}
	if !utf8.Valid(header) {
		return nil, nil, fmt.Errorf("%w: header is not valid UTF-8", ErrMalformed)
	}
	members, err := objectMembers(header, "header")
	if err != nil {
		return nil, nil, err
	}
	base := 8 + int64(len(header))
	if dataLen > math.MaxInt64-base {
		return nil, nil, fmt.Errorf("%w: data section length %d too large", ErrMalformed, dataLen)
	}
	tensors := make(map[string]TensorInfo, len(members))
	var meta map[string]string
	for _, m := range members {
		if m.Key == metadataKey {
			if meta, err = parseMetadata(m.Val); err != nil {
				return nil, nil, err
			}
			continue
		}
		ti, err := parseEntry(m.Key, m.Val, dataLen)
		if err != nil {
			return nil, nil, err
		}
		ti.Begin += base
		ti.End += base
		tensors[m.Key] = ti
	}
	if err := checkOverlap(tensors); err != nil {
		return nil, nil, err
	}
	return tensors, meta, nil
}

// parseMetadata decodes the __metadata__ object of string values. A null
// value counts as no metadata, as in the reference implementation.
func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if jsonx.IsNull(raw) {
		return nil, nil
	}
	members, err := objectMembers(raw, metadataKey)
	if err != nil {
		return nil, err
	}
	meta := make(map[string]string, len(members))
	for _, m := range members {
		s, ok := rawString(m.Val)
		if !ok {
			return nil, fmt.Errorf("%w: %s key %q is %s, want a string", ErrMalformed, metadataKey, m.Key, jsonx.Kind(m.Val))
		}
		meta[m.Key] = s
	}
	return meta, nil
}

// parseEntry validates one tensor entry; offsets stay relative.
func parseEntry(name string, raw json.RawMessage, dataLen int64) (TensorInfo, error) {
	what := fmt.Sprintf("tensor %q", name)
	members, err := objectMembers(raw, what)
	if err != nil {
		return TensorInfo{}, err
	}
	var (
		dtypeRaw, shapeRaw, offRaw json.RawMessage
	)
	for _, m := range members {
		switch m.Key {
		case "dtype":
			dtypeRaw = m.Val
		case "shape":
			shapeRaw = m.Val
		case "data_offsets":
			offRaw = m.Val
		}
	}
	for _, f := range []struct {
		key string
		raw json.RawMessage
	}{{"dtype", dtypeRaw}, {"shape", shapeRaw}, {"data_offsets", offRaw}} {
		if f.raw == nil {
			return TensorInfo{}, fmt.Errorf("%w: %s: missing %q", ErrMalformed, what, f.key)
		}
	}
	ds, ok := rawString(dtypeRaw)
	if !ok {
		return TensorInfo{}, fmt.Errorf("%w: %s: dtype is %s, want a string", ErrMalformed, what, jsonx.Kind(dtypeRaw))
	}
	dt := DType(ds)
	if !dt.Valid() {
		return TensorInfo{}, fmt.Errorf("%w: %w: %s: unknown dtype %q", ErrMalformed, ErrUnsupportedDType, what, ds)
	}
	dims, bad, ok := rawInts(shapeRaw)
	if !ok {
		if bad < 0 {
			return TensorInfo{}, fmt.Errorf("%w: %s: shape is %s, want an array of non-negative integers", ErrMalformed, what, jsonx.Kind(shapeRaw))
		}
		return TensorInfo{}, fmt.Errorf("%w: %s: shape %s: dimension %d is not a non-negative integer", ErrMalformed, what, compact(shapeRaw), bad)
	}
	offs, bad, ok := rawInts(offRaw)
	if !ok || len(offs) != 2 {
		if ok || bad < 0 {
			return TensorInfo{}, fmt.Errorf("%w: %s: data_offsets is %s, want [begin, end]", ErrMalformed, what, compact(offRaw))
		}
		return TensorInfo{}, fmt.Errorf("%w: %s: data_offsets %s: element %d is not a non-negative integer", ErrMalformed, what, compact(offRaw), bad)
	}
	begin, end := offs[0], offs[1]
	if begin > end {
		return TensorInfo{}, fmt.Errorf("%w: %s: data_offsets [%d, %d] begin after end", ErrMalformed, what, begin, end)
	}
	if end > dataLen {
		return TensorInfo{}, fmt.Errorf("%w: %s: data_offsets [%d, %d] end beyond the %d-byte data section", ErrMalformed, what, begin, end, dataLen)
	}
	shape := make([]int, len(dims))
	var n uint64 = 1
	overflow := false
	for i, d := range dims {
		if uint64(d) > math.MaxInt {
			overflow = true
		}
		shape[i] = int(d)
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 {
			overflow = true
		}
		n = lo
	}
	hi, nbits := bits.Mul64(n, uint64(dt.Bits()))
	if overflow || n > math.MaxInt || hi != 0 || nbits/8 > math.MaxInt64 {
		return TensorInfo{}, fmt.Errorf("%w: %s: shape %v of %s overflows", ErrMalformed, what, dims, dt)
	}
	if nbits%8 != 0 {
		return TensorInfo{}, fmt.Errorf("%w: %s: shape %v of %s is %d bits, not whole bytes", ErrMalformed, what, dims, dt, nbits)
	}
	if want := int64(nbits / 8); want != end-begin {
		return TensorInfo{}, fmt.Errorf("%w: %s: shape %v of %s needs %d bytes, data_offsets [%d, %d] hold %d",
			ErrMalformed, what, dims, dt, want, begin, end, end-begin)
	}
	return TensorInfo{Name: name, DType: dt, Shape: shape, Begin: begin, End: end}, nil
}

// compact returns a short form of a raw JSON value for error messages:
// at most 64 bytes and "...".
func compact(raw json.RawMessage) string { return jsonx.Compact(raw, 64) }

// checkOverlap rejects tensors whose non-empty byte ranges intersect.
func checkOverlap(tensors map[string]TensorInfo) error {
	list := make([]TensorInfo, 0, len(tensors))
	for _, t := range tensors {
		if t.End > t.Begin {
			list = append(list, t)
		}
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Begin != list[j].Begin {
			return list[i].Begin < list[j].Begin
		}
		return list[i].Name < list[j].Name
	})
	for i := 1; i < len(list); i++ {
		if p, t := list[i-1], list[i]; t.Begin < p.End {
			return fmt.Errorf("%w: tensor %q (file bytes %d-%d) overlaps tensor %q (file bytes %d-%d)",
				ErrMalformed, t.Name, t.Begin, t.End, p.Name, p.Begin, p.End)
		}
	}
	return nil
}
