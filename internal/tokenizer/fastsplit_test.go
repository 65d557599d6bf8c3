package tokenizer

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// splitBoth returns the pieces of s from the scanner and from regexp2.
func splitBoth(t testing.TB, pattern, s string) (fast, slow []string) {
	t.Helper()
	sp, err := compileSplit(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if sp.scan == nil {
		t.Fatalf("no scanner for %q", pattern)
	}
	splitIsolated(sp, s, func(p string) { fast = append(fast, p) })
	splitRegexp(sp.re, s, func(p string) { slow = append(slow, p) })
	return fast, slow
}

var knownPatterns = []string{gpt2Pattern, llama3Pattern, qwen2Pattern}

// randomText draws from the characters the split patterns treat apart.
func randomText(rng *rand.Rand, n int) string {
	parts := []string{" ", " ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u3000", "'", "'s", "'S", "'re", "'LL", "'ve", "'D", "'x",
		"a", "Z", "é", "ß", "ſ", "K", "İ", "中", "ǅ", "0", "7", "123456", "½", "٣", "Ⅻ", ".", ",", "!", "(", "—", "🤗", "\u0301",
		"\u200b", "\x00", "\x7f", "\xff", "\xe2\x82", "hello", "World", "don't", "\v", "\f", "\u0085", "\u2028"}
	var b strings.Builder
	for range n {
		b.WriteString(parts[rng.IntN(len(parts))])
	}
	return b.String()
}

// TestFastSplitMatchesRegexp2: the scanners split exactly as regexp2 does
// on the same patterns.
func TestFastSplitMatchesRegexp2(t *testing.T) {
	texts := []string{"", "a", " ", "  x", "x  ", "  \n\n  y", "it's 'S 'll", "12345678 1234", "\r\n\r\n", " \n \n ", "(hello) [world]\n\n"}
	g := loadGolden(t)
	texts = append(texts, g.Strings...)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		texts = append(texts, randomText(rng, 1+rng.IntN(12)))
	}
	for _, pattern := range knownPatterns {
		for _, s := range texts {
			fast, slow := splitBoth(t, pattern, s)
			if !slices.Equal(fast, slow) {
				t.Fatalf("pattern %q on %q:\nscanner %q\nregexp2 %q", pattern, s, fast, slow)
			}
		}
	}
}

// TestShippedPatternsUseScanners: the Qwen3 file and the Llama 3 / GPT-2
// shaped variants get the scanners, not regexp2.
func TestShippedPatternsUseScanners(t *testing.T) {
	tok, err := New(Source{Data: qwen3JSON(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.splits) != 1 || tok.splits[0].scan == nil {
		t.Error("Qwen3's split pattern does not use the scanner")
	}
	fix := loadFixture(t)
	if fix.byteLevel.split == nil || fix.byteLevel.split.scan == nil {
		t.Error("the ByteLevel GPT-2 pattern does not use the scanner")
	}
}

// FuzzFastSplit: scanners and regexp2 agree on any input.
func FuzzFastSplit(f *testing.F) {
	for _, s := range []string{"Hello world's 123", "  \n\n\t x", "\xff'S\u00a0中文 12345", "a\r\n\r\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, pattern := range knownPatterns {
			fast, slow := splitBoth(t, pattern, s)
			if !slices.Equal(fast, slow) {
				t.Fatalf("pattern %q on %q:\nscanner %q\nregexp2 %q", pattern, s, fast, slow)
			}
		}
	})
}
