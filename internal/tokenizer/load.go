package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// Limits on ids, so that a hostile file cannot make the loader allocate
// without bound: ids below maxTokenID and not much sparser than the token
// count (real vocabularies are dense).
const (
	maxTokenID  = 1 << 24
	maxNesting  = 8
	sparseSlack = 1024
)

// loader reads one file and reports errors against it.
type loader struct{ file string }

func (l loader) unsupported(field, format string, args ...any) error {
	return &FieldError{File: l.file, Field: field, Msg: fmt.Sprintf(format, args...), Err: ErrUnsupported}
}

func (l loader) invalid(field, format string, args ...any) error {
	return &FieldError{File: l.file, Field: field, Msg: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

type object map[string]json.RawMessage

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// object decodes raw as a JSON object; ok is false for null or absent.
func (l loader) object(raw json.RawMessage, field string) (o object, ok bool, err error) {
	if isNull(raw) {
		return nil, false, nil
	}
	if err := json.Unmarshal(raw, &o); err != nil || o == nil {
		return nil, false, l.invalid(field, "is not a JSON object")
	}
	return o, true, nil
}

// str reads an optional string field; ok is false when absent or null.
func (l loader) str(o object, key, field string) (s string, ok bool, err error) {
	raw, present := o[key]
	if !present || isNull(raw) {
		return "", false, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, l.invalid(field, "is not a string")
	}
	return s, true, nil
}

// boolean reads an optional boolean field, def when absent or null.
func (l loader) boolean(o object, key, field string, def bool) (bool, error) {
	raw, present := o[key]
	if !present || isNull(raw) {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, l.invalid(field, "is not a boolean")
	}
	return b, nil
}

// array decodes raw as a JSON array; null or absent gives nil.
func (l loader) array(raw json.RawMessage, field string) ([]json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, l.invalid(field, "is not a JSON array")
	}
	return a, nil
}

// typeName reads the "type" field of a pipeline component.
func (l loader) typeName(o object, field string) (string, error) {
	typ, ok, err := l.str(o, "type", field+".type")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", l.invalid(field+".type", "is missing")
	}
	return typ, nil
}

func checkID(id int64) bool { return id >= 0 && id < maxTokenID }

