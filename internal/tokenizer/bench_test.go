package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// benchText returns about 100 KB of mixed text: the golden strings in a
// fixed pseudo-random order, with the index as a number between them so
// that not every word repeats.
func benchText(tb testing.TB) string {
	tb.Helper()
	g := loadGolden(tb)
	rng := rand.New(rand.NewPCG(7, 8))
	var b strings.Builder
	for i := 0; b.Len() < 100_000; i++ {
		b.WriteString(g.Strings[rng.IntN(len(g.Strings))])
		b.WriteString(" ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(" ")
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(strings.Repeat("9", 1+i%9))
		b.WriteString("\n")
	}
	return b.String()
}

// benchmarkEncode measures Encode on benchText; with cold, the word cache
// is emptied before every call (outside the timer).
func benchmarkEncode(b *testing.B, tok *Tokenizer, cold bool) {
	text := benchText(b)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if cold {
			b.StopTimer()
			tok.cache = make(map[string][]int)
			b.StartTimer()
		}
		n = len(tok.Encode(text, true))
	}
	b.ReportMetric(float64(n), "tokens")
}

// BenchmarkEncodeQwen3: the real Qwen3 tokenizer (NFC, split regex, BPE).
func BenchmarkEncodeQwen3(b *testing.B) {
	tok, err := New(Source{Data: qwen3JSON(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) { benchmarkEncode(b, tok, false) })
	b.Run("cold", func(b *testing.B) { benchmarkEncode(b, tok, true) })
}

// BenchmarkEncodeFixture: the tiny-skills byte-level tokenizer.
func BenchmarkEncodeFixture(b *testing.B) {
	benchmarkEncode(b, loadFixture(b), false)
}

// BenchmarkLoadQwen3: parsing the 11 MB Qwen3 tokenizer.json.
func BenchmarkLoadQwen3(b *testing.B) {
	data := qwen3JSON(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := New(Source{Data: data}); err != nil {
			b.Fatal(err)
		}
	}
}
