package model

import "fmt"

// GenerateOptions controls greedy generation.
type GenerateOptions struct {
	// MaxNew is the number of tokens to generate for each prompt (one value for all, or one per
	// prompt).
	MaxNew []int
	// StopAtEOS ends a sequence as soon as it produces an end-of-sequence id (which is kept).
	StopAtEOS bool
}

// Generate continues every prompt greedily (argmax; the lowest id wins a tie, as torch.argmax
// does) with a key/value cache and returns the new tokens of each prompt. Prompts of different
// lengths are run together without padding.
func (m *Model) Generate(prompts [][]int, opt GenerateOptions) ([][]int, error) {
	n := len(prompts)
	maxNew := make([]int, n)
	switch len(opt.MaxNew) {
	case 1:
		for i := range maxNew {
			maxNew[i] = opt.MaxNew[0]
		}
	case n:
		copy(maxNew, opt.MaxNew)
	default:
		return nil, fmt.Errorf("%w: MaxNew has %d values for %d prompts", ErrInvalid, len(opt.MaxNew), n)
	}
	out := make([][]int, n)
	if n == 0 {
		return out, nil
	}
	// active maps the rows of the current step to prompt indices.
	active := make([]int, 0, n)
	var step [][]int
	var pos []int
	for i, p := range prompts {
		if maxNew[i] > 0 {
			active = append(active, i)
			step = append(step, p)
			pos = append(pos, 0)
		}
	}
	// The cache rows follow the active prompts; finished prompts drop out.
	rowCache := newKVCache(len(m.Layers), len(active))
	for len(active) > 0 {
		st, err := m.start(step, pos, rowCache)
		if err != nil {
			return nil, err
		}
		for l := range m.Layers {
			m.RunLayer(l, st, nil)
		}
		last := make([]int, len(active))
		for j := range active {
			last[j] = st.Offsets[j] + st.Lens[j] - 1
		}
		logits := m.Logits(st, last)
		V := m.Config.Vocab
		nextActive := active[:0:0]
		var nextStep [][]int
		var nextPos []int
		next := newKVCache(len(m.Layers), 0)
		for j, i := range active {
			row := logits[j*V : (j+1)*V]
			best := 0
			for t, x := range row {
				if x > row[best] {
					best = t
				}
			}
			out[i] = append(out[i], best)
			done := len(out[i]) >= maxNew[i] || (opt.StopAtEOS && m.Config.IsEOS(best))
			if !done {
				nextActive = append(nextActive, i)
				nextStep = append(nextStep, []int{best})
				nextPos = append(nextPos, pos[j]+st.Lens[j])
				for l := range m.Layers {
					next.k[l] = append(next.k[l], rowCache.k[l][j])
					next.v[l] = append(next.v[l], rowCache.v[l][j])
				}
			}
		}
		active, step, pos, rowCache = nextActive, nextStep, nextPos, next
	}
	return out, nil
}
