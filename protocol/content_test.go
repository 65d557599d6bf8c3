package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"
)

// contentCodec is one content encoding seen through bytes: decode then re-encode.
type contentCodec struct {
	name     string
	sample   func() ([]byte, error)
	reencode func([]byte) ([]byte, error)
}

var contentCodecs = []contentCodec{
	{"rows", func() ([]byte, error) { return EncodeRows(sampleBatches()) },
		func(b []byte) ([]byte, error) {
			v, err := DecodeRows(b)
			if err != nil {
				return nil, err
			}
			return EncodeRows(v)
		}},
	{"factors", func() ([]byte, error) { return EncodeFactors(sampleFactors()) },
		func(b []byte) ([]byte, error) {
			v, err := DecodeFactors(b)
			if err != nil {
				return nil, err
			}
			return EncodeFactors(v)
		}},
	{"sequences", func() ([]byte, error) { return EncodeSequences(sampleSequences()) },
		func(b []byte) ([]byte, error) {
			v, err := DecodeSequences(b)
			if err != nil {
				return nil, err
			}
			return EncodeSequences(v)
		}},
}

func TestContentGolden(t *testing.T) {
	for _, c := range contentCodecs {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.sample()
			if err != nil {
				t.Fatal(err)
			}
			want := golden(t, c.name+".golden", b)
			again, err := c.reencode(want)
			if err != nil {
				t.Fatalf("decoding the golden file: %v", err)
			}
			if !bytes.Equal(again, want) {
				t.Fatal("decode + encode of the golden file changed it")
			}
		})
	}
}

// TestContentDamage checks every truncation and every byte flip of each sample: a truncation is
// refused as malformed; a flip is refused or decodes to a value that re-encodes to exactly the
// flipped bytes (the decoders accept canonical bytes only).
func TestContentDamage(t *testing.T) {
	for _, c := range contentCodecs {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.sample()
			if err != nil {
				t.Fatal(err)
			}
			for n := range len(b) {
				_, err := c.reencode(b[:n])
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("cut at %d of %d: %v, want ErrMalformed", n, len(b), err)
				}
			}
			if _, err := c.reencode(append(bytes.Clone(b), 0)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("one byte appended: %v, want ErrMalformed", err)
			}
			for i := range b {
				for _, x := range []byte{0x01, 0x80, 0xff} {
					bad := bytes.Clone(b)
					bad[i] ^= x
					again, err := c.reencode(bad)
					if err == nil && !bytes.Equal(again, bad) {
						t.Fatalf("byte %d ^ %#x: accepted, but re-encodes to other bytes", i, x)
					}
					if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
						t.Fatalf("byte %d ^ %#x: %v, want ErrMalformed or ErrVersion", i, x, err)
					}
				}
			}
			bad := bytes.Clone(b)
			bad[4] = 2
			_, err = c.reencode(bad)
			wantErr(t, err, ErrVersion, c.name, "content version 2")
		})
	}
}

func TestRowsRoundTrip(t *testing.T) {
	in := sampleBatches()
	b, err := EncodeRows(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeRows(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d batches back, want %d", len(out), len(in))
	}
	for i := range in {
		a, o := in[i], out[i]
		if a.Task != o.Task || a.Width != o.Width || !reflect.DeepEqual(a.Lens, o.Lens) || !reflect.DeepEqual(a.Start, o.Start) {
			t.Fatalf("batch %d: %+v back, want %+v", i, o, a)
		}
		for j := range a.Data { // bit for bit, NaN and -0 included
			if math.Float32bits(a.Data[j]) != math.Float32bits(o.Data[j]) {
				t.Fatalf("batch %d value %d: %x, want %x", i, j, math.Float32bits(o.Data[j]), math.Float32bits(a.Data[j]))
			}
		}
	}
	// An empty stream is a valid artifact.
	b, err = EncodeRows(nil)
	if err != nil || len(b) != 12 {
		t.Fatalf("empty rows: %x, %v", b, err)
	}
	if out, err := DecodeRows(b); err != nil || len(out) != 0 {
		t.Fatalf("empty rows back: %v, %v", out, err)
	}
}

func TestEncodeRowsRefuses(t *testing.T) {
	ok := func() Batch {
		return Batch{Task: 1, Width: 2, Lens: []int{1, 2}, Start: []int{0, 4}, Data: make([]float32, 6)}
	}
	cases := []struct {
		name string
		edit func(b *Batch)
		sub  string
	}{
		{"zero width", func(b *Batch) { b.Width = 0 }, "width 0"},
		{"negative task", func(b *Batch) { b.Task = -1 }, "task -1"},
		{"no sequences", func(b *Batch) { b.Lens, b.Start, b.Data = nil, nil, nil }, "no sequences"},
		{"starts missing", func(b *Batch) { b.Start = b.Start[:1] }, "1 start positions for 2 sequences"},
		{"empty sequence", func(b *Batch) { b.Lens[0] = 0 }, "lengths [0 2]"},
		{"negative start", func(b *Batch) { b.Start[1] = -3 }, "start positions [0 -3]"},
		{"data short", func(b *Batch) { b.Data = b.Data[:5] }, "5 values for 3 rows of width 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := ok()
			c.edit(&b)
			_, err := EncodeRows([]Batch{b})
			wantErr(t, err, ErrInvalid, "batch 0", c.sub)
		})
	}
	_, err := EncodeRows([]Batch{ok(), {Task: 0, Width: 1, Lens: []int{1}, Start: []int{0}, Data: []float32{1}}})
	wantErr(t, err, ErrInvalid, "batch 1", "task 0 after task 1")
}

