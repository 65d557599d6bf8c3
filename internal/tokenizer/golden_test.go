package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// golden is testdata/golden.json, written by testdata/gen_golden.mjs with
// the Hugging Face tokenizers library (see testdata/README.md).
type golden struct {
	Reference string   `json:"reference"`
	Tokenizer string   `json:"tokenizer"`
	Strings   []string `json:"strings"`
	Variants  []struct {
		Name  string       `json:"name"`
		Patch variantPatch `json:"patch"`
	} `json:"variants"`
	Results map[string][]struct {
		IDs                []int  `json:"ids"`
		IDsSpecial         []int  `json:"ids_special"`
		Decoded            string `json:"decoded"`
		DecodedSkipSpecial string `json:"decoded_skip_special"`
	} `json:"results"`
}

type variantPatch struct {
	Set               map[string]json.RawMessage `json:"set"`
	MergesAsStrings   bool                       `json:"merges_as_strings"`
	VocabAdd          []string                   `json:"vocab_add"`
	AddedTokensUpdate []map[string]any           `json:"added_tokens_update"`
}

var (
	qwenOnce sync.Once
	qwenJSON []byte
	qwenErr  error
)

// qwen3JSON returns the decompressed testdata/qwen3/tokenizer.json.gz.
func qwen3JSON(tb testing.TB) []byte {
	tb.Helper()
	qwenOnce.Do(func() {
		f, err := os.Open(filepath.Join("testdata", "qwen3", "tokenizer.json.gz"))
		if err != nil {
			qwenErr = err
			return
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			qwenErr = err
			return
		}
		qwenJSON, qwenErr = io.ReadAll(zr)
	})
	if qwenErr != nil {
		tb.Fatalf("read qwen3 tokenizer: %v", qwenErr)
	}
	return qwenJSON
}

func loadGolden(t testing.TB) *golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("golden.json: %v", err)
	}
	if len(g.Strings) == 0 || len(g.Variants) == 0 {
		t.Fatal("golden.json holds no strings or no variants")
	}
	return &g
}

// applyVariant applies a patch the way gen_golden.mjs does.
func applyVariant(t *testing.T, base []byte, p variantPatch) []byte {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(base, &top); err != nil {
		t.Fatal(err)
	}
	var model map[string]json.RawMessage
	if err := json.Unmarshal(top["model"], &model); err != nil {
		t.Fatal(err)
	}
	for k, v := range p.Set {
		if name, ok := strings.CutPrefix(k, "model."); ok {
			model[name] = v
		} else {
			top[k] = v
		}
	}
	if len(p.VocabAdd) > 0 {
		var vocab map[string]int
		if err := json.Unmarshal(model["vocab"], &vocab); err != nil {
			t.Fatal(err)
		}
		n := len(vocab)
		for k, tok := range p.VocabAdd {
			vocab[tok] = n + k
		}
		model["vocab"] = mustJSON(t, vocab)
		var added []map[string]any
		if err := json.Unmarshal(top["added_tokens"], &added); err != nil {
			t.Fatal(err)
		}
		for _, a := range added {
			if id := a["id"].(float64); id >= float64(n) {
				a["id"] = id + float64(len(p.VocabAdd))
			}
		}
		top["added_tokens"] = mustJSON(t, added)
	}
	if p.MergesAsStrings {
		var pairs [][]string
		if err := json.Unmarshal(model["merges"], &pairs); err != nil {
			t.Fatalf("merges are not pairs: %v", err)
		}
		lines := make([]string, len(pairs))
		for i, pr := range pairs {
			lines[i] = strings.Join(pr, " ")
		}
		model["merges"] = mustJSON(t, lines)
	}
	if len(p.AddedTokensUpdate) > 0 {
		var added []map[string]any
		if err := json.Unmarshal(top["added_tokens"], &added); err != nil {
			t.Fatal(err)
		}
		for _, u := range p.AddedTokensUpdate {
			i := slices.IndexFunc(added, func(a map[string]any) bool { return a["content"] == u["content"] })
			if i < 0 {
				added = append(added, u)
				continue
			}
			for k, v := range u {
				added[i][k] = v
			}
		}
		top["added_tokens"] = mustJSON(t, added)
	}
	top["model"] = mustJSON(t, model)
	return mustJSON(t, top)
}

