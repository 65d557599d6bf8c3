// Package tokenizer reads the byte-level BPE tokenizers that Llama 3, Qwen2
// and GPT-2 models ship as a Hugging Face tokenizer.json, and encodes and
// decodes text with them exactly as the Hugging Face tokenizers library does.
//
// Supported pipeline pieces (anything else is refused at load time with an
// error naming the file and the JSON field):
//   - normalizer: null, NFC, or a Sequence of NFC;
//   - pre_tokenizer: ByteLevel (optionally with the GPT-2 split regex), or a
//     Sequence of Split (Regex or String pattern, behavior Isolated) and
//     Digits pre-tokenizers ending in one ByteLevel;
//   - model: BPE over the GPT-2 byte-to-unicode alphabet, merges as "a b"
//     strings or ["a","b"] pairs, applied by rank, with ignore_merges;
//   - added_tokens: matched first (leftmost, longest) with their lstrip,
//     rstrip, single_word and normalized flags;
//   - post_processor: TemplateProcessing (single template), ByteLevel, null,
//     or a Sequence of those;
//   - decoder: ByteLevel, null, or a Sequence holding one ByteLevel.
//
// The split regexes of Llama 3 and Qwen2 use lookahead, which Go's regexp
// cannot express; they run on github.com/dlclark/regexp2 (.NET semantics,
// which agree with Oniguruma's on these patterns). The three patterns that
// GPT-2, Llama 3 and Qwen2 ship verbatim are matched by hand-written
// scanners instead, tested to split exactly as regexp2 does and about ten
// times faster.
//
// Encode and Decode give the ids and text of the Hugging Face library
// (checked against tokenizers 0.23.2 in the tests), with two deliberate
// differences: Decode returns raw bytes where the library would replace
// invalid UTF-8 with U+FFFD, and Encode accepts any Go string (invalid
// bytes are encoded one by one). tokenizer.json's truncation and padding
// settings are ignored, as transformers ignores them. The post-processor in
// tokenizer.json decides what Encode(text, true) adds; tokenizer_config.json's
// add_bos_token / add_eos_token build one only when post_processor is null
// (what transformers v5 does). Files whose added_tokens ids differ from the
// ids the library would assign them are refused rather than renumbered.
package tokenizer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// File names read by Load and LoadDir.
const (
	TokenizerFile       = "tokenizer.json"
	TokenizerConfigFile = "tokenizer_config.json"
	ModelConfigFile     = "config.json"
)

var (
	// ErrUnsupported is wrapped by errors about tokenizer features this
	// package does not implement (another model type, normalizer, ...).
	ErrUnsupported = errors.New("tokenizer feature not supported")
	// ErrInvalid is wrapped by errors about malformed tokenizer files.
	ErrInvalid = errors.New("invalid tokenizer file")
)

// FieldError reports a problem with one JSON field of one file.
// It wraps ErrUnsupported or ErrInvalid.
type FieldError struct {
	File  string // path of the file, as given to the loader
	Field string // JSON field path, e.g. "model.type" or "model.merges[3]"
	Msg   string // what is wrong, e.g. `"Unigram" is not supported`
	Err   error  // ErrUnsupported or ErrInvalid (or a decoding error wrapping one)
}

// Error implements error: "FILE: FIELD MSG".
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Field + " " + e.Msg
}

// Unwrap returns the sentinel the error wraps.
func (e *FieldError) Unwrap() error { return e.Err }

// Tokenizer is a loaded byte-level BPE tokenizer. It is safe for concurrent
// use by several goroutines.
type Tokenizer struct {
	// Model.
	vocab        map[string]int // byte-level token string -> id
	rawVocab     map[string]int // token as raw bytes -> id (tokens made of byte-level chars only)
	byteID       [256]int       // id of the token for one byte, -1 if the vocab lacks it
	merges       map[uint64]merge
	ignoreMerges bool
	unkID        int // -1 when the model has no unk token
	fuseUnk      bool

	// id -> token, for ids in [0, VocabSize()).
	idToken   []string
	idKnown   []bool
	idBytes   []string // what the decoder turns the token into
	idSpecial []bool   // added tokens with special: true

	// Pipeline.
	nfc        bool
	rawAdded   *addedMatcher // added tokens with normalized: false
	normAdded  *addedMatcher // added tokens with normalized: true
	splits     []*splitter
	byteLevel  byteLevelPre
	prefix     []int // ids the post-processor puts before the sequence
	suffix     []int // ids the post-processor puts after it
	joinSpaces bool  // decoder null: tokens are joined with spaces

	bos, eos, pad int // -1 when unknown
	eosIDs        []int

	cacheMu sync.RWMutex
	cache   map[string][]int
}