// u32s returns the little-endian bytes of vs: content built by hand.
func u32s(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

// rowsBytes, factorsBytes and seqBytes prefix hand-built fields with their content header
// (factorsBytes also inserts the reserved zero after the site count).
func rowsBytes(vs ...uint32) []byte {
	return append([]byte("ROWS"), u32s(append([]uint32{1}, vs...)...)...)
}

func factorsBytes(count uint32, vs ...uint32) []byte {
	return append([]byte("FCTR"), u32s(append([]uint32{1, count, 0}, vs...)...)...)
}

func seqBytes(vs ...uint32) []byte {
	return append([]byte("SEQS"), u32s(append([]uint32{1}, vs...)...)...)
}

func TestDecodeRowsRefuses(t *testing.T) {
	cases := []struct {
		name  string
		bytes []byte
		sub   string
	}{
		{"huge batch count", rowsBytes(1 << 30), "batches needs 1073741824 x 20 bytes"},
		{"huge sequence count", rowsBytes(1, 0, 4, 1<<31, 0, 0), "lengths and starts needs 2147483648 x 8 bytes"},
		{"rows beyond the bytes", rowsBytes(1, 0, 1<<31, 1, 1<<31, 0), "2147483648 rows of width 2147483648"},
		{"zero width", rowsBytes(1, 0, 0, 1, 1, 0, 0), "width 0"},
		{"no sequences", rowsBytes(1, 0, 1, 0, 0, 0), "no sequences"},
		{"empty sequence", rowsBytes(1, 0, 1, 1, 0, 0), "sequence 0 has 0 rows"},
		{"task order", append(rowsBytes(2, 3, 1, 1, 1, 0, 0), u32s(2, 1, 1, 1, 0, 0)...), "task 2 after task 3"},
		{"trailing", rowsBytes(0, 0), "4 bytes after the end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeRows(c.bytes)
			wantErr(t, err, ErrMalformed, "rows", c.sub)
		})
	}
}

func TestFactorsRoundTrip(t *testing.T) {
	in := sampleFactors()
	b, err := EncodeFactors(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeFactors(b)
	if err != nil {
		t.Fatal(err)
	}
	// Sites come back in name order.
	want := []Site{in.Sites[1], in.Sites[0]}
	if !reflect.DeepEqual(out.Sites, want) || string(out.Records) != string(in.Records) {
		t.Fatalf("got %+v, want %+v", out, want)
	}
	// The first site's B starts 8-byte aligned, after the 30-byte name padded to 32.
	if got := math.Float64frombits(binary.LittleEndian.Uint64(b[16+16+32:])); got != 1e-300 {
		t.Fatalf("B[0] at byte 64 is %g, want 1e-300", got)
	}
	// No records, no sites.
	b, err = EncodeFactors(Factors{})
	if err != nil || len(b) != 20 {
		t.Fatalf("empty factors: %x, %v", b, err)
	}
	if out, err := DecodeFactors(b); err != nil || len(out.Sites) != 0 || out.Records != nil {
		t.Fatalf("empty factors back: %+v, %v", out, err)
	}
}

func TestEncodeFactorsRefuses(t *testing.T) {
	ok := func() Site {
		return Site{Name: "s", Out: 2, Rank: 1, In: 2, B: make([]float64, 2), A: make([]float64, 2)}
	}
	cases := []struct {
		name string
		edit func(f *Factors)
		sub  string
	}{
		{"empty name", func(f *Factors) { f.Sites[0].Name = "" }, "name must be"},
		{"long name", func(f *Factors) { f.Sites[0].Name = string(make([]byte, MaxSiteNameLen+1)) }, "name must be"},
		{"not utf-8", func(f *Factors) { f.Sites[0].Name = "\xff" }, "name must be"},
		{"zero out", func(f *Factors) { f.Sites[0].Out = 0 }, "shape 0 x 1 x 2"},
		{"B short", func(f *Factors) { f.Sites[0].B = f.Sites[0].B[:1] }, "B has 1 values, want 2 x 1"},
		{"A short", func(f *Factors) { f.Sites[0].A = nil }, "A has 0 values, want 1 x 2"},
		{"twice", func(f *Factors) { f.Sites = append(f.Sites, ok()) }, `site "s" twice`},
		{"records not JSON", func(f *Factors) { f.Records = []byte("{") }, "records are not valid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := Factors{Sites: []Site{ok()}}
			c.edit(&f)
			_, err := EncodeFactors(f)
			wantErr(t, err, ErrInvalid, "factors", c.sub)
		})
	}
}

