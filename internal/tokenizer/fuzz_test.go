package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzLoad: no tokenizer.json / tokenizer_config.json content panics the
// loader, and whatever loads can encode and decode.
func FuzzLoad(f *testing.F) {
	fixture, err := os.ReadFile(filepath.Join(fixtureDir, TokenizerFile))
	if err != nil {
		f.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(fixtureDir, TokenizerConfigFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fixture, config)
	f.Add(fixture, []byte(`{"bos_token": {"content": "<s>"}, "add_bos_token": true}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel"}}`), []byte(nil))
	f.Add([]byte(`{"model": {"vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]], "ignore_merges": true}, "normalizer": {"type": "NFC"},
		"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)|\\p{N}{1,3}"}, "behavior": "Isolated"},
		{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "use_regex": false}]},
		"added_tokens": [{"id": 3, "content": "<x>", "special": true, "lstrip": true}],
		"post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<x>": {"ids": [3]}}}]},
		"decoder": {"type": "Sequence", "decoders": [{"type": "ByteLevel"}]}}`), []byte(`{"eos_token": "<x>"}`))
	f.Add([]byte(`{"model": {"type": "Unigram"}}`), []byte(nil))
	f.Add([]byte(`null`), []byte(`[]`))
	f.Fuzz(func(t *testing.T, data, cfg []byte) {
		tok, err := New(Source{Data: data, Config: cfg})
		if err != nil {
			return
		}
		ids := tok.Encode("Hello <s> wörld 123  \n\t<x>", true)
		_ = tok.Decode(ids, false)
		_ = tok.Decode(ids, true)
		_ = tok.Decode([]int{-1, 0, 1, tok.VocabSize(), 1 << 40}, false)
	})
}

// FuzzEncode on the fixture: Decode(Encode(s)) == s for every s, and
// without added tokens in s the ids are its bytes.
func FuzzEncode(f *testing.F) {
	tok := loadFixture(f)
	for _, s := range []string{"", "<<abc=", "a<s>b</s><pad>", "héllo wörld 🤗", "  \n\n\t x", "\xff\xfe", "it's 12345678"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s, false)
		if got := tok.Decode(ids, false); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		if !strings.Contains(s, "<s>") && !strings.Contains(s, "</s>") && !strings.Contains(s, "<pad>") {
			if len(ids) != len(s) {
				t.Fatalf("Encode(%q) gave %d ids for %d bytes", s, len(ids), len(s))
			}
			for i, id := range ids {
				if id != int(s[i]) {
					t.Fatalf("Encode(%q)[%d] = %d, want %d", s, i, id, s[i])
				}
			}
		}
		withBOS := tok.Encode(s, true)
		if len(withBOS) != len(ids)+1 || withBOS[0] != 256 {
			t.Fatalf("Encode(%q, true) = %v, want BOS then %v", s, withBOS, ids)
		}
	})
}

var (
	fuzzQwenOnce sync.Once
	fuzzQwen     *Tokenizer
	fuzzQwenErr  error
)

// FuzzEncodeQwen3 on the real Qwen3 tokenizer (NFC, merges): every id is
// valid and, for valid UTF-8, Decode(Encode(s)) is s with the text between
// added tokens in NFC.
func FuzzEncodeQwen3(f *testing.F) {
	for _, s := range []string{"", "Hello, world!", "e\u0301 café", "  x\n\n  y", "12345678", "<|im_start|>hi<|im_end|>", "你好🤗", "<|im_end|>\u0338"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fuzzQwenOnce.Do(func() { fuzzQwen, fuzzQwenErr = New(Source{Data: qwen3JSON(t)}) })
		if fuzzQwenErr != nil {
			t.Fatal(fuzzQwenErr)
		}
		ids := fuzzQwen.Encode(s, false)
		for _, id := range ids {
			if _, ok := fuzzQwen.Token(id); !ok {
				t.Fatalf("Encode(%q) gave unknown id %d", s, id)
			}
		}
		if !utf8.ValidString(s) {
			return
		}
		// NFC applies to the text between added tokens, each stretch alone
		// (so "<|im_end|>" + U+0338 does not compose into "≯").
		var want strings.Builder
		fuzzQwen.rawAdded.split(s,
			func(text string) { want.WriteString(norm.NFC.String(text)) },
			func(id int) { want.WriteString(fuzzQwen.idToken[id]) })
		if got := fuzzQwen.Decode(ids, false); got != want.String() {
			t.Fatalf("Decode(Encode(%q)) = %q, want %q", s, got, want.String())
		}
	})
}
