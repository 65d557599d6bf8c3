package protocol

import (
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Codec says how a frame's payload stores its content. The numbers are part of the wire format.
type Codec uint8

// The codecs.
const (
	// CodecRaw stores the content as is.
	CodecRaw Codec = 0
	// CodecZstd stores the content as zstd frames.
	CodecZstd Codec = 1
	// CodecShuffle4Zstd groups the bytes of each 4-byte word by significance (all first bytes,
	// then all second bytes, ...; a tail shorter than 4 bytes stays last) and stores the result as
	// zstd frames. It pays on float32 data, whose sign/exponent bytes repeat.
	CodecShuffle4Zstd Codec = 2
)

// Valid reports whether c is a codec this build knows.
func (c Codec) Valid() bool { return c <= CodecShuffle4Zstd }

// String returns the codec's name ("raw", "zstd", "shuffle4+zstd").
func (c Codec) String() string {
	switch c {
	case CodecRaw:
		return "raw"
	case CodecZstd:
		return "zstd"
	case CodecShuffle4Zstd:
		return "shuffle4+zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// Level is a zstd encoder level. It is not recorded in the frame: any level decodes the same way.
type Level int

// The zstd levels (klauspost/compress names).
const (
	// LevelDefault is LevelFastest: on the tiny-skills residual streams the next level stores 5%
	// fewer bytes for 1.4-1.6 times the encode time (DESIGN.md).
	LevelDefault Level = 0
	// LevelFastest is zstd.SpeedFastest (about zstd -1).
	LevelFastest Level = 1
	// LevelDefaultZstd is zstd.SpeedDefault (about zstd -3).
	LevelDefaultZstd Level = 2
	// LevelBetter is zstd.SpeedBetterCompression (about zstd -7).
	LevelBetter Level = 3
	// LevelBest is zstd.SpeedBestCompression (about zstd -11).
	LevelBest Level = 4
)

// EncodeOptions selects how EncodeFrame stores the content.
type EncodeOptions struct {
	// Codec is the payload codec (CodecRaw by default).
	Codec Codec
	// Level is the zstd level for the zstd codecs (LevelDefault by default).
	Level Level
}

// DefaultCodec returns the codec iteris stores an artifact kind with, chosen from measurements on
// the tiny-skills model's activations and RegMean factors (DESIGN.md): float data compresses to
// 0.69-0.80 of its size, but encoding and decoding cost more time than moving the saved bytes
// through JetStream takes, so rows and factors are stored raw; sequences (small token ids)
// compress to 0.27 and are stored with zstd.
func DefaultCodec(k Kind) Codec {
	switch k {
	case KindSequences, KindPrompts, KindFiles:
		return CodecZstd
	}
	return CodecRaw
}

// zstdWindow is the encoder's window and the largest window the decoder accepts: frames cost the
// decoder at most this much history memory.
const zstdWindow = 8 << 20

var (
	encoders    [LevelBest + 1]*zstd.Encoder
	encoderOnce [LevelBest + 1]sync.Once
	decoders    sync.Pool
)

// encoder returns the shared encoder of a level. Encoders run single-threaded with fixed options,
// so a given input always compresses to the same bytes; EncodeAll is safe for concurrent use.
func encoder(l Level) (*zstd.Encoder, error) {
	if l == LevelDefault {
		l = LevelFastest
	}
	if l < LevelFastest || l > LevelBest {
		return nil, fmt.Errorf("%w: zstd level %d (want 1-4)", ErrInvalid, l)
	}
	encoderOnce[l].Do(func() {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevel(l)),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow),
			zstd.WithEncoderCRC(false), // the frame's sha256 covers the content
			zstd.WithZeroFrames(true),
		)
		if err != nil {
			panic(err) // constant options; cannot fail
		}
		encoders[l] = e
	})
	return encoders[l], nil
}

func getDecoder() *zstd.Decoder {
	if d, ok := decoders.Get().(*zstd.Decoder); ok {
		return d
	}
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(zstdWindow),
		zstd.WithDecoderMaxMemory(zstdWindow),
		zstd.WithDecoderLowmem(true),
	)
	if err != nil {
		panic(err) // constant options; cannot fail
	}
	return d
}

func putDecoder(d *zstd.Decoder) {
	_ = d.Reset(nil)
	decoders.Put(d)
}

