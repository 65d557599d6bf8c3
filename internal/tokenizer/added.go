package tokenizer

import (
	"sort"
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json's added_tokens.
type addedToken struct {
	id         int
	content    string // as matched (NFC-normalized for normalized tokens when the normalizer is NFC)
	singleWord bool
	lstrip     bool
	rstrip     bool
	special    bool
}

// addedMatcher finds added tokens in text, leftmost first and longest at
// that position, as the Hugging Face AddedVocabulary does.
type addedMatcher struct {
	byFirst  [256][]*addedToken // by first byte, longest first
	contents map[string]*addedToken
}

func newAddedMatcher(tokens []*addedToken) *addedMatcher {
	m := &addedMatcher{contents: make(map[string]*addedToken, len(tokens))}
	for _, a := range tokens {
		if a.content == "" {
			continue
		}
		if _, dup := m.contents[a.content]; dup {
			continue
		}
		m.contents[a.content] = a
		b := a.content[0]
		m.byFirst[b] = append(m.byFirst[b], a)
	}
	for b := range m.byFirst {
		list := m.byFirst[b]
		sort.SliceStable(list, func(i, j int) bool { return len(list[i].content) > len(list[j].content) })
	}
	return m
}

func (m *addedMatcher) byContent(s string) *addedToken {
	if m == nil {
		return nil
	}
	return m.contents[s]
}

func (m *addedMatcher) empty() bool { return m == nil || len(m.contents) == 0 }

// split calls text for every stretch of s between added tokens (never
// empty) and token for every added token found, in order.
func (m *addedMatcher) split(s string, text func(string), token func(id int)) {
	if m.empty() {
		if s != "" {
			text(s)
		}
		return
	}
	done := 0 // s[:done] has been handed out
	for i := 0; i < len(s); i++ {
		cands := m.byFirst[s[i]]
		if len(cands) == 0 {
			continue
		}
		var hit *addedToken
		for _, a := range cands {
			if len(s)-i >= len(a.content) && s[i:i+len(a.content)] == a.content {
				if a.singleWord && !isWordBoundary(s, i, i+len(a.content)) {
					continue
				}
				hit = a
				break
			}
		}
		if hit == nil {
			continue
		}
		start, end := i, i+len(hit.content)
		if hit.lstrip {
			for start > done {
				r, size := utf8.DecodeLastRuneInString(s[done:start])
				if !unicode.IsSpace(r) {
					break
				}
				start -= size
			}
		}
		if hit.rstrip {
			for end < len(s) {
				r, size := utf8.DecodeRuneInString(s[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += size
			}
		}
		if start > done {
			text(s[done:start])
		}
		token(hit.id)
		done = end
		i = end - 1
	}
	if done < len(s) {
		text(s[done:])
	}
}

// isWordBoundary reports whether s[start:end] is neither preceded nor
// followed by a letter or digit (single_word tokens match only then).
func isWordBoundary(s string, start, end int) bool {
	if start > 0 {
		r, _ := utf8.DecodeLastRuneInString(s[:start])
		if isWordRune(r) {
			return false
		}
	}
	if end < len(s) {
		r, _ := utf8.DecodeRuneInString(s[end:])
		if isWordRune(r) {
			return false
		}
	}
	return true
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) }