func TestDecodeFactorsRefuses(t *testing.T) {
	site := func(name string, m, k, n uint32) []byte {
		b := u32s(uint32(len(name)), m, k, n)
		b = append(b, name...)
		return append(b, make([]byte, pad8(len(name))-len(name))...)
	}
	cases := []struct {
		name  string
		bytes []byte
		sub   string
	}{
		{"huge site count", factorsBytes(1 << 30), "sites needs 1073741824 x 24 bytes"},
		{"empty name", append(append(factorsBytes(1), site("", 1, 1, 1)...), make([]byte, 8)...), "name of 0 bytes"},
		{"long name", append(factorsBytes(1, 2000, 1, 1, 1), make([]byte, 2000)...), "name of 2000 bytes"},
		{"padding not zero", append(factorsBytes(1, 1, 1, 0, 1), 'a', 0, 0, 0, 0, 0, 0, 1), "padding after the name"},
		{"name order", append(append(factorsBytes(2), site("b", 1, 0, 1)...), site("a", 1, 0, 1)...), `site "a" after "b"`},
		{"zero m", append(factorsBytes(1), site("a", 0, 1, 1)...), "shape 0 x 1 x 1"},
		{"factors beyond the bytes", append(factorsBytes(1), site("a", 1<<31, 1<<31, 1)...), "B (2147483648 x 2147483648) needs"},
		{"records beyond the bytes", factorsBytes(0, 100), "records needs 100 x 1 bytes"},
		{"records not JSON", append(factorsBytes(0, 1), '{'), "records are not valid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeFactors(c.bytes)
			wantErr(t, err, ErrMalformed, "factors", c.sub)
		})
	}
}

func TestSequencesRoundTrip(t *testing.T) {
	in := sampleSequences()
	b, err := EncodeSequences(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeSequences(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || !reflect.DeepEqual(out[0], in[0]) || len(out[1]) != 0 || !reflect.DeepEqual(out[2], in[2]) {
		t.Fatalf("got %v, want %v", out, in)
	}
}

func TestSequencesRefuse(t *testing.T) {
	_, err := EncodeSequences([][][]int{{{1}, {}}})
	wantErr(t, err, ErrInvalid, "task 0, sequence 1", "length 0")
	_, err = EncodeSequences([][][]int{{{1}}, {{2, -1}}})
	wantErr(t, err, ErrInvalid, "task 1, sequence 0, position 1", "token id -1")
	_, err = EncodeSequences([][][]int{{{1 << 31}}})
	wantErr(t, err, ErrInvalid, "token id 2147483648")
	cases := []struct {
		name  string
		bytes []byte
		sub   string
	}{
		{"huge task count", seqBytes(1 << 30), "tasks needs 1073741824 x 4 bytes"},
		{"huge sequence count", seqBytes(1, 1<<30), "task 0: lengths needs 1073741824 x 4 bytes"},
		{"tokens beyond the bytes", seqBytes(1, 1, 1<<30), "task 0, sequence 0: 1073741824 tokens needs"},
		{"empty sequence", seqBytes(1, 1, 0), "task 0, sequence 0 has no tokens"},
		{"negative token", seqBytes(1, 1, 1, 0xffffffff), "token id -1 is negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeSequences(c.bytes)
			wantErr(t, err, ErrMalformed, "sequences", c.sub)
		})
	}
}

// The magic keeps one kind's content from decoding as another's, even when empty.
func TestContentKindsDoNotCollide(t *testing.T) {
	rows, _ := EncodeRows(nil)
	fac, _ := EncodeFactors(Factors{})
	seq, _ := EncodeSequences(nil)
	if _, err := DecodeSequences(rows); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty rows as sequences: %v", err)
	}
	if _, err := DecodeRows(seq); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty sequences as rows: %v", err)
	}
	_, err := DecodeRows(fac)
	wantErr(t, err, ErrMalformed, `magic "FCTR", want "ROWS"`, "at byte 0")
	if RefOf(rows) == RefOf(seq) {
		t.Error("empty rows and empty sequences share a ref")
	}
}
