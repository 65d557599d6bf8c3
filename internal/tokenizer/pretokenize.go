package tokenizer

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// gpt2Pattern is the split regex of the ByteLevel pre-tokenizer with
// use_regex: true.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// matchTimeout bounds one regex search, so that a pathological pattern in a
// tokenizer file cannot hang Encode. The shipped patterns never come near.
const matchTimeout = 30 * time.Second

// byteLevelPre is the ByteLevel pre-tokenizer.
type byteLevelPre struct {
	addPrefixSpace bool
	split          *splitter // GPT-2 pattern when use_regex, else nil
}

// splitter is a Split pre-tokenizer (behavior Isolated): a hand-written
// scanner for the patterns models ship, regexp2 for any other.
type splitter struct {
	re   *regexp2.Regexp
	scan scanner
}

// compileSplit compiles a split pattern with .NET semantics. regexp2 may
// panic on some malformed patterns; that is turned into an error.
func compileSplit(pattern string) (sp *splitter, err error) {
	defer func() {
		if r := recover(); r != nil {
			sp, err = nil, errPanic{r}
		}
	}()
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return nil, err
	}
	re.MatchTimeout = matchTimeout
	return &splitter{re: re, scan: fastScanners[pattern]}, nil
}

type errPanic struct{ v any }

func (e errPanic) Error() string { return "regex compiler failed" }

// encodeText encodes text without post-processing, appending to ids.
func (t *Tokenizer) encodeText(text string, ids []int) []int {
	addID := func(id int) { ids = append(ids, id) }
	t.rawAdded.split(text, func(seg string) {
		if t.nfc && !norm.NFC.IsNormalString(seg) {
			seg = norm.NFC.String(seg)
		}
		t.normAdded.split(seg, func(piece string) {
			t.preTokenize(0, piece, func(word string) {
				ids = t.bpeWord(word, ids)
			})
		}, addID)
	}, addID)
	return ids
}

// preTokenize runs the Split stages from stage on, then ByteLevel, and
// calls word for every resulting pre-token (raw bytes, never empty).
func (t *Tokenizer) preTokenize(stage int, s string, word func(string)) {
	if stage < len(t.splits) {
		splitIsolated(t.splits[stage], s, func(p string) { t.preTokenize(stage+1, p, word) })
		return
	}
	if t.byteLevel.addPrefixSpace && !strings.HasPrefix(s, " ") {
		s = " " + s
	}
	if t.byteLevel.split != nil {
		splitIsolated(t.byteLevel.split, s, word)
		return
	}
	word(s)
}

// splitIsolated calls piece for every match of the pattern in s and every
// stretch between matches, in order, skipping empty ones (Split with
// behavior Isolated). Bytes that are not valid UTF-8 take part as U+FFFD
// but are passed on unchanged. Should the regex engine fail (time-out), the
// rest of s is passed on whole.
func splitIsolated(sp *splitter, s string, piece func(string)) {
	if s == "" {
		return
	}
	if sp.scan != nil {
		for i := 0; i < len(s); {
			n := sp.scan(s, i)
			piece(s[i : i+n])
			i += n
		}
		return
	}
	splitRegexp(sp.re, s, piece)
}

// splitRegexp is splitIsolated on regexp2.
func splitRegexp(re *regexp2.Regexp, s string, piece func(string)) {
	if s == "" {
		return
	}
	runes, offs := runesOf(s)
	done := 0 // in bytes
	m, err := re.FindRunesMatch(runes)
	for m != nil && err == nil {
		start, end := offs[m.Index], offs[m.Index+m.Length]
		if start > done {
			piece(s[done:start])
		}
		if end > start {
			piece(s[start:end])
		}
		if end > done {
			done = end
		}
		m, err = re.FindNextMatch(m)
	}
	if done < len(s) {
		piece(s[done:])
	}
}

// runesOf decodes s into runes (each invalid byte becoming one U+FFFD) and
// the byte offset of each rune, plus len(s) at the end.
func runesOf(s string) ([]rune, []int) {
	n := utf8.RuneCountInString(s)
	runes := make([]rune, 0, n)
	offs := make([]int, 0, n+1)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		runes = append(runes, r)
		offs = append(offs, i)
		i += size
	}
	offs = append(offs, len(s))
	return runes, offs
}