// Source is the raw content of a tokenizer directory, for New.
// Only Data is required; the paths are used in error messages.
type Source struct {
	Path string // tokenizer.json path
	Data []byte // tokenizer.json content

	ConfigPath string // tokenizer_config.json path
	Config     []byte // its content, nil when absent

	ModelConfigPath string // config.json path
	ModelConfig     []byte // its content, nil when absent
}

// loadFile reads the tokenizer.json at path, and the tokenizer_config.json and
// config.json beside it when present.
func loadFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	dir := filepath.Dir(path)
	src := Source{
		Path:            path,
		Data:            data,
		ConfigPath:      filepath.Join(dir, TokenizerConfigFile),
		ModelConfigPath: filepath.Join(dir, ModelConfigFile),
	}
	if src.Config, err = readOptional(src.ConfigPath); err != nil {
		return nil, err
	}
	if src.ModelConfig, err = readOptional(src.ModelConfigPath); err != nil {
		return nil, err
	}
	return New(src)
}

// LoadDir loads dir/tokenizer.json (and the config files beside it).
func LoadDir(dir string) (*Tokenizer, error) {
	return loadFile(filepath.Join(dir, TokenizerFile))
}

func readOptional(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return data, nil
}

// BOS returns the beginning-of-sequence id: tokenizer_config.json's
// bos_token, else config.json's bos_token_id, else the special token the
// post-processor puts first.
func (t *Tokenizer) BOS() (int, bool) { return t.bos, t.bos >= 0 }

// EOS returns the end-of-sequence id: tokenizer_config.json's eos_token,
// else (the first of) config.json's eos_token_id.
func (t *Tokenizer) EOS() (int, bool) { return t.eos, t.eos >= 0 }

// EOSIDs returns every id that ends generation: the EOS id and, when
// config.json lists several eos_token_id values, each of those.
func (t *Tokenizer) EOSIDs() []int { return append([]int(nil), t.eosIDs...) }

// PAD returns the padding id: tokenizer_config.json's pad_token, else
// config.json's pad_token_id.
func (t *Tokenizer) PAD() (int, bool) { return t.pad, t.pad >= 0 }

// VocabSize returns one more than the largest id of the vocabulary and the
// added tokens: the length of a table indexed by token id.
func (t *Tokenizer) VocabSize() int { return len(t.idToken) }

// TokenID returns the id of a token given in its vocabulary spelling
// (byte-level characters, e.g. "Ġthe") or as an added token's content.
func (t *Tokenizer) TokenID(token string) (int, bool) {
	if a := t.rawAdded.byContent(token); a != nil {
		return a.id, true
	}
	if a := t.normAdded.byContent(token); a != nil {
		return a.id, true
	}
	id, ok := t.vocab[token]
	return id, ok
}

// Token returns the vocabulary spelling of id (an added token's content for
// added tokens).
func (t *Tokenizer) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.idToken) || !t.idKnown[id] {
		return "", false
	}
	return t.idToken[id], true
}

// IsSpecial reports whether id is an added token marked special (skipped by
// Decode with skipSpecial).
func (t *Tokenizer) IsSpecial(id int) bool {
	return id >= 0 && id < len(t.idSpecial) && t.idSpecial[id]
}

// SpecialPrefix returns the ids Encode(text, true) puts before the text.
func (t *Tokenizer) SpecialPrefix() []int { return append([]int(nil), t.prefix...) }

// SpecialSuffix returns the ids Encode(text, true) puts after the text.
func (t *Tokenizer) SpecialSuffix() []int { return append([]int(nil), t.suffix...) }

// Encode turns text into token ids. Added tokens in the text (special or
// not) map straight to their ids. With addSpecial the post-processor's
// tokens (e.g. BOS) are added around the text. Text that is not valid UTF-8
// is encoded byte by byte all the same (invalid bytes split like U+FFFD).
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	ids := make([]int, 0, len(text)/3+len(t.prefix)+len(t.suffix)+1)
	if addSpecial {
		ids = append(ids, t.prefix...)
	}
	ids = t.encodeText(text, ids)
	if addSpecial {
		ids = append(ids, t.suffix...)
	}
	return ids
}

// Decode turns ids back into text. Ids the tokenizer does not know are
// skipped; with skipSpecial, so are added tokens marked special. Unlike the
// Hugging Face library, which replaces invalid UTF-8 with U+FFFD, the bytes
// are returned as they are, so Decode(Encode(s)) == s for every s.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	n := 0
	for _, id := range ids {
		if id >= 0 && id < len(t.idBytes) {
			n += len(t.idBytes[id]) + 1
		}
	}
	buf := make([]byte, 0, n)
	first := true
	for _, id := range ids {
		if id < 0 || id >= len(t.idKnown) || !t.idKnown[id] {
			continue
		}
		if skipSpecial && t.idSpecial[id] {
			continue
		}
		if t.joinSpaces && !first {
			buf = append(buf, ' ')
		}
		first = false
		buf = append(buf, t.idBytes[id]...)
	}
	return string(buf)
}