// lossyUTF8 replaces invalid UTF-8 the way Rust's String::from_utf8_lossy
// (used by the Hugging Face decoder) does: one U+FFFD for each maximal
// prefix of a valid sequence. Decode itself keeps the raw bytes.
func lossyUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || size > 1 {
			b.WriteString(s[i : i+size])
			i += size
			continue
		}
		b.WriteRune(utf8.RuneError)
		i += maximalSubpart(s[i:])
	}
	return b.String()
}

// maximalSubpart returns the length of the longest prefix of s that starts
// a valid UTF-8 sequence (at least 1): the bytes one U+FFFD stands for.
func maximalSubpart(s string) int {
	c := s[0]
	var n int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		n = 2
	case c == 0xE0:
		n, lo = 3, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		n = 3
	case c == 0xED:
		n, hi = 3, 0x9F
	case c == 0xF0:
		n, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		n = 4
	case c == 0xF4:
		n, hi = 4, 0x8F
	default:
		return 1
	}
	i := 1
	for ; i < n && i < len(s); i++ {
		if s[i] < lo || s[i] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return i
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoldenReference checks every string of golden.json on every variant:
// ids with and without special tokens, and both decodes, must equal what the
// Hugging Face library produced.
func TestGoldenReference(t *testing.T) {
	g := loadGolden(t)
	base := qwen3JSON(t)
	for _, v := range g.Variants {
		t.Run(v.Name, func(t *testing.T) {
			want := g.Results[v.Name]
			if len(want) != len(g.Strings) {
				t.Fatalf("golden.json: %d results for %d strings", len(want), len(g.Strings))
			}
			data := base
			if v.Name != "qwen3" {
				data = applyVariant(t, base, v.Patch)
			}
			tok, err := New(Source{Path: v.Name + "/tokenizer.json", Data: data})
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range g.Strings {
				w := want[i]
				if got := tok.Encode(s, false); !slices.Equal(got, w.IDs) {
					t.Errorf("Encode(%q, false)\n got %v\nwant %v", s, got, w.IDs)
				}
				if got := tok.Encode(s, true); !slices.Equal(got, w.IDsSpecial) {
					t.Errorf("Encode(%q, true)\n got %v\nwant %v", s, got, w.IDsSpecial)
				}
				if got := lossyUTF8(tok.Decode(w.IDs, false)); got != w.Decoded {
					t.Errorf("Decode(ids of %q, false) = %q, want %q", s, got, w.Decoded)
				}
				if got := lossyUTF8(tok.Decode(w.IDsSpecial, true)); got != w.DecodedSkipSpecial {
					t.Errorf("Decode(ids of %q, true) = %q, want %q", s, got, w.DecodedSkipSpecial)
				}
			}
		})
	}
}

// TestQwen3Files loads the Qwen3 tokenizer.json with the tokenizer_config.json
// shipped beside it and checks the special ids it names.
func TestQwen3Files(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, TokenizerFile), qwen3JSON(t), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join("testdata", "qwen3", TokenizerConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, TokenizerConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// tokenizer_config.json: bos_token null, eos_token <|im_end|>, pad_token <|endoftext|>.
	if id, ok := tok.BOS(); ok {
		t.Errorf("BOS() = %d, want none", id)
	}
	if id, ok := tok.EOS(); !ok || id != 151645 {
		t.Errorf("EOS() = %d, %v, want 151645", id, ok)
	}
	if id, ok := tok.PAD(); !ok || id != 151643 {
		t.Errorf("PAD() = %d, %v, want 151643", id, ok)
	}
	if n := tok.VocabSize(); n != 151669 {
		t.Errorf("VocabSize() = %d, want 151669 (151643 BPE tokens + 26 added)", n)
	}
	if got := tok.Encode("hi", true); !slices.Equal(got, tok.Encode("hi", false)) {
		t.Errorf("Encode with addSpecial added %v: Qwen3 adds no BOS", got)
	}
	if !tok.IsSpecial(151644) || tok.IsSpecial(151667) {
		t.Error("IsSpecial: <|im_start|> must be special and <think> must not")
	}
	if id, ok := tok.TokenID("Ġthe"); !ok || id != 279 {
		t.Errorf(`TokenID("Ġthe") = %d, %v, want 279`, id, ok)
	}
	if s, ok := tok.Token(151644); !ok || s != "<|im_start|>" {
		t.Errorf("Token(151644) = %q, %v", s, ok)
	}
	if !bytes.Contains(cfg, []byte(`"eos_token": "<|im_end|>"`)) {
		t.Fatal("testdata tokenizer_config.json is not the expected file")
	}
}
