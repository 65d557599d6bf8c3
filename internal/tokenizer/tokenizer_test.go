package tokenizer

import (
	"bufio"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

const fixtureDir = "../../testdata/tiny-skills/model"

func loadFixture(tb testing.TB) *Tokenizer {
	tb.Helper()
	tok, err := LoadDir(fixtureDir)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// bytesOf returns the fixture's ids for s: one id per byte, equal to it.
func bytesOf(s string) []int {
	ids := make([]int, len(s))
	for i := 0; i < len(s); i++ {
		ids[i] = int(s[i])
	}
	return ids
}

func TestFixtureEncode(t *testing.T) {
	tok := loadFixture(t)
	tests := []struct {
		text       string
		addSpecial bool
		want       []int
	}{
		{"<<abc=", true, []int{256, 60, 60, 97, 98, 99, 61}},
		{"<<abc=", false, []int{60, 60, 97, 98, 99, 61}},
		{"", true, []int{256}},
		{"", false, []int{}},
		{"skill:rev=hello", true, append([]int{256}, bytesOf("skill:rev=hello")...)},
		{"  two  spaces\n\n", false, bytesOf("  two  spaces\n\n")},
		{"é€😀", false, []int{0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80}},
		{"<s>x</s><pad>", false, []int{256, 120, 257, 258}},
		{"a<s>b", true, []int{256, 97, 256, 98}},
		{"<s<s>>", false, []int{60, 115, 256, 62}},
	}
	for _, tt := range tests {
		if got := tok.Encode(tt.text, tt.addSpecial); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q, %v) = %v, want %v", tt.text, tt.addSpecial, got, tt.want)
		}
	}
}

func TestFixtureEveryByte(t *testing.T) {
	tok := loadFixture(t)
	all := make([]byte, 256)
	for b := 0; b < 256; b++ {
		all[b] = byte(b)
		if got := tok.Encode(string([]byte{byte(b)}), false); !slices.Equal(got, []int{b}) {
			t.Errorf("Encode(byte %#x) = %v, want [%d]", b, got, b)
		}
		if got := tok.Decode([]int{b}, false); got != string([]byte{byte(b)}) {
			t.Errorf("Decode([%d]) = %q, want byte %#x", b, got, b)
		}
	}
	if got := tok.Encode(string(all), false); !slices.Equal(got, bytesOf(string(all))) {
		t.Errorf("Encode(all 256 bytes) = %v", got)
	}
}

func TestFixtureSpecialIDs(t *testing.T) {
	tok := loadFixture(t)
	for _, c := range []struct {
		name string
		get  func() (int, bool)
		want int
	}{{"BOS", tok.BOS, 256}, {"EOS", tok.EOS, 257}, {"PAD", tok.PAD, 258}} {
		if id, ok := c.get(); !ok || id != c.want {
			t.Errorf("%s() = %d, %v, want %d", c.name, id, ok, c.want)
		}
	}
	if n := tok.VocabSize(); n != 259 {
		t.Errorf("VocabSize() = %d, want 259", n)
	}
	if got := tok.EOSIDs(); !slices.Equal(got, []int{257}) {
		t.Errorf("EOSIDs() = %v, want [257]", got)
	}
	if got := tok.SpecialPrefix(); !slices.Equal(got, []int{256}) {
		t.Errorf("SpecialPrefix() = %v, want [256]", got)
	}
	if got := tok.SpecialSuffix(); len(got) != 0 {
		t.Errorf("SpecialSuffix() = %v, want none", got)
	}
	for id := 0; id < 259; id++ {
		if tok.IsSpecial(id) != (id >= 256) {
			t.Errorf("IsSpecial(%d) = %v", id, tok.IsSpecial(id))
		}
	}
}

func TestFixtureDecode(t *testing.T) {
	tok := loadFixture(t)
	tests := []struct {
		ids         []int
		skipSpecial bool
		want        string
	}{
		{[]int{256, 60, 60, 97, 61, 257}, false, "<s><<a=</s>"},
		{[]int{256, 60, 60, 97, 61, 257, 258, 258}, true, "<<a="},
		{[]int{97, -1, 259, 1 << 30, 98}, false, "ab"}, // unknown ids are skipped
		{nil, false, ""},
	}
	for _, tt := range tests {
		if got := tok.Decode(tt.ids, tt.skipSpecial); got != tt.want {
			t.Errorf("Decode(%v, %v) = %q, want %q", tt.ids, tt.skipSpecial, got, tt.want)
		}
	}
}

