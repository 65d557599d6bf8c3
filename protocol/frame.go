package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// FrameVersion is the version of the artifact frame layout written by this build.
const FrameVersion = 1

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 64

// MaxContentLen is the largest content length a frame can declare (1 TiB); callers pass smaller
// limits to the decoders.
const MaxContentLen = 1 << 40

// frameMagic opens every frame: "ITAF", iteris artifact frame.
var frameMagic = [4]byte{'I', 'T', 'A', 'F'}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Header is a frame header. Its wire layout (little-endian, HeaderSize bytes):
//
//	0  magic "ITAF"          4  version (uint16)     6  kind (uint8)    7  codec (uint8)
//	8  content length (u64)  16 payload length (u64) 24 sha256 of the content (32 bytes)
//	56 crc32c of bytes 0-55  60 reserved, zero
//
// The payload (PayloadLen bytes, the content stored with Codec) follows the header; nothing
// follows the payload.
type Header struct {
	// Version is the frame layout version (FrameVersion).
	Version uint16
	// Kind is the content encoding.
	Kind Kind
	// Codec is how the payload stores the content.
	Codec Codec
	// ContentLen is the length of the canonical content in bytes.
	ContentLen int64
	// PayloadLen is the length of the stored payload in bytes.
	PayloadLen int64
	// Ref is the sha256 of the canonical content: the artifact's address.
	Ref Ref
}

// FrameLen returns the length of the whole frame (header and payload).
func (h Header) FrameLen() int64 { return HeaderSize + h.PayloadLen }

// AppendBinary appends the header's wire form to dst.
func (h Header) AppendBinary(dst []byte) ([]byte, error) {
	var b [HeaderSize]byte
	copy(b[0:4], frameMagic[:])
	binary.LittleEndian.PutUint16(b[4:], h.Version)
	b[6] = byte(h.Kind)
	b[7] = byte(h.Codec)
	binary.LittleEndian.PutUint64(b[8:], uint64(h.ContentLen))
	binary.LittleEndian.PutUint64(b[16:], uint64(h.PayloadLen))
	copy(b[24:56], h.Ref[:])
	binary.LittleEndian.PutUint32(b[56:], crc32.Checksum(b[:56], crcTable))
	return append(dst, b[:]...), nil
}

// ParseHeader parses and checks a frame header: magic, checksum, version, kind, codec and
// lengths (a raw payload is exactly the content). It does not apply a size limit.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("%w: truncated header: %d of %d bytes", ErrCorrupt, len(b), HeaderSize)
	}
	if !bytes.Equal(b[0:4], frameMagic[:]) {
		return h, fmt.Errorf("%w: magic is %q, want %q", ErrCorrupt, b[0:4], frameMagic[:])
	}
	if got, want := binary.LittleEndian.Uint32(b[56:]), crc32.Checksum(b[:56], crcTable); got != want {
		return h, fmt.Errorf("%w: header checksum is %08x, the header's bytes give %08x", ErrCorrupt, got, want)
	}
	if r := binary.LittleEndian.Uint32(b[60:]); r != 0 {
		return h, fmt.Errorf("%w: reserved header bytes are %08x, want 0", ErrCorrupt, r)
	}
	h.Version = binary.LittleEndian.Uint16(b[4:])
	if h.Version != FrameVersion {
		return h, fmt.Errorf("%w: frame version %d (this build reads %d)", ErrVersion, h.Version, FrameVersion)
	}
	h.Kind, h.Codec = Kind(b[6]), Codec(b[7])
	if !h.Kind.Valid() {
		return h, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, b[6])
	}
	if !h.Codec.Valid() {
		return h, fmt.Errorf("%w: unknown codec %d", ErrCorrupt, b[7])
	}
	cl, pl := binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])
	if cl > MaxContentLen || pl > MaxContentLen {
		return h, fmt.Errorf("%w: content length %d, payload length %d (at most %d each)", ErrCorrupt, cl, pl, uint64(MaxContentLen))
	}
	h.ContentLen, h.PayloadLen = int64(cl), int64(pl)
	if h.Codec == CodecRaw && h.PayloadLen != h.ContentLen {
		return h, fmt.Errorf("%w: raw payload of %d bytes for %d bytes of content", ErrCorrupt, h.PayloadLen, h.ContentLen)
	}
	copy(h.Ref[:], b[24:56])
	return h, nil
}

// Frame is an encoded artifact: a header and its payload.
type Frame struct {
	// Header describes the payload.
	Header Header
	// Payload is the content stored with Header.Codec. For CodecRaw it aliases the content.
	Payload []byte
}

// Reader returns the frame's bytes (header, then payload) as a reader, without copying the payload.
func (f Frame) Reader() io.Reader {
	h, _ := f.Header.AppendBinary(nil)
	return io.MultiReader(bytes.NewReader(h), bytes.NewReader(f.Payload))
}

// Bytes returns the frame's bytes (header, then payload) in one new slice.
func (f Frame) Bytes() []byte {
	b := make([]byte, 0, HeaderSize+len(f.Payload))
	b, _ = f.Header.AppendBinary(b)
	return append(b, f.Payload...)
}

