package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
)

// Errors of artifact framing and of the content encodings. Every error returned by this package's
// decoders wraps exactly one of them, so callers can branch with errors.Is.
var (
	// ErrCorrupt is returned when stored bytes do not match their address or their framing: wrong
	// magic, a damaged header, a truncated or overlong payload, a payload that does not decompress,
	// or content whose sha256 is not the artifact's ref.
	ErrCorrupt = errors.New("corrupt artifact")
	// ErrTooLarge is returned when a frame declares more content than the caller's limit allows.
	ErrTooLarge = errors.New("artifact too large")
	// ErrVersion is returned for a frame or content encoding of a format version this build does
	// not read.
	ErrVersion = errors.New("unsupported artifact format version")
	// ErrMalformed is returned when content bytes (whose hash may well be right) do not follow
	// their encoding: a count or length that the bytes present cannot hold, a value out of range,
	// trailing bytes.
	ErrMalformed = errors.New("malformed artifact content")
	// ErrInvalid is returned when a value cannot be encoded (inconsistent lengths, out-of-range
	// numbers, an unknown kind or codec).
	ErrInvalid = errors.New("invalid artifact value")
	// ErrBadRef is returned when a string is not a valid artifact ref.
	ErrBadRef = errors.New("invalid artifact ref")
	// ErrBadJobID is returned when a string is not a valid job id.
	ErrBadJobID = errors.New("invalid job id")
)

// Kind says which content encoding an artifact holds.
type Kind uint8

// The artifact kinds. The numbers are part of the wire format.
const (
	// KindRows is a residual stream: a list of batches of float32 rows (EncodeRows).
	KindRows Kind = 1
	// KindFactors is per-site LoRA factors plus JSON site records (EncodeFactors).
	KindFactors Kind = 2
	// KindSequences is token-id sequences per task (EncodeSequences).
	KindSequences Kind = 3
	// KindPrompts is calibration prompts per task with their completion budgets (EncodePrompts).
	KindPrompts Kind = 4
	// KindFiles is a set of named files: a job's output directory (EncodeFiles).
	KindFiles Kind = 5
)

// Valid reports whether k is a kind this build knows.
func (k Kind) Valid() bool { return k >= KindRows && k <= KindFiles }

// String returns the kind's name ("rows", "factors", "sequences").
func (k Kind) String() string {
	switch k {
	case KindRows:
		return "rows"
	case KindFactors:
		return "factors"
	case KindSequences:
		return "sequences"
	case KindPrompts:
		return "prompts"
	case KindFiles:
		return "files"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// RefSize is the size of a ref in bytes (a sha256).
const RefSize = sha256.Size

// Ref is an artifact's address: the sha256 of its canonical, uncompressed content. The codec an
// artifact is stored with never changes its ref. Its text form (String, MarshalText) is 64
// lowercase hex digits, safe as an object or file name.
type Ref [RefSize]byte

// RefOf returns the ref of content.
func RefOf(content []byte) Ref { return Ref(sha256.Sum256(content)) }

var refPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseRef parses the text form of a ref: exactly 64 lowercase hex digits.
func ParseRef(s string) (Ref, error) {
	var r Ref
	if !refPattern.MatchString(s) {
		return r, fmt.Errorf("%w: %q is not 64 lowercase hex digits", ErrBadRef, truncate(s, 80))
	}
	if _, err := hex.Decode(r[:], []byte(s)); err != nil {
		return r, fmt.Errorf("%w: %q: %v", ErrBadRef, s, err)
	}
	return r, nil
}

// String returns the ref as 64 lowercase hex digits.
func (r Ref) String() string { return hex.EncodeToString(r[:]) }

// IsZero reports whether r is the zero ref (no artifact).
func (r Ref) IsZero() bool { return r == Ref{} }

// MarshalText implements encoding.TextMarshaler (64 lowercase hex digits).
func (r Ref) MarshalText() ([]byte, error) {
	b := make([]byte, 2*RefSize)
	hex.Encode(b, r[:])
	return b, nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseRef's validation.
func (r *Ref) UnmarshalText(b []byte) error {
	p, err := ParseRef(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

// MaxJobIDLen is the longest job id accepted.
const MaxJobIDLen = 64

var jobPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ValidateJobID checks that id is a job id: 1 to MaxJobIDLen characters from [a-z0-9_-],
// starting with a letter or digit. Such an id is safe in a NATS subject token, a JetStream bucket
// or stream name and a file name.
func ValidateJobID(id string) error {
	if len(id) == 0 || len(id) > MaxJobIDLen || !jobPattern.MatchString(id) {
		return fmt.Errorf("%w: %q (want 1-%d characters of a-z, 0-9, '_' and '-', starting with a letter or digit)",
			ErrBadJobID, truncate(id, 80), MaxJobIDLen)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
