package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The split patterns that GPT-2, Llama 3 and Qwen2 ship are matched by the
// hand-written scanners below when a file holds one of them verbatim; any
// other pattern runs on regexp2. The scanners give the same matches as
// regexp2 on these patterns (TestFastSplitMatchesRegexp2 and
// FuzzFastSplit check this), about ten times faster.
const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// scanner returns the byte length of the match that starts at s[i:]
// (i < len(s)). For these patterns a match starts at every position and is
// never empty, so the matches tile the text.
type scanner func(s string, i int) int

// fastScanners maps each known pattern to its scanner.
var fastScanners = map[string]scanner{
	gpt2Pattern:   scanGPT2,
	llama3Pattern: func(s string, i int) int { return scanLlama(s, i, 3) },
	qwen2Pattern:  func(s string, i int) int { return scanLlama(s, i, 1) },
}

// runeAt decodes the rune at s[i:]: invalid bytes read as U+FFFD of width
// 1, as in the rune slice regexp2 works on. At the end it returns -1, 0.
func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

func isL(r rune) bool     { return r >= 0 && unicode.IsLetter(r) }
func isN(r rune) bool     { return r >= 0 && unicode.IsNumber(r) }
func isS(r rune) bool     { return r >= 0 && unicode.IsSpace(r) }
func isOther(r rune) bool { return r >= 0 && !isS(r) && !isL(r) && !isN(r) } // [^\s\p{L}\p{N}]
func isNL(r rune) bool    { return r == '\r' || r == '\n' }

// run returns the end of the run of runes matching f from i, taking at
// most limit runes (limit < 0: no limit).
func run(s string, i int, f func(rune) bool, limit int) int {
	for n := 0; limit < 0 || n < limit; n++ {
		r, w := runeAt(s, i)
		if w == 0 || !f(r) {
			break
		}
		i += w
	}
	return i
}

// contraction matches 's|'t|'re|'ve|'m|'ll|'d at s[i:], ASCII letters
// folded when fold is set (regexp2's (?i) folds no other letter onto
// these); it returns the length or 0.
func contraction(s string, i int, fold bool) int {
	if s[i] != '\'' {
		return 0
	}
	for _, suf := range [...]string{"s", "t", "re", "ve", "m", "ll", "d"} {
		if i+1+len(suf) > len(s) {
			continue
		}
		ok := true
		for k := 0; k < len(suf); k++ {
			c := s[i+1+k]
			if fold && c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != suf[k] {
				ok = false
				break
			}
		}
		if ok {
			return 1 + len(suf)
		}
	}
	return 0
}

// spaces matches \s+(?!\S)|\s+ at s[i:] (the rune there is whitespace): a
// whitespace run followed by a non-space gives its last rune back when it
// has more than one.
func spaces(s string, i int) int {
	end, last := i, i
	for {
		r, w := runeAt(s, end)
		if w == 0 || !isS(r) {
			break
		}
		last = end
		end += w
	}
	if end < len(s) && last > i {
		return last - i
	}
	return end - i
}

// scanGPT2 matches
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func scanGPT2(s string, i int) int {
	if n := contraction(s, i, false); n > 0 {
		return n
	}
	r, w := runeAt(s, i)
	j := i
	if r == ' ' {
		if r2, w2 := runeAt(s, i+w); isL(r2) || isN(r2) || isOther(r2) {
			r, j = r2, i+w
			w = w2
		}
	}
	switch {
	case isL(r):
		return run(s, j, isL, -1) - i
	case isN(r):
		return run(s, j, isN, -1) - i
	case isOther(r):
		return run(s, j, isOther, -1) - i
	}
	return spaces(s, i)
}

// scanLlama matches the Llama 3 pattern (maxDigits 3) or the Qwen2 one
// (maxDigits 1):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
func scanLlama(s string, i int, maxDigits int) int {
	if n := contraction(s, i, true); n > 0 {
		return n
	}
	r, w := runeAt(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isL(r) {
		return run(s, i, isL, -1) - i
	}
	if !isNL(r) && !isN(r) {
		if r2, _ := runeAt(s, i+w); isL(r2) {
			return run(s, i+w, isL, -1) - i
		}
	}
	// \p{N}{1,maxDigits}
	if isN(r) {
		return run(s, i, isN, maxDigits) - i
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	j := i
	if r == ' ' {
		if r2, _ := runeAt(s, i+w); isOther(r2) {
			j = i + w
		}
	}
	if r2, _ := runeAt(s, j); isOther(r2) {
		end := run(s, j, isOther, -1)
		return run(s, end, isNL, -1) - i
	}
	// \s*[\r\n]+ : whitespace up to and including its last \r or \n.
	end, afterNL := i, -1
	for {
		r, w := runeAt(s, end)
		if w == 0 || !isS(r) {
			break
		}
		end += w
		if isNL(r) {
			afterNL = end
		}
	}
	if afterNL > 0 {
		return afterNL - i
	}
	return spaces(s, i)
}
