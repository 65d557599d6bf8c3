package protocol

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzContent runs one content decoder on arbitrary bytes: it must not panic, must fail with one of
// the package's sentinels, and must accept only canonical bytes (decode + encode gives the input).
func fuzzContent(f *testing.F, sample []byte, reencode func([]byte) ([]byte, error)) {
	f.Add(sample)
	f.Add(sample[:len(sample)/2])
	f.Add([]byte{})
	f.Add(sample[:8])
	f.Fuzz(func(t *testing.T, b []byte) {
		again, err := reencode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrVersion", err)
			}
			return
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, which re-encodes to %x", b, again)
		}
	})
}

func FuzzDecodeRows(f *testing.F) {
	b, err := EncodeRows(sampleBatches())
	if err != nil {
		f.Fatal(err)
	}
	fuzzContent(f, b, contentCodecs[0].reencode)
}

func FuzzDecodeFactors(f *testing.F) {
	b, err := EncodeFactors(sampleFactors())
	if err != nil {
		f.Fatal(err)
	}
	fuzzContent(f, b, contentCodecs[1].reencode)
}

func FuzzDecodeSequences(f *testing.F) {
	b, err := EncodeSequences(sampleSequences())
	if err != nil {
		f.Fatal(err)
	}
	fuzzContent(f, b, contentCodecs[2].reencode)
}

// FuzzDecodeFrame feeds arbitrary frames (seeded with every codec's frame of a small content) to
// DecodeFrame and ReadFrame: no panic, a sentinel error, and on success the content's hash is
// the ref and both paths agree.
func FuzzDecodeFrame(f *testing.F) {
	content, err := EncodeSequences(sampleSequences())
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range allCodecs {
		fr, err := EncodeFrame(KindSequences, content, EncodeOptions{Codec: c})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fr.Bytes())
		f.Add(fr.Bytes()[:HeaderSize+3])
	}
	f.Add(zstdBomb(1 << 20))
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, got, err := DecodeFrame(b, Ref{}, 1<<16)
		_, got2, err2 := ReadFrame(bytes.NewReader(b), Ref{}, 1<<16)
		if (err == nil) != (err2 == nil) || !bytes.Equal(got, got2) {
			t.Fatalf("DecodeFrame: %v; ReadFrame: %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error %v wraps no frame sentinel", err)
			}
			return
		}
		h, herr := ParseHeader(b)
		if herr != nil || h.Kind != kind || RefOf(got) != h.Ref || int64(len(got)) != h.ContentLen {
			t.Fatalf("accepted frame with header %+v (%v) and %d bytes of content", h, herr, len(got))
		}
	})
}

// FuzzDecodeMessages feeds every JSON message decoder the same bytes: none may panic, and what one
// accepts must encode to something it accepts again.
func FuzzDecodeMessages(f *testing.F) {
	for _, tc := range sampleMessages() {
		f.Add(Encode(tc.msg))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, tc := range sampleMessages() {
			m, err := tc.decode(b)
			if err != nil {
				continue
			}
			if _, err := tc.decode(Encode(m)); err != nil {
				t.Fatalf("%s: re-encoding an accepted message is refused: %v", tc.name, err)
			}
		}
	})
}

// FuzzDecodePrompts checks the prompts decoder never panics and accepts only canonical content.
func FuzzDecodePrompts(f *testing.F) {
	b, _ := EncodePrompts([][]Prompt{{{Tokens: []int{1, 2}, MaxNew: 3}}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePrompts(b)
		if err != nil {
			return
		}
		again, err := EncodePrompts(p)
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted content is not canonical: %v", err)
		}
	})
}

// FuzzDecodeFiles checks the files decoder never panics and accepts only canonical content.
func FuzzDecodeFiles(f *testing.F) {
	b, _ := EncodeFiles([]File{{Name: "a", Data: []byte("x")}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := DecodeFiles(b)
		if err != nil {
			return
		}
		for _, fl := range fs {
			if ValidateFileName(fl.Name) != nil {
				t.Fatalf("accepted unsafe name %q", fl.Name)
			}
		}
		again, err := EncodeFiles(fs)
		if err != nil || string(again) != string(b) {
			t.Fatalf("accepted content is not canonical: %v", err)
		}
	})
}

// FuzzDecodeGenStep checks the generation-step decoder never panics.
func FuzzDecodeGenStep(f *testing.F) {
	f.Add(EncodeGenStep(GenStep{Job: "j", Attempt: 1, Slots: []int{0}}, []byte{1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, rows, err := DecodeGenStep(b)
		if err != nil {
			return
		}
		if _, _, err := DecodeGenStep(EncodeGenStep(g, rows)); err != nil {
			t.Fatalf("re-encoding an accepted step is refused: %v", err)
		}
	})
}

// FuzzParseRef: a ref parses only from its own canonical text form; job ids that validate are
// made of the safe characters only.
func FuzzParseRef(f *testing.F) {
	f.Add(RefOf(nil).String())
	f.Add("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015AD")
	f.Add("job-1")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err == nil && r.String() != s {
			t.Fatalf("ParseRef(%q) = %s", s, r)
		}
		if err != nil && !errors.Is(err, ErrBadRef) {
			t.Fatalf("ParseRef error %v is not ErrBadRef", err)
		}
		if ValidateJobID(s) == nil {
			for _, c := range s {
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
					t.Fatalf("job id %q accepted with %q", s, c)
				}
			}
		}
	})
}
