package tokenizer

// merge is what merging one pair of ids gives: its rank (position in the
// merges list, lower merges first) and the id of the merged token.
type merge struct {
	rank  int32
	newID int32
}

func pairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// Cache bounds: words up to maxCachedLen bytes, at most maxCacheEntries.
const (
	maxCachedLen    = 256
	maxCacheEntries = 1 << 16
)

// bpeWord appends the ids of one pre-token (raw bytes) to out.
func (t *Tokenizer) bpeWord(word string, out []int) []int {
	if len(word) == 1 {
		if id := t.byteID[word[0]]; id >= 0 {
			return append(out, id)
		}
	}
	if t.ignoreMerges {
		if id, ok := t.rawVocab[word]; ok {
			return append(out, id)
		}
	}
	if len(t.merges) == 0 {
		return t.symbols(word, out)
	}
	cacheable := len(word) <= maxCachedLen
	if cacheable {
		t.cacheMu.RLock()
		ids, ok := t.cache[word]
		t.cacheMu.RUnlock()
		if ok {
			return append(out, ids...)
		}
	}
	start := len(out)
	out = t.mergeWord(word, out)
	if cacheable {
		ids := append([]int(nil), out[start:]...)
		t.cacheMu.Lock()
		if len(t.cache) < maxCacheEntries {
			t.cache[word] = ids
		}
		t.cacheMu.Unlock()
	}
	return out
}

// symbols appends the initial symbols of word: one id per byte, unknown
// bytes becoming the unk token (fused when fuse_unk) or dropped without one.
func (t *Tokenizer) symbols(word string, out []int) []int {
	prevUnk := false
	for i := 0; i < len(word); i++ {
		id := t.byteID[word[i]]
		if id < 0 {
			if t.unkID < 0 || (t.fuseUnk && prevUnk) {
				continue
			}
			id = t.unkID
			prevUnk = true
		} else {
			prevUnk = false
		}
		out = append(out, id)
	}
	return out
}

type symbol struct {
	id         int
	prev, next int // neighbours in the list, -1 at the ends
	dead       bool
}

type candidate struct {
	rank  int32
	pos   int32
	newID int32
}

func (c candidate) less(d candidate) bool {
	return c.rank < d.rank || (c.rank == d.rank && c.pos < d.pos)
}

// mergeWord applies the merges to word: always the pair of lowest rank
// first, leftmost among equals (the Hugging Face BPE order).
func (t *Tokenizer) mergeWord(word string, out []int) []int {
	start := len(out)
	out = t.symbols(word, out)
	n := len(out) - start
	if n < 2 {
		return out
	}
	syms := make([]symbol, n)
	for i := range syms {
		syms[i] = symbol{id: out[start+i], prev: i - 1, next: i + 1}
	}
	syms[n-1].next = -1
	out = out[:start]

	h := make(candHeap, 0, n)
	for i := 0; i+1 < n; i++ {
		if m, ok := t.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h.push(candidate{rank: m.rank, pos: int32(i), newID: m.newID})
		}
	}
	for len(h) > 0 {
		c := h.pop()
		left := &syms[c.pos]
		if left.dead || left.next < 0 {
			continue
		}
		right := &syms[left.next]
		if m, ok := t.merges[pairKey(left.id, right.id)]; !ok || m.newID != c.newID {
			continue // stale: one side changed since it was queued
		}
		left.id = int(c.newID)
		right.dead = true
		left.next = right.next
		if left.next >= 0 {
			syms[left.next].prev = int(c.pos)
		}
		if left.prev >= 0 {
			if m, ok := t.merges[pairKey(syms[left.prev].id, left.id)]; ok {
				h.push(candidate{rank: m.rank, pos: int32(left.prev), newID: m.newID})
			}
		}
		if left.next >= 0 {
			if m, ok := t.merges[pairKey(left.id, syms[left.next].id)]; ok {
				h.push(candidate{rank: m.rank, pos: c.pos, newID: m.newID})
			}
		}
	}
	for i := 0; i >= 0; i = syms[i].next {
		out = append(out, syms[i].id)
	}
	return out
}

// candHeap is a binary min-heap of merge candidates.
type candHeap []candidate

func (h *candHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candHeap) pop() candidate {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s[r].less(s[l]) {
			m = r
		}
		if !s[m].less(s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
