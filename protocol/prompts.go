package protocol

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Prompt is one calibration item: its tokens and how many tokens the task model appends greedily
// (0: the tokens are a complete sequence, used as given).
type Prompt struct {
	// Tokens are the prompt's (or the sequence's) token ids.
	Tokens []int
	// MaxNew caps the completion (0: none).
	MaxNew int
}

// MaxCompletion bounds Prompt.MaxNew.
const MaxCompletion = 1 << 20

// Prompts content layout (little-endian):
//
//	magic "PRMT", version (= ContentVersion), task count T
//	T times: item count N, N times (token count L >= 1, max new), then the items' tokens (int32)

// EncodePrompts returns the canonical content of a prompts artifact: per task (in task order) its
// calibration items in file order.
func EncodePrompts(tasks [][]Prompt) ([]byte, error) {
	out := appendContentHeader(nil, promptsMagic)
	out = appendU32(out, uint32(len(tasks)))
	for t, items := range tasks {
		out = appendU32(out, uint32(len(items)))
		for i, p := range items {
			if len(p.Tokens) == 0 || !fitsU32(1, len(p.Tokens)) || p.MaxNew < 0 || p.MaxNew > MaxCompletion {
				return nil, fmt.Errorf("prompts: task %d, item %d: %w: %d tokens, max new %d", t, i, ErrInvalid, len(p.Tokens), p.MaxNew)
			}
			out = appendU32(out, uint32(len(p.Tokens)))
			out = appendU32(out, uint32(p.MaxNew))
		}
		for i, p := range items {
			for j, id := range p.Tokens {
				if id < 0 || id > math.MaxInt32 {
					return nil, fmt.Errorf("prompts: task %d, item %d, position %d: %w: token id %d out of range", t, i, j, ErrInvalid, id)
				}
				out = appendU32(out, uint32(id))
			}
		}
	}
	return out, nil
}

// DecodePrompts decodes the content of a prompts artifact, accepting exactly what EncodePrompts
// writes.
func DecodePrompts(content []byte) ([][]Prompt, error) {
	d := newDecoder("prompts", content)
	d.header(promptsMagic)
	nt := d.u32("task count")
	if !d.need(uint64(nt), 4, "tasks") {
		return nil, d.err
	}
	tasks := make([][]Prompt, nt)
	for t := range tasks {
		n := d.u32("item count")
		if !d.need(uint64(n), 8, fmt.Sprintf("task %d: item headers", t)) {
			return nil, d.err
		}
		hdr := d.bytes(8*uint64(n), "item headers")
		items := make([]Prompt, n)
		for i := range items {
			l := binary.LittleEndian.Uint32(hdr[8*i:])
			mx := binary.LittleEndian.Uint32(hdr[8*i+4:])
			if l == 0 || mx > MaxCompletion {
				d.fail("task %d, item %d: %d tokens, max new %d", t, i, l, mx)
				return nil, d.err
			}
			if !d.need(uint64(l), 4, fmt.Sprintf("task %d, item %d: %d tokens", t, i, l)) {
				return nil, d.err
			}
			items[i].MaxNew = int(mx)
			items[i].Tokens = make([]int, l)
		}
		for i := range items {
			for j := range items[i].Tokens {
				id := d.u32("token")
				if id > math.MaxInt32 {
					d.fail("task %d, item %d, position %d: token id %d is negative", t, i, j, int32(id))
					return nil, d.err
				}
				items[i].Tokens[j] = int(id)
			}
		}
		tasks[t] = items
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return tasks, nil
}