// TestFixtureRoundTrip: arbitrary UTF-8 and invalid bytes come back as they
// were, one id per byte.
func TestFixtureRoundTrip(t *testing.T) {
	tok := loadFixture(t)
	texts := []string{
		"plain ascii", "Grüße, 世界! 🤗👨‍👩‍👧", "e\u0301 vs é", "\t\r\n \u00a0\u3000",
		"\xff\xfe\xfd", "a\x80b", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x00\x01\x7f",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 50; n++ {
		b := make([]byte, rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		texts = append(texts, string(b))
	}
	for _, s := range texts {
		ids := tok.Encode(s, false)
		if !slices.Equal(ids, bytesOf(s)) {
			t.Errorf("Encode(%q) = %v, want one id per byte", s, ids)
		}
		if got := tok.Decode(ids, false); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
		if got := tok.Decode(tok.Encode(s, true), true); got != s {
			t.Errorf("Decode(Encode(%q, true), true) = %q", s, got)
		}
	}
}

// TestFixtureCalibrationTokens checks the token lists of
// tiny-skills/merge4/iteris_calib.json, written by the fixture's authors
// with Hugging Face tools: each is BOS + prompt + completion + EOS, and the
// prompt part is what Encode gives for one of the task's calibration prompts.
func TestFixtureCalibrationTokens(t *testing.T) {
	tok := loadFixture(t)
	data, err := os.ReadFile(filepath.Join(fixtureDir, "..", "merge4", "iteris_calib.json"))
	if err != nil {
		t.Fatal(err)
	}
	var calib struct {
		CalibTokens map[string][][]int `json:"calib_tokens"`
	}
	if err := json.Unmarshal(data, &calib); err != nil {
		t.Fatal(err)
	}
	if len(calib.CalibTokens) != 4 {
		t.Fatalf("calib_tokens has %d tasks, want 4", len(calib.CalibTokens))
	}
	for task, seqs := range calib.CalibTokens {
		prompts := readPrompts(t, filepath.Join(fixtureDir, "..", "data", task, "calib.jsonl"))
		if len(seqs) != 16 {
			t.Errorf("%s: %d sequences, want 16", task, len(seqs))
		}
		for i, seq := range seqs {
			text := tok.Decode(seq, false)
			if got := tok.Encode(text, false); !slices.Equal(got, seq) {
				t.Errorf("%s[%d]: Encode(Decode(seq)) = %v, want %v", task, i, got, seq)
			}
			body := tok.Decode(seq, true)
			prompt, _, ok := strings.Cut(body, "=")
			prompt += "="
			if !ok || !prompts[prompt] {
				t.Errorf("%s[%d]: %q does not start with a calibration prompt", task, i, body)
				continue
			}
			if got := tok.Encode(prompt, true); !slices.Equal(got, seq[:len(got)]) {
				t.Errorf("%s[%d]: Encode(%q, true) = %v, want prefix of %v", task, i, prompt, got, seq)
			}
			if seq[len(seq)-1] != 257 {
				t.Errorf("%s[%d]: does not end with EOS 257: %v", task, i, seq)
			}
		}
	}
}

func readPrompts(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prompts := make(map[string]bool)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var item struct {
			Prompt string `json:"prompt"`
		}
		if err := json.Unmarshal(sc.Bytes(), &item); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		prompts[item.Prompt] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return prompts
}

// fixtureJSON returns the fixture's tokenizer.json decoded into generic
// values, for tests that change it.
func fixtureJSON(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, TokenizerFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func modelOf(m map[string]any) map[string]any { return m["model"].(map[string]any) }

// withMerges returns the fixture with extra vocab entries (ids 256 on; the
// added tokens move up after them) and the given merges.
func withMerges(t *testing.T, extra []string, merges any, ignoreMerges bool) []byte {
	t.Helper()
	m := fixtureJSON(t)
	vocab := modelOf(m)["vocab"].(map[string]any)
	for i, tok := range extra {
		vocab[tok] = 256 + i
	}
	for _, a := range m["added_tokens"].([]any) {
		a := a.(map[string]any)
		a["id"] = a["id"].(float64) + float64(len(extra))
	}
	m["post_processor"] = nil
	modelOf(m)["merges"] = merges
	modelOf(m)["ignore_merges"] = ignoreMerges
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestMerges checks rank order, both merge spellings and ignore_merges on
// a small vocabulary: a=97 b=98 c=99 d=100, then the extra tokens from 256.
func TestMerges(t *testing.T) {
	extra := []string{"ab", "bc", "cd", "abcd", "abc"} // 256 257 258 259 260
	tests := []struct {
		name   string
		merges any
		ignore bool
		text   string
		want   []int
	}{
		{"strings, lowest rank first", []string{"a b", "c d"}, false, "abcd", []int{256, 258}},
		{"pairs, lowest rank first", [][]string{{"a", "b"}, {"c", "d"}}, false, "abcd", []int{256, 258}},
		{"rank decides", []string{"b c", "a b"}, false, "abcd", []int{97, 257, 100}},
		{"rank decides reversed", []string{"a b", "b c"}, false, "abcd", []int{256, 99, 100}},
		{"chained merge", []string{"a b", "ab c"}, false, "abcd", []int{260, 100}},
		{"leftmost among equals", []string{"a b"}, false, "ababab", []int{256, 256, 256}},
		{"ignore_merges emits a vocab word whole", []string{"a b", "c d"}, true, "abcd", []int{259}},
		{"ignore_merges only for whole pre-tokens", []string{"a b", "c d"}, true, "abcdd", []int{256, 258, 100}},
		{"no ignore_merges: unreachable word", []string{"a b", "c d"}, false, "abcd", []int{256, 258}},
		{"merges within pre-tokens only", []string{"a b", "c d"}, false, "ab cd", []int{256, 32, 258}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := New(Source{Data: withMerges(t, extra, tt.merges, tt.ignore), Config: []byte(`{"eos_token": "</s>"}`)})
			if err != nil {
				t.Fatal(err)
			}
			got := tok.Encode(tt.text, false)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Encode(%q) = %v, want %v", tt.text, got, tt.want)
			}
			if d := tok.Decode(got, false); d != tt.text {
				t.Errorf("Decode = %q, want %q", d, tt.text)
			}
			// Second call: the word cache gives the same ids.
			if again := tok.Encode(tt.text, false); !slices.Equal(again, got) {
				t.Errorf("second Encode(%q) = %v, first %v", tt.text, again, got)
			}
			if id, ok := tok.EOS(); !ok || id != 262 {
				t.Errorf("EOS() = %d, %v, want 262 (</s> after 5 extra tokens)", id, ok)
			}
		})
	}
}

// TestConfigFallbacks: with post_processor null, tokenizer_config.json's
// add_bos_token / add_eos_token build the template; config.json supplies
// ids tokenizer_config.json does not name.
func TestConfigFallbacks(t *testing.T) {
	m := fixtureJSON(t)
	m["post_processor"] = nil
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		config        string
		modelConfig   string
		want          []int
		bos, eos, pad int
		eosIDs        []int
	}{
		{"no configs", "", "", []int{97}, -1, -1, -1, nil},
		{"add_bos_token", `{"bos_token": "<s>", "add_bos_token": true}`, "", []int{256, 97}, 256, -1, -1, nil},
		{"add both, object tokens", `{"bos_token": {"content": "<s>"}, "eos_token": {"content": "</s>"}, "add_bos_token": true, "add_eos_token": true}`, "", []int{256, 97, 257}, 256, 257, -1, []int{257}},
		{"config.json ids", "", `{"bos_token_id": 256, "eos_token_id": [257, 258], "pad_token_id": null}`, []int{97}, 256, 257, -1, []int{257, 258}},
		{"tokenizer_config wins", `{"eos_token": "<pad>", "pad_token": "</s>"}`, `{"eos_token_id": 257, "pad_token_id": 258}`, []int{97}, -1, 258, 257, []int{258, 257}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Source{Data: data}
			if tt.config != "" {
				src.Config = []byte(tt.config)
			}
			if tt.modelConfig != "" {
				src.ModelConfig = []byte(tt.modelConfig)
			}
			tok, err := New(src)
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Encode("a", true); !slices.Equal(got, tt.want) {
				t.Errorf("Encode(a, true) = %v, want %v", got, tt.want)
			}
			for _, c := range []struct {
				name string
				get  func() (int, bool)
				want int
			}{{"BOS", tok.BOS, tt.bos}, {"EOS", tok.EOS, tt.eos}, {"PAD", tok.PAD, tt.pad}} {
				id, ok := c.get()
				if !ok {
					id = -1
				}
				if id != c.want {
					t.Errorf("%s() = %d, want %d", c.name, id, c.want)
				}
			}
			if got := tok.EOSIDs(); !slices.Equal(got, tt.eosIDs) {
				t.Errorf("EOSIDs() = %v, want %v", got, tt.eosIDs)
			}
		})
	}
}