// fileJSON is the top level of tokenizer.json. The model is decoded in the
// same pass (it is most of the file); the small parts stay raw.
type fileJSON struct {
	AddedTokens   json.RawMessage `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         *modelJSON      `json:"model"`
}

type modelJSON struct {
	Type                    json.RawMessage  `json:"type"`
	Dropout                 json.RawMessage  `json:"dropout"`
	UnkToken                json.RawMessage  `json:"unk_token"`
	ContinuingSubwordPrefix json.RawMessage  `json:"continuing_subword_prefix"`
	EndOfWordSuffix         json.RawMessage  `json:"end_of_word_suffix"`
	FuseUnk                 json.RawMessage  `json:"fuse_unk"`
	ByteFallback            json.RawMessage  `json:"byte_fallback"`
	IgnoreMerges            json.RawMessage  `json:"ignore_merges"`
	Vocab                   map[string]int64 `json:"vocab"`
	Merges                  json.RawMessage  `json:"merges"`
}

// decodeError turns a JSON decoding error into a FieldError.
func (l loader) decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return l.invalid(typeErr.Field, "has the wrong JSON type (%s)", typeErr.Value)
	}
	return l.invalid("", "is not valid JSON: %v", err)
}

// New builds a tokenizer from the content of its files.
func New(src Source) (*Tokenizer, error) {
	name := src.Path
	if name == "" {
		name = TokenizerFile
	}
	l := loader{file: name}
	var file fileJSON
	if err := json.Unmarshal(src.Data, &file); err != nil {
		return nil, l.decodeError(err)
	}
	t := &Tokenizer{unkID: -1, bos: -1, eos: -1, pad: -1, cache: make(map[string][]int)}

	if err := t.loadModel(l, file.Model); err != nil {
		return nil, err
	}
	if err := t.loadNormalizer(l, file.Normalizer); err != nil {
		return nil, err
	}
	added, err := t.loadAdded(l, file.AddedTokens)
	if err != nil {
		return nil, err
	}
	if err := t.loadPreTokenizer(l, file.PreTokenizer); err != nil {
		return nil, err
	}
	postNull := isNull(file.PostProcessor)
	if err := t.loadPostProcessor(l, file.PostProcessor, "post_processor", 0); err != nil {
		return nil, err
	}
	if err := t.loadDecoder(l, file.Decoder, "decoder", 0); err != nil {
		return nil, err
	}
	if err := t.buildTables(l, added); err != nil {
		return nil, err
	}
	for _, id := range append(append([]int(nil), t.prefix...), t.suffix...) {
		if _, ok := t.Token(id); !ok {
			return nil, l.invalid("post_processor", "adds id %d, which is neither in model.vocab nor in added_tokens", id)
		}
	}
	if err := t.loadSpecialIDs(src, postNull); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Tokenizer) loadModel(l loader, mj *modelJSON) error {
	if mj == nil {
		return l.invalid("model", "is missing")
	}
	m := object{
		"type": mj.Type, "dropout": mj.Dropout, "unk_token": mj.UnkToken,
		"continuing_subword_prefix": mj.ContinuingSubwordPrefix, "end_of_word_suffix": mj.EndOfWordSuffix,
		"fuse_unk": mj.FuseUnk, "byte_fallback": mj.ByteFallback, "ignore_merges": mj.IgnoreMerges,
	}
	typ, hasType, err := l.str(m, "type", "model.type")
	if err != nil {
		return err
	}
	if !hasType {
		// Old files leave the type out; a BPE is recognised by its merges.
		if len(mj.Merges) == 0 {
			return l.invalid("model.type", "is missing")
		}
		typ = "BPE"
	}
	if typ != "BPE" {
		return l.unsupported("model.type", "%q is not supported (only \"BPE\")", typ)
	}
	if raw := m["dropout"]; !isNull(raw) {
		var d float64
		if err := json.Unmarshal(raw, &d); err != nil {
			return l.invalid("model.dropout", "is not a number")
		}
		if d != 0 {
			return l.unsupported("model.dropout", "%v is not supported (BPE dropout is random; only null or 0)", d)
		}
	}
	if fb, err := l.boolean(m, "byte_fallback", "model.byte_fallback", false); err != nil {
		return err
	} else if fb {
		return l.unsupported("model.byte_fallback", "true is not supported (sentencepiece-style byte fallback; only byte-level BPE)")
	}
	for _, key := range []string{"continuing_subword_prefix", "end_of_word_suffix"} {
		s, ok, err := l.str(m, key, "model."+key)
		if err != nil {
			return err
		}
		if ok && s != "" {
			return l.unsupported("model."+key, "%q is not supported (only null or \"\")", s)
		}
	}
	if t.ignoreMerges, err = l.boolean(m, "ignore_merges", "model.ignore_merges", false); err != nil {
		return err
	}
	if t.fuseUnk, err = l.boolean(m, "fuse_unk", "model.fuse_unk", false); err != nil {
		return err
	}

	vocab := mj.Vocab
	if vocab == nil {
		return l.invalid("model.vocab", "is missing (want an object of token -> integer id)")
	}
	t.vocab = make(map[string]int, len(vocab))
	for tok, id := range vocab {
		if !checkID(id) {
			return l.invalid("model.vocab", "token %q has id %d, outside [0, %d)", tok, id, maxTokenID)
		}
		t.vocab[tok] = int(id)
	}
	if unk, ok, err := l.str(m, "unk_token", "model.unk_token"); err != nil {
		return err
	} else if ok {
		id, found := t.vocab[unk]
		if !found {
			return l.invalid("model.unk_token", "%q is not in model.vocab", unk)
		}
		t.unkID = id
	}
	for b := range t.byteID {
		id, ok := t.vocab[string(byteToRune[b])]
		if !ok {
			id = -1
		}
		t.byteID[b] = id
	}
	if t.ignoreMerges {
		t.rawVocab = make(map[string]int, len(t.vocab))
		for tok, id := range t.vocab {
			if raw, ok := byteLevelDecode(tok); ok {
				t.rawVocab[raw] = id
			}
		}
	}
	return t.loadMerges(l, mj.Merges)
}

// loadMerges reads model.merges, given as "a b" strings or ["a", "b"] pairs.
func (t *Tokenizer) loadMerges(l loader, raw json.RawMessage) error {
	const field = "model.merges"
	if isNull(raw) {
		return nil
	}
	var pairs [][2]string
	var asStrings []string
	var asPairs [][]string
	if first := firstElement(raw); first == '"' && json.Unmarshal(raw, &asStrings) == nil {
		pairs = make([][2]string, len(asStrings))
		for i, s := range asStrings {
			a, b, ok := strings.Cut(s, " ")
			if !ok || a == "" || b == "" {
				return l.invalid(field+"["+strconv.Itoa(i)+"]", "%q is not two tokens separated by a space", s)
			}
			pairs[i] = [2]string{a, b}
		}
	} else if first == '[' && json.Unmarshal(raw, &asPairs) == nil {
		pairs = make([][2]string, len(asPairs))
		for i, p := range asPairs {
			if len(p) != 2 {
				return l.invalid(field+"["+strconv.Itoa(i)+"]", "has %d tokens, want a pair", len(p))
			}
			pairs[i] = [2]string{p[0], p[1]}
		}
	} else {
		// Mixed or malformed: item by item, to name the bad one.
		items, err := l.array(raw, field)
		if err != nil {
			return err
		}
		pairs = make([][2]string, len(items))
		for i, item := range items {
			f := field + "[" + strconv.Itoa(i) + "]"
			var s string
			if json.Unmarshal(item, &s) == nil {
				a, b, ok := strings.Cut(s, " ")
				if !ok || a == "" || b == "" {
					return l.invalid(f, "%q is not two tokens separated by a space", s)
				}
				pairs[i] = [2]string{a, b}
				continue
			}
			var p []string
			if err := json.Unmarshal(item, &p); err != nil || len(p) != 2 {
				return l.invalid(f, "is neither \"a b\" nor a pair [\"a\", \"b\"]")
			}
			pairs[i] = [2]string{p[0], p[1]}
		}
	}
	t.merges = make(map[uint64]merge, len(pairs))
	for i, p := range pairs {
		f := field + "[" + strconv.Itoa(i) + "]"
		a, ok := t.vocab[p[0]]
		if !ok {
			return l.invalid(f, "token %q is not in model.vocab", p[0])
		}
		b, ok := t.vocab[p[1]]
		if !ok {
			return l.invalid(f, "token %q is not in model.vocab", p[1])
		}
		c, ok := t.vocab[p[0]+p[1]]
		if !ok {
			return l.invalid(f, "merged token %q is not in model.vocab", p[0]+p[1])
		}
		// As in the Hugging Face BPE builder, a repeated pair keeps its last rank.
		t.merges[pairKey(a, b)] = merge{rank: int32(i), newID: int32(c)}
	}
	return nil
}

// firstElement returns the first byte of the first element of a JSON
// array, or 0.
func firstElement(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '[' {
		return 0
	}
	raw = bytes.TrimSpace(raw[1:])
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func (t *Tokenizer) loadNormalizer(l loader, raw json.RawMessage) error {
	return t.normalizerItem(l, raw, "normalizer", 0)
}

func (t *Tokenizer) normalizerItem(l loader, raw json.RawMessage, field string, depth int) error {
	o, ok, err := l.object(raw, field)
	if err != nil || !ok {
		return err
	}
	typ, err := l.typeName(o, field)
	if err != nil {
		return err
	}
	switch typ {
	case "NFC":
		t.nfc = true
		return nil
	case "Sequence":
		if depth >= maxNesting {
			return l.unsupported(field, "nests Sequences deeper than %d", maxNesting)
		}
		items, err := l.array(o["normalizers"], field+".normalizers")
		if err != nil {
			return err
		}
		for i, item := range items {
			if err := t.normalizerItem(l, item, fmt.Sprintf("%s.normalizers[%d]", field, i), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return l.unsupported(field+".type", "%q is not supported (only null, NFC or a Sequence of NFC)", typ)
}

func (t *Tokenizer) loadAdded(l loader, raw json.RawMessage) ([]*addedToken, error) {
	items, err := l.array(raw, "added_tokens")
	if err != nil {
		return nil, err
	}
	var all, rawSet, normSet []*addedToken
	// The Hugging Face library does not take the ids in added_tokens as
	// given: a token in the vocabulary gets its vocabulary id, a repeated
	// content its first id, and a new one the next id after the vocabulary
	// (or after the added ids above it). A file whose ids disagree would
	// encode differently there, so it is refused.
	seen := make(map[string]int)
	maxAssigned := -1
	for i, item := range items {
		field := fmt.Sprintf("added_tokens[%d]", i)
		o, ok, err := l.object(item, field)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, l.invalid(field, "is null")
		}
		var id int64
		if err := json.Unmarshal(o["id"], &id); err != nil || !checkID(id) {
			return nil, l.invalid(field+".id", "is not an integer in [0, %d)", maxTokenID)
		}
		content, ok, err := l.str(o, "content", field+".content")
		if err != nil {
			return nil, err
		}
		if !ok || content == "" {
			return nil, l.invalid(field+".content", "is missing or empty")
		}
		want, ok := t.vocab[content]
		if !ok {
			want, ok = seen[content]
		}
		if !ok {
			want = len(t.vocab)
			if maxAssigned >= want {
				want = maxAssigned + 1
			}
		}
		if int64(want) != id {
			return nil, l.invalid(field+".id", "is %d but the Hugging Face library assigns %q id %d (added tokens must follow model.vocab in order)", id, content, want)
		}
		maxAssigned = max(maxAssigned, want)
		if _, dup := seen[content]; dup {
			continue
		}
		seen[content] = want
		a := &addedToken{id: int(id), content: content}
		if a.special, err = l.boolean(o, "special", field+".special", false); err != nil {
			return nil, err
		}
		if a.singleWord, err = l.boolean(o, "single_word", field+".single_word", false); err != nil {
			return nil, err
		}
		if a.lstrip, err = l.boolean(o, "lstrip", field+".lstrip", false); err != nil {
			return nil, err
		}
		if a.rstrip, err = l.boolean(o, "rstrip", field+".rstrip", false); err != nil {
			return nil, err
		}
		normalized, err := l.boolean(o, "normalized", field+".normalized", !a.special)
		if err != nil {
			return nil, err
		}
		all = append(all, a)
		if normalized {
			// Matched against normalized text; the Hugging Face library also
			// keeps (and decodes) the normalized content.
			if t.nfc {
				a.content = norm.NFC.String(a.content)
			}
			normSet = append(normSet, a)
		} else {
			rawSet = append(rawSet, a)
		}
	}
	t.rawAdded = newAddedMatcher(rawSet)
	t.normAdded = newAddedMatcher(normSet)
	return all, nil
}

func (t *Tokenizer) loadPreTokenizer(l loader, raw json.RawMessage) error {
	const field = "pre_tokenizer"
	if isNull(raw) {
		return l.unsupported(field, "null is not supported (a byte-level BPE needs a ByteLevel pre-tokenizer)")
	}
	seenByteLevel := false
	if err := t.preTokenizerItem(l, raw, field, 0, &seenByteLevel); err != nil {
		return err
	}
	if !seenByteLevel {
		return l.unsupported(field, "has no ByteLevel pre-tokenizer (only byte-level BPE is supported)")
	}
	return nil
}

func (t *Tokenizer) preTokenizerItem(l loader, raw json.RawMessage, field string, depth int, seenByteLevel *bool) error {
	o, ok, err := l.object(raw, field)
	if err != nil {
		return err
	}
	if !ok {
		return l.invalid(field, "is null")
	}
	typ, err := l.typeName(o, field)
	if err != nil {
		return err
	}
	if *seenByteLevel && typ != "Sequence" {
		return l.unsupported(field, "comes after the ByteLevel pre-tokenizer (only supported as the last step)")
	}
	switch typ {
	case "Sequence":
		if depth >= maxNesting {
			return l.unsupported(field, "nests Sequences deeper than %d", maxNesting)
		}
		items, err := l.array(o["pretokenizers"], field+".pretokenizers")
		if err != nil {
			return err
		}
		for i, item := range items {
			if err := t.preTokenizerItem(l, item, fmt.Sprintf("%s.pretokenizers[%d]", field, i), depth+1, seenByteLevel); err != nil {
				return err
			}
		}
		return nil
	case "ByteLevel":
		*seenByteLevel = true
		if t.byteLevel.addPrefixSpace, err = l.boolean(o, "add_prefix_space", field+".add_prefix_space", true); err != nil {
			return err
		}
		useRegex, err := l.boolean(o, "use_regex", field+".use_regex", true)
		if err != nil {
			return err
		}
		if useRegex {
			re, err := compileSplit(gpt2Pattern)
			if err != nil {
				return fmt.Errorf("tokenizer: built-in GPT-2 pattern: %w", err)
			}
			t.byteLevel.split = re
		}
		return nil
	case "Split":
		return t.splitItem(l, o, field)
	case "Digits":
		individual, err := l.boolean(o, "individual_digits", field+".individual_digits", false)
		if err != nil {
			return err
		}
		pattern := `\p{N}+`
		if individual {
			pattern = `\p{N}`
		}
		re, err := compileSplit(pattern)
		if err != nil {
			return fmt.Errorf("tokenizer: built-in digits pattern: %w", err)
		}
		t.splits = append(t.splits, re)
		return nil
	}
	return l.unsupported(field+".type", "%q is not supported (only ByteLevel, Split, Digits or a Sequence of them)", typ)
}

func (t *Tokenizer) splitItem(l loader, o object, field string) error {
	behavior, _, err := l.str(o, "behavior", field+".behavior")
	if err != nil {
		return err
	}
	if behavior != "Isolated" {
		return l.unsupported(field+".behavior", "%q is not supported (only \"Isolated\")", behavior)
	}
	if inv, err := l.boolean(o, "invert", field+".invert", false); err != nil {
		return err
	} else if inv {
		return l.unsupported(field+".invert", "true is not supported")
	}
	p, ok, err := l.object(o["pattern"], field+".pattern")
	if err != nil {
		return err
	}
	if !ok {
		return l.invalid(field+".pattern", "is missing")
	}
	var pattern string
	if s, ok, err := l.str(p, "Regex", field+".pattern.Regex"); err != nil {
		return err
	} else if ok {
		pattern = s
	} else if s, ok, err := l.str(p, "String", field+".pattern.String"); err != nil {
		return err
	} else if ok {
		if s == "" {
			return l.invalid(field+".pattern.String", "is empty")
		}
		pattern = regexp2.Escape(s)
	} else {
		return l.invalid(field+".pattern", "has neither Regex nor String")
	}
	re, err := compileSplit(pattern)
	if err != nil {
		return l.invalid(field+".pattern.Regex", "%q does not compile: %v", pattern, err)
	}
	t.splits = append(t.splits, re)
	return nil
}

func (t *Tokenizer) loadPostProcessor(l loader, raw json.RawMessage, field string, depth int) error {
	o, ok, err := l.object(raw, field)
	if err != nil || !ok {
		return err
	}
	typ, err := l.typeName(o, field)
	if err != nil {
		return err
	}
	switch typ {
	case "ByteLevel":
		return nil // changes offsets only
	case "Sequence":
		if depth >= maxNesting {
			return l.unsupported(field, "nests Sequences deeper than %d", maxNesting)
		}
		items, err := l.array(o["processors"], field+".processors")
		if err != nil {
			return err
		}
		for i, item := range items {
			f := fmt.Sprintf("%s.processors[%d]", field, i)
			if isNull(item) {
				return l.invalid(f, "is null")
			}
			if err := t.loadPostProcessor(l, item, f, depth+1); err != nil {
				return err
			}
		}
		return nil
	case "TemplateProcessing":
		return t.template(l, o, field)
	}
	return l.unsupported(field+".type", "%q is not supported (only TemplateProcessing, ByteLevel, null or a Sequence of them)", typ)
}

// template reads a TemplateProcessing's single template and wraps the
// current prefix and suffix in it.
func (t *Tokenizer) template(l loader, o object, field string) error {
	var specials map[string]struct {
		IDs []int64 `json:"ids"`
	}
	if raw := o["special_tokens"]; !isNull(raw) {
		if err := json.Unmarshal(raw, &specials); err != nil {
			return l.invalid(field+".special_tokens", "is not an object of {id, ids, tokens}")
		}
	}
	items, err := l.array(o["single"], field+".single")
	if err != nil {
		return err
	}
	var pre, post []int
	seenA := false
	for i, item := range items {
		f := fmt.Sprintf("%s.single[%d]", field, i)
		var piece struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		}
		if err := json.Unmarshal(item, &piece); err != nil {
			return l.invalid(f, "is not a template piece")
		}
		switch {
		case piece.Sequence != nil:
			if piece.Sequence.ID != "A" {
				return l.unsupported(f+".Sequence.id", "%q is not supported in a single template (only \"A\")", piece.Sequence.ID)
			}
			if seenA {
				return l.invalid(f, "repeats Sequence A")
			}
			seenA = true
		case piece.SpecialToken != nil:
			sp, ok := specials[piece.SpecialToken.ID]
			if !ok {
				return l.invalid(f+".SpecialToken.id", "%q is not in %s.special_tokens", piece.SpecialToken.ID, field)
			}
			for _, id := range sp.IDs {
				if !checkID(id) {
					return l.invalid(field+".special_tokens", "%q has id %d, outside [0, %d)", piece.SpecialToken.ID, id, maxTokenID)
				}
				if seenA {
					post = append(post, int(id))
				} else {
					pre = append(pre, int(id))
				}
			}
		default:
			return l.invalid(f, "is neither SpecialToken nor Sequence")
		}
	}
	if !seenA {
		return l.invalid(field+".single", "has no Sequence A")
	}
	t.prefix = append(pre, t.prefix...)
	t.suffix = append(t.suffix, post...)
	return nil
}

func (t *Tokenizer) loadDecoder(l loader, raw json.RawMessage, field string, depth int) error {
	o, ok, err := l.object(raw, field)
	if err != nil {
		return err
	}
	if !ok {
		if depth == 0 {
			t.joinSpaces = true // no decoder: tokens joined with spaces
			return nil
		}
		return l.invalid(field, "is null")
	}
	typ, err := l.typeName(o, field)
	if err != nil {
		return err
	}
	switch typ {
	case "ByteLevel":
		return nil
	case "Sequence":
		items, err := l.array(o["decoders"], field+".decoders")
		if err != nil {
			return err
		}
		if len(items) != 1 || depth > 0 {
			return l.unsupported(field, "is supported only as a Sequence holding one ByteLevel decoder")
		}
		return t.loadDecoder(l, items[0], field+".decoders[0]", depth+1)
	}
	return l.unsupported(field+".type", "%q is not supported (only ByteLevel or null)", typ)
}

// buildTables fills the id-indexed tables from the vocab and added tokens.
func (t *Tokenizer) buildTables(l loader, added []*addedToken) error {
	maxID, count := -1, len(t.vocab)+len(added)
	for _, id := range t.vocab {
		maxID = max(maxID, id)
	}
	for _, a := range added {
		maxID = max(maxID, a.id)
	}
	if maxID+1 > 2*count+sparseSlack {
		return l.invalid("model.vocab", "ids are sparse: largest id %d for %d tokens", maxID, count)
	}
	n := maxID + 1
	t.idToken = make([]string, n)
	t.idKnown = make([]bool, n)
	t.idBytes = make([]string, n)
	t.idSpecial = make([]bool, n)
	set := func(id int, tok string) {
		t.idToken[id] = tok
		t.idKnown[id] = true
		if t.joinSpaces {
			t.idBytes[id] = tok
		} else {
			t.idBytes[id] = decodeToken(tok)
		}
	}
	for tok, id := range t.vocab {
		if t.idKnown[id] && t.idToken[id] < tok {
			continue // two tokens share an id: keep one deterministically
		}
		set(id, tok)
	}
	for _, a := range added { // added tokens take precedence, as in id_to_token
		set(a.id, a.content)
		t.idSpecial[a.id] = a.special
	}
	return nil
}

// specialToken reads bos_token and friends from tokenizer_config.json: a
// string, an AddedToken object with "content", or null.
func (l loader) specialToken(o object, key string) (string, bool, error) {
	raw, present := o[key]
	if !present || isNull(raw) {
		return "", false, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", false, l.invalid(key, "is neither a string nor an object with \"content\"")
	}
	return *obj.Content, true, nil
}

// loadSpecialIDs resolves BOS, EOS and PAD from tokenizer_config.json and
// config.json, and lets add_bos_token / add_eos_token build the template
// when tokenizer.json has no post-processor (as transformers does).
func (t *Tokenizer) loadSpecialIDs(src Source, postNull bool) error {
	var cfg object
	cl := loader{file: src.ConfigPath}
	if cl.file == "" {
		cl.file = TokenizerConfigFile
	}
	if src.Config != nil {
		if err := json.Unmarshal(src.Config, &cfg); err != nil || cfg == nil {
			return cl.invalid("", "is not a JSON object")
		}
	}
	resolve := func(key string) (int, error) {
		s, ok, err := cl.specialToken(cfg, key)
		if err != nil || !ok {
			return -1, err
		}
		id, found := t.TokenID(s)
		if !found {
			return -1, cl.invalid(key, "%q is neither an added token nor in the vocabulary", s)
		}
		return id, nil
	}
	var err error
	if t.bos, err = resolve("bos_token"); err != nil {
		return err
	}
	if t.eos, err = resolve("eos_token"); err != nil {
		return err
	}
	if t.pad, err = resolve("pad_token"); err != nil {
		return err
	}

	var mc object
	ml := loader{file: src.ModelConfigPath}
	if ml.file == "" {
		ml.file = ModelConfigFile
	}
	if src.ModelConfig != nil {
		if err := json.Unmarshal(src.ModelConfig, &mc); err != nil || mc == nil {
			return ml.invalid("", "is not a JSON object")
		}
	}
	ids := func(key string) ([]int, error) {
		raw, present := mc[key]
		if !present || isNull(raw) {
			return nil, nil
		}
		var one int64
		var many []int64
		if json.Unmarshal(raw, &one) == nil {
			many = []int64{one}
		} else if err := json.Unmarshal(raw, &many); err != nil {
			return nil, ml.invalid(key, "is neither an integer nor a list of integers")
		}
		var out []int
		for _, id := range many {
			if id < 0 {
				continue // some configs write -1 for "none"
			}
			if id >= int64(t.VocabSize()) {
				return nil, ml.invalid(key, "%d is outside the tokenizer's ids [0, %d)", id, t.VocabSize())
			}
			out = append(out, int(id))
		}
		return out, nil
	}
	bosIDs, err := ids("bos_token_id")
	if err != nil {
		return err
	}
	eosIDs, err := ids("eos_token_id")
	if err != nil {
		return err
	}
	padIDs, err := ids("pad_token_id")
	if err != nil {
		return err
	}
	if t.bos < 0 && len(bosIDs) > 0 {
		t.bos = bosIDs[0]
	}
	if t.eos < 0 && len(eosIDs) > 0 {
		t.eos = eosIDs[0]
	}
	if t.pad < 0 && len(padIDs) > 0 {
		t.pad = padIDs[0]
	}
	if t.eos >= 0 {
		t.eosIDs = append(t.eosIDs, t.eos)
	}
	for _, id := range eosIDs {
		if id != t.eos {
			t.eosIDs = append(t.eosIDs, id)
		}
	}

	if postNull {
		addBOS, err := cl.boolean(cfg, "add_bos_token", "add_bos_token", false)
		if err != nil {
			return err
		}
		addEOS, err := cl.boolean(cfg, "add_eos_token", "add_eos_token", false)
		if err != nil {
			return err
		}
		if addBOS {
			if t.bos < 0 {
				return cl.invalid("add_bos_token", "is true but no bos_token is set")
			}
			t.prefix = []int{t.bos}
		}
		if addEOS {
			if t.eos < 0 {
				return cl.invalid("add_eos_token", "is true but no eos_token is set")
			}
			t.suffix = []int{t.eos}
		}
	}
	if t.bos < 0 && len(t.prefix) > 0 {
		t.bos = t.prefix[0]
	}
	return nil
}
