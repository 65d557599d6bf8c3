package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fileBytes builds a safetensors file: the header length, header and
// dataLen zero bytes of data.
func fileBytes(header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

// entry formats one tensor entry of a header.
func entry(name, dtype, shape, offsets string) string {
	return `"` + name + `":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":` + offsets + `}`
}

// malformedCases are hand-crafted broken files. tensor is the tensor (or
// field) the error must name; empty when the file has none.
var malformedCases = []struct {
	name   string
	file   []byte
	target error
	tensor string
	want   string // further text the message must hold
}{
	{"empty file", nil, ErrMalformed, "", "shorter than the 8-byte"},
	{"shorter than 8 bytes", []byte{1, 0, 0}, ErrMalformed, "", "3 bytes"},
	{"header past end", append(binary.LittleEndian.AppendUint64(nil, 100), "{}"...), ErrMalformed, "", "past the end"},
	{"absurd header length", append(binary.LittleEndian.AppendUint64(nil, 1<<62), "{}"...), ErrMalformed, "", "exceeds the limit"},
	{"header not json", fileBytes(`{"blk.w": `, 0), ErrMalformed, "", "not valid JSON"},
	{"header truncated json", fileBytes(`{"blk.w": {"dtype":"F32"`, 0), ErrMalformed, "", "JSON"},
	{"header not object", fileBytes(`[1, 2]`, 0), ErrMalformed, "", "an array, want a JSON object"},
	{"header empty", fileBytes(``, 0), ErrMalformed, "", "not valid JSON"},
	{"data after header object", fileBytes(`{} {}`, 0), ErrMalformed, "", "after the object"},
	{"header not utf8", fileBytes("{\"blk.\xff\": {}}", 0), ErrMalformed, "", "UTF-8"},
	{"entry not object", fileBytes(`{"blk.w": [1]}`, 4), ErrMalformed, "blk.w", "want a JSON object"},
	{"entry null", fileBytes(`{"blk.w": null}`, 4), ErrMalformed, "blk.w", "null"},
	{"missing dtype", fileBytes(`{"blk.w":{"shape":[1],"data_offsets":[0,4]}}`, 4), ErrMalformed, "blk.w", `missing "dtype"`},
	{"missing shape", fileBytes(`{"blk.w":{"dtype":"F32","data_offsets":[0,4]}}`, 4), ErrMalformed, "blk.w", `missing "shape"`},
	{"missing data_offsets", fileBytes(`{"blk.w":{"dtype":"F32","shape":[1]}}`, 4), ErrMalformed, "blk.w", `missing "data_offsets"`},
	{"dtype number", fileBytes(`{"blk.w":{"dtype":5,"shape":[1],"data_offsets":[0,4]}}`, 4), ErrMalformed, "blk.w", "dtype is a number"},
	{"dtype null", fileBytes(`{"blk.w":{"dtype":null,"shape":[1],"data_offsets":[0,4]}}`, 4), ErrMalformed, "blk.w", "dtype is null"},
	{"unknown dtype", fileBytes(`{`+entry("blk.w", "F31", "[1]", "[0,4]")+`}`, 4), ErrUnsupportedDType, "blk.w", `"F31"`},
	{"lower-case dtype", fileBytes(`{`+entry("blk.w", "f32", "[1]", "[0,4]")+`}`, 4), ErrMalformed, "blk.w", `"f32"`},
	{"shape string", fileBytes(`{`+entry("blk.w", "F32", `"1"`, "[0,4]")+`}`, 4), ErrMalformed, "blk.w", "shape is a string"},
	{"shape null", fileBytes(`{`+entry("blk.w", "F32", `null`, "[0,4]")+`}`, 4), ErrMalformed, "blk.w", "shape is null"},
	{"shape float", fileBytes(`{`+entry("blk.w", "F32", `[1.5]`, "[0,4]")+`}`, 4), ErrMalformed, "blk.w", "dimension 0"},
	{"shape string element", fileBytes(`{`+entry("blk.w", "F32", `[1,"1"]`, "[0,4]")+`}`, 4), ErrMalformed, "blk.w", "dimension 1"},
	{"negative dim", fileBytes(`{`+entry("blk.w", "F32", `[2,-1]`, "[0,4]")+`}`, 4), ErrMalformed, "blk.w", "dimension 1 is not a non-negative"},
	{"offsets one element", fileBytes(`{`+entry("blk.w", "F32", `[1]`, "[4]")+`}`, 4), ErrMalformed, "blk.w", "want [begin, end]"},
	{"offsets three elements", fileBytes(`{`+entry("blk.w", "F32", `[1]`, "[0,4,8]")+`}`, 4), ErrMalformed, "blk.w", "want [begin, end]"},
	{"offsets object", fileBytes(`{`+entry("blk.w", "F32", `[1]`, `{"0":4}`)+`}`, 4), ErrMalformed, "blk.w", "want [begin, end]"},
	{"offsets negative", fileBytes(`{`+entry("blk.w", "F32", `[1]`, "[-4,0]")+`}`, 4), ErrMalformed, "blk.w", "element 0"},
	{"begin after end", fileBytes(`{`+entry("blk.w", "F32", `[1]`, "[8,4]")+`}`, 8), ErrMalformed, "blk.w", "begin after end"},
	{"end beyond data", fileBytes(`{`+entry("blk.w", "F32", `[2]`, "[0,8]")+`}`, 4), ErrMalformed, "blk.w", "beyond the 4-byte data section"},
	{"overlap", fileBytes(`{`+entry("blk.a", "F32", `[2]`, "[0,8]")+`,`+entry("blk.w", "F32", `[2]`, "[4,12]")+`}`, 12),
		ErrMalformed, "blk.w", `overlaps tensor "blk.a"`},
	{"same range twice", fileBytes(`{`+entry("blk.a", "F32", `[1]`, "[0,4]")+`,`+entry("blk.w", "F32", `[1]`, "[0,4]")+`}`, 4),
		ErrMalformed, "blk.w", `overlaps tensor "blk.a"`},
	{"size mismatch", fileBytes(`{`+entry("blk.w", "F32", `[3]`, "[0,8]")+`}`, 8), ErrMalformed, "blk.w", "needs 12 bytes"},
	{"size mismatch bf16", fileBytes(`{`+entry("blk.w", "BF16", `[2,2]`, "[0,16]")+`}`, 16), ErrMalformed, "blk.w", "needs 8 bytes"},
	{"shape overflow", fileBytes(`{`+entry("blk.w", "F32", `[4294967296,4294967296,16]`, "[0,4]")+`}`, 4), ErrMalformed, "blk.w", "overflows"},
	{"dim beyond int64", fileBytes(`{`+entry("blk.w", "F32", `[99999999999999999999]`, "[0,4]")+`}`, 4), ErrMalformed, "blk.w", "dimension 0"},
	{"sub-byte remainder", fileBytes(`{`+entry("blk.w", "F4", `[3]`, "[0,1]")+`}`, 1), ErrMalformed, "blk.w", "not whole bytes"},
	{"duplicate name", fileBytes(`{`+entry("blk.w", "F32", `[1]`, "[0,4]")+`,`+entry("blk.w", "F32", `[1]`, "[4,8]")+`}`, 8),
		ErrMalformed, "blk.w", "duplicate key"},
	{"duplicate field", fileBytes(`{"blk.w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}`, 4),
		ErrMalformed, "blk.w", `duplicate key "dtype"`},
	{"metadata number value", fileBytes(`{"__metadata__":{"blk.w":1}}`, 0), ErrMalformed, "blk.w", "want a string"},
	{"metadata null value", fileBytes(`{"__metadata__":{"blk.w":null}}`, 0), ErrMalformed, "blk.w", "null, want a string"},
	{"metadata array", fileBytes(`{"__metadata__":["blk.w"]}`, 0), ErrMalformed, "", "__metadata__ is an array, want a JSON object"},
	{"metadata duplicate key", fileBytes(`{"__metadata__":{"blk.w":"a","blk.w":"b"}}`, 0), ErrMalformed, "blk.w", "duplicate key"},
}

func TestOpenMalformed(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".safetensors")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("case %d: Open succeeded, want %v", i, tc.target)
			}
			want := []string{path, tc.want}
			if tc.tensor != "" {
				want = append(want, `"`+tc.tensor+`"`)
			}
			assertErr(t, err, tc.target, want...)
			if tc.target == ErrUnsupportedDType {
				assertErr(t, err, ErrMalformed)
			}
		})
	}
}

func TestOpenMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.safetensors")
	_, err := Open(path)
	assertErr(t, err, os.ErrNotExist, path)
}

func TestParseHeaderValid(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		dataLen int64
		want    map[string]TensorInfo // offsets relative; the test adds 8+len(header)
		meta    map[string]string
	}{
		{"empty", `{}`, 0, map[string]TensorInfo{}, nil},
		{"padded", `{}      `, 0, map[string]TensorInfo{}, nil},
		{"null metadata", `{"__metadata__":null}`, 0, map[string]TensorInfo{}, nil},
		{"scalar and empty", `{` + entry("s", "F64", "[]", "[0,8]") + `,` + entry("e", "I32", "[0,3]", "[8,8]") + `}`, 8,
			map[string]TensorInfo{"s": {Name: "s", DType: F64, Shape: []int{}, Begin: 0, End: 8}, "e": {Name: "e", DType: I32, Shape: []int{0, 3}, Begin: 8, End: 8}}, nil},
		{"gap, trailing data, extra field", `{"w":{"dtype":"U8","shape":[2],"data_offsets":[4,6],"extra":[1]},"__metadata__":{"a":"b"}}`, 10,
			map[string]TensorInfo{"w": {Name: "w", DType: U8, Shape: []int{2}, Begin: 4, End: 6}}, map[string]string{"a": "b"}},
		{"sub-byte", `{` + entry("q", "F4", "[2,3]", "[0,3]") + `}`, 3,
			map[string]TensorInfo{"q": {Name: "q", DType: F4, Shape: []int{2, 3}, Begin: 0, End: 3}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, meta, err := parseHeader([]byte(tc.header), tc.dataLen)
			if err != nil {
				t.Fatal(err)
			}
			base := 8 + int64(len(tc.header))
			for k, v := range tc.want {
				v.Begin += base
				v.End += base
				tc.want[k] = v
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("tensors %v, want %v", got, tc.want)
			}
			if !reflect.DeepEqual(meta, tc.meta) {
				t.Errorf("metadata %v, want %v", meta, tc.meta)
			}
		})
	}
}

func TestFloat32UnsupportedDType(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ints.safetensors")
	if err := os.WriteFile(path, fileBytes(`{`+entry("blk.ids", "I64", "[2]", "[0,16]")+`}`, 16), 0o644); err != nil {
		t.Fatal(err)
	}
	f := openT(t, path)
	_, err := f.Float32("blk.ids")
	assertErr(t, err, ErrUnsupportedDType, path, `"blk.ids"`, "I64")
	raw, err := f.Raw("blk.ids")
	if err != nil || len(raw) != 16 {
		t.Fatalf("Raw: %d bytes, %v; want 16", len(raw), err)
	}
}