// EncodeFrame frames content of the given kind with the codec of opt. The ref is the sha256 of
// content whatever the codec.
func EncodeFrame(kind Kind, content []byte, opt EncodeOptions) (Frame, error) {
	return EncodeFrameRef(kind, RefOf(content), content, opt)
}

// EncodeFrameRef is EncodeFrame for a caller that has already computed ref = RefOf(content).
func EncodeFrameRef(kind Kind, ref Ref, content []byte, opt EncodeOptions) (Frame, error) {
	if !kind.Valid() {
		return Frame{}, fmt.Errorf("%w: unknown kind %d", ErrInvalid, uint8(kind))
	}
	if int64(len(content)) > MaxContentLen {
		return Frame{}, fmt.Errorf("%w: %d bytes of content (at most %d)", ErrInvalid, len(content), int64(MaxContentLen))
	}
	payload, err := compress(opt, content)
	if err != nil {
		return Frame{}, err
	}
	codec := opt.Codec
	h := Header{Version: FrameVersion, Kind: kind, Codec: codec, ContentLen: int64(len(content)),
		PayloadLen: int64(len(payload)), Ref: ref}
	return Frame{Header: h, Payload: payload}, nil
}

// DecodeFrame checks a whole frame and returns its kind and content. want is the ref the caller
// asked for (the zero Ref accepts whatever the header names); limit is the largest content length
// accepted. Errors name the ref and wrap ErrCorrupt, ErrTooLarge or ErrVersion.
func DecodeFrame(frame []byte, want Ref, limit int64) (Kind, []byte, error) {
	if len(frame) >= HeaderSize {
		if h, err := ParseHeader(frame); err == nil && h.FrameLen() != int64(len(frame)) {
			return 0, nil, fmt.Errorf("artifact %s: %w: frame of %d bytes, the header declares %d",
				refName(want, h.Ref), ErrCorrupt, len(frame), h.FrameLen())
		}
	}
	return ReadFrame(bytes.NewReader(frame), want, limit)
}

// ReadFrame reads one frame from r to its end (r must hold nothing after the frame), checks it and
// returns its kind and content, as DecodeFrame. The content buffer grows with the bytes actually
// decoded, never beyond the header's length nor limit, so a lying header cannot exhaust memory.
// An error of r other than an early end is returned wrapped, not as ErrCorrupt.
func ReadFrame(r io.Reader, want Ref, limit int64) (Kind, []byte, error) {
	if limit < 0 {
		return 0, nil, fmt.Errorf("artifact %s: %w: negative size limit %d", want, ErrInvalid, limit)
	}
	var hb [HeaderSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if isEOF(err) {
			return 0, nil, fmt.Errorf("artifact %s: %w: truncated header: %d of %d bytes", want, ErrCorrupt, n, HeaderSize)
		}
		return 0, nil, fmt.Errorf("artifact %s: reading header: %w", want, err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return 0, nil, fmt.Errorf("artifact %s: %w", want, err)
	}
	name := refName(want, h.Ref)
	if !want.IsZero() && h.Ref != want {
		return 0, nil, fmt.Errorf("artifact %s: %w: the header names artifact %s", want, ErrCorrupt, h.Ref)
	}
	if h.ContentLen > limit {
		return 0, nil, fmt.Errorf("artifact %s: %w: %d bytes of %s content, the limit is %d", name, ErrTooLarge, h.ContentLen, h.Kind, limit)
	}
	content, err := readPayload(r, h)
	if err != nil {
		return 0, nil, fmt.Errorf("artifact %s: %w", name, err)
	}
	if err := expectEnd(r); err != nil {
		return 0, nil, fmt.Errorf("artifact %s: %w", name, err)
	}
	if got := RefOf(content); got != h.Ref {
		return 0, nil, fmt.Errorf("artifact %s: %w: content sha256 is %s", name, ErrCorrupt, got)
	}
	return h.Kind, content, nil
}

// refName is the ref an error names: the one asked for, or the header's when none was asked for.
func refName(want, header Ref) Ref {
	if want.IsZero() {
		return header
	}
	return want
}

// expectEnd checks that r has no bytes left.
func expectEnd(r io.Reader) error {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n > 0 {
			return fmt.Errorf("%w: bytes after the payload", ErrCorrupt)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading past the payload: %w", err)
		}
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }

// growStep is the first capacity of a content buffer whose final length is not yet proven by
// bytes received.
const growStep = 8 << 20

// readN reads exactly n bytes from r into a buffer that grows with the bytes received. It returns
// the bytes read so far and io.ErrUnexpectedEOF when r ends early.
func readN(r io.Reader, n int64) ([]byte, error) {
	buf := make([]byte, 0, min(n, growStep))
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			c := min(n, max(2*int64(cap(buf)), growStep))
			buf = append(make([]byte, 0, c), buf...)
		}
		k, err := r.Read(buf[len(buf):min(int64(cap(buf)), n)])
		buf = buf[:len(buf)+k]
		if err == io.EOF {
			if int64(len(buf)) < n {
				return buf, io.ErrUnexpectedEOF
			}
			break
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}