// TestRefused: everything outside the supported set fails to load with an
// error naming the file and the JSON field.
func TestRefused(t *testing.T) {
	tests := []struct {
		name     string
		change   func(m map[string]any)
		config   string
		mconfig  string
		sentinel error
		msg      string
	}{
		{"Unigram", func(m map[string]any) { modelOf(m)["type"] = "Unigram" }, "", "", ErrUnsupported,
			`tokenizer.json: model.type "Unigram" is not supported`},
		{"WordPiece", func(m map[string]any) { modelOf(m)["type"] = "WordPiece" }, "", "", ErrUnsupported,
			`tokenizer.json: model.type "WordPiece" is not supported`},
		{"byte fallback", func(m map[string]any) { modelOf(m)["byte_fallback"] = true }, "", "", ErrUnsupported,
			`tokenizer.json: model.byte_fallback true is not supported`},
		{"dropout", func(m map[string]any) { modelOf(m)["dropout"] = 0.1 }, "", "", ErrUnsupported,
			`tokenizer.json: model.dropout 0.1 is not supported`},
		{"subword prefix", func(m map[string]any) { modelOf(m)["continuing_subword_prefix"] = "##" }, "", "", ErrUnsupported,
			`tokenizer.json: model.continuing_subword_prefix "##" is not supported`},
		{"NFKC", func(m map[string]any) { m["normalizer"] = map[string]any{"type": "NFKC"} }, "", "", ErrUnsupported,
			`tokenizer.json: normalizer.type "NFKC" is not supported`},
		{"Lowercase in sequence", func(m map[string]any) {
			m["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}, map[string]any{"type": "Lowercase"}}}
		}, "", "", ErrUnsupported, `tokenizer.json: normalizer.normalizers[1].type "Lowercase" is not supported`},
		{"Metaspace", func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "Metaspace"} }, "", "", ErrUnsupported,
			`tokenizer.json: pre_tokenizer.type "Metaspace" is not supported`},
		{"no pre-tokenizer", func(m map[string]any) { m["pre_tokenizer"] = nil }, "", "", ErrUnsupported,
			`tokenizer.json: pre_tokenizer null is not supported`},
		{"split without byte level", func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\s+`}, "behavior": "Isolated"}
		}, "", "", ErrUnsupported, `tokenizer.json: pre_tokenizer has no ByteLevel pre-tokenizer`},
		{"split behavior", func(m map[string]any) {
			m["pre_tokenizer"] = seq(map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\s+`}, "behavior": "Removed"}, byteLevelPT())
		}, "", "", ErrUnsupported, `tokenizer.json: pre_tokenizer.pretokenizers[0].behavior "Removed" is not supported`},
		{"split invert", func(m map[string]any) {
			m["pre_tokenizer"] = seq(map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\s+`}, "behavior": "Isolated", "invert": true}, byteLevelPT())
		}, "", "", ErrUnsupported, `tokenizer.json: pre_tokenizer.pretokenizers[0].invert true is not supported`},
		{"split after byte level", func(m map[string]any) {
			m["pre_tokenizer"] = seq(byteLevelPT(), map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\s+`}, "behavior": "Isolated"})
		}, "", "", ErrUnsupported, `tokenizer.json: pre_tokenizer.pretokenizers[1] comes after the ByteLevel pre-tokenizer`},
		{"bad regex", func(m map[string]any) {
			m["pre_tokenizer"] = seq(map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `(`}, "behavior": "Isolated"}, byteLevelPT())
		}, "", "", ErrInvalid, `tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex "(" does not compile`},
		{"Roberta post-processor", func(m map[string]any) { m["post_processor"] = map[string]any{"type": "RobertaProcessing"} }, "", "", ErrUnsupported,
			`tokenizer.json: post_processor.type "RobertaProcessing" is not supported`},
		{"template with B", func(m map[string]any) {
			m["post_processor"].(map[string]any)["single"] = []any{map[string]any{"Sequence": map[string]any{"id": "B"}}}
		}, "", "", ErrUnsupported, `tokenizer.json: post_processor.single[0].Sequence.id "B" is not supported`},
		{"template unknown special", func(m map[string]any) {
			m["post_processor"].(map[string]any)["single"] = []any{map[string]any{"SpecialToken": map[string]any{"id": "[CLS]"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}}
		}, "", "", ErrInvalid, `tokenizer.json: post_processor.single[0].SpecialToken.id "[CLS]" is not in post_processor.special_tokens`},
		{"WordPiece decoder", func(m map[string]any) { m["decoder"] = map[string]any{"type": "WordPiece"} }, "", "", ErrUnsupported,
			`tokenizer.json: decoder.type "WordPiece" is not supported`},
		{"merge not two tokens", func(m map[string]any) { modelOf(m)["merges"] = []any{"ab"} }, "", "", ErrInvalid,
			`tokenizer.json: model.merges[0] "ab" is not two tokens separated by a space`},
		{"merge token missing", func(m map[string]any) { modelOf(m)["merges"] = []any{[]any{"a", "b"}} }, "", "", ErrInvalid,
			`tokenizer.json: model.merges[0] merged token "ab" is not in model.vocab`},
		{"negative id", func(m map[string]any) { modelOf(m)["vocab"].(map[string]any)["a"] = -1 }, "", "", ErrInvalid,
			`tokenizer.json: model.vocab token "a" has id -1`},
		{"added id out of order", func(m map[string]any) { m["added_tokens"].([]any)[0].(map[string]any)["id"] = 300 }, "", "", ErrInvalid,
			`tokenizer.json: added_tokens[0].id is 300 but the Hugging Face library assigns "<s>" id 256`},
		{"no model", func(m map[string]any) { delete(m, "model") }, "", "", ErrInvalid, `tokenizer.json: model is missing`},
		{"model not an object", func(m map[string]any) { m["model"] = "BPE" }, "", "", ErrInvalid, `tokenizer.json: model has the wrong JSON type`},
		{"unknown bos_token", nil, `{"bos_token": "<nope>"}`, "", ErrInvalid,
			`tokenizer_config.json: bos_token "<nope>" is neither an added token nor in the vocabulary`},
		{"eos id out of range", nil, "", `{"eos_token_id": 99999}`, ErrInvalid,
			`config.json: eos_token_id 99999 is outside the tokenizer's ids [0, 259)`},
		{"add_bos_token without bos", func(m map[string]any) { m["post_processor"] = nil }, `{"add_bos_token": true}`, "", ErrInvalid,
			`tokenizer_config.json: add_bos_token is true but no bos_token is set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := fixtureJSON(t)
			if tt.change != nil {
				tt.change(m)
			}
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, TokenizerFile), data)
			if tt.config != "" {
				writeFile(t, filepath.Join(dir, TokenizerConfigFile), []byte(tt.config))
			}
			if tt.mconfig != "" {
				writeFile(t, filepath.Join(dir, ModelConfigFile), []byte(tt.mconfig))
			}
			_, err = LoadDir(dir)
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("error %q does not wrap %v", err, tt.sentinel)
			}
			if !strings.Contains(err.Error(), dir+string(filepath.Separator)+tt.msg) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.msg)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %q is not a *FieldError", err)
			}
		})
	}
}

func TestNotJSON(t *testing.T) {
	_, err := New(Source{Path: "x/tokenizer.json", Data: []byte("{")})
	if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "x/tokenizer.json: is not valid JSON") {
		t.Errorf("New(\"{\") error = %v", err)
	}
	if _, err := LoadDir(t.TempDir()); err == nil {
		t.Error("LoadDir of an empty directory succeeded")
	}
}

func seq(items ...any) map[string]any {
	return map[string]any{"type": "Sequence", "pretokenizers": items}
}

func byteLevelPT() map[string]any {
	return map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentEncode runs Encode from several goroutines (for -race).
func TestConcurrentEncode(t *testing.T) {
	tok, err := New(Source{Data: qwen3JSON(t)})
	if err != nil {
		t.Fatal(err)
	}
	text := "Concurrent encoders share one word cache: 12345, 你好, <|im_start|>ok"
	want := tok.Encode(text, true)
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if got := tok.Encode(text, true); !slices.Equal(got, want) {
					errs <- "concurrent Encode differs"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