// compress returns content stored with opt's codec.
func compress(opt EncodeOptions, content []byte) ([]byte, error) {
	switch opt.Codec {
	case CodecRaw:
		return content, nil
	case CodecZstd, CodecShuffle4Zstd:
		enc, err := encoder(opt.Level)
		if err != nil {
			return nil, err
		}
		src := content
		if opt.Codec == CodecShuffle4Zstd {
			src = shuffle4(make([]byte, len(content)), content)
		}
		return enc.EncodeAll(src, make([]byte, 0, len(src)/2+64)), nil
	}
	return nil, fmt.Errorf("%w: unknown codec %d", ErrInvalid, uint8(opt.Codec))
}

// readPayload reads h's payload from r and returns the content (its hash not yet checked).
func readPayload(r io.Reader, h Header) ([]byte, error) {
	if h.Codec == CodecRaw {
		b, err := readN(r, h.ContentLen)
		return b, payloadErr(err, int64(len(b)), h.PayloadLen, nil)
	}
	lr := &trackedReader{r: io.LimitReader(r, h.PayloadLen)}
	dec := getDecoder()
	defer putDecoder(dec)
	if err := dec.Reset(lr); err != nil {
		return nil, payloadErr(err, lr.n, h.PayloadLen, lr)
	}
	b, err := readN(dec, h.ContentLen)
	if err != nil {
		if err == io.ErrUnexpectedEOF && lr.n == h.PayloadLen {
			return nil, fmt.Errorf("%w: %s payload decompresses to %d bytes, the header declares %d", ErrCorrupt, h.Codec, len(b), h.ContentLen)
		}
		return nil, payloadErr(err, lr.n, h.PayloadLen, lr)
	}
	if err := expectEnd(dec); err != nil {
		if lr.err != nil {
			return nil, fmt.Errorf("reading payload: %w", lr.err)
		}
		return nil, fmt.Errorf("%w: %s payload holds more than the %d bytes of content the header declares (%v)", ErrCorrupt, h.Codec, h.ContentLen, err)
	}
	if lr.n != h.PayloadLen {
		return nil, fmt.Errorf("%w: truncated payload: %d of %d bytes", ErrCorrupt, lr.n, h.PayloadLen)
	}
	if h.Codec == CodecShuffle4Zstd {
		b = unshuffle4(make([]byte, len(b)), b)
	}
	return b, nil
}

// payloadErr classifies an error met while reading n of want payload bytes: an early end or a
// decoder error is corruption; an error of the underlying reader is passed on.
func payloadErr(err error, n, want int64, lr *trackedReader) error {
	switch {
	case err == nil:
		return nil
	case lr != nil && lr.err != nil:
		return fmt.Errorf("reading payload: %w", lr.err)
	case lr == nil && !isEOF(err):
		return fmt.Errorf("reading payload: %w", err)
	case isEOF(err) && n < want:
		return fmt.Errorf("%w: truncated payload: %d of %d bytes", ErrCorrupt, n, want)
	}
	return fmt.Errorf("%w: payload does not decompress: %v", ErrCorrupt, err)
}

// trackedReader counts the bytes read and keeps the first error other than io.EOF, so that a
// decoder's error can be told apart from the transport's.
type trackedReader struct {
	r   io.Reader
	n   int64
	err error
}

func (t *trackedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return n, err
}

// shuffle4 writes src with the bytes of each 4-byte word grouped by significance into dst
// (len(dst) == len(src)) and returns dst.
func shuffle4(dst, src []byte) []byte {
	w := len(src) / 4
	for i := range w {
		s := src[4*i : 4*i+4 : 4*i+4]
		dst[i], dst[w+i], dst[2*w+i], dst[3*w+i] = s[0], s[1], s[2], s[3]
	}
	copy(dst[4*w:], src[4*w:])
	return dst
}

// unshuffle4 inverts shuffle4.
func unshuffle4(dst, src []byte) []byte {
	w := len(src) / 4
	for i := range w {
		d := dst[4*i : 4*i+4 : 4*i+4]
		d[0], d[1], d[2], d[3] = src[i], src[w+i], src[2*w+i], src[3*w+i]
	}
	copy(dst[4*w:], src[4*w:])
	return dst
}
