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

// Greedy is greedy generation in progress over a batch of prompts, independent of where the
// layers run: Step says what to feed the model next, the model (in one process, or as a pipeline
// of layer shards) computes the next token of every sequence in the step (Model.Next), and Advance
// takes them. Finished sequences drop out of later steps. Prompt i uses cache slot i.
type Greedy struct {
	cfg     Config
	opt     GenerateOptions
	prompts [][]int
	maxNew  []int
	out     [][]int
	// active are the prompts in the current step, with what they feed and where it starts.
	active []int
	step   [][]int
	pos    []int
}

// NewGreedy starts greedy generation of the prompts for a model of configuration cfg.
func NewGreedy(cfg Config, prompts [][]int, opt GenerateOptions) (*Greedy, error) {
	n := len(prompts)
	g := &Greedy{cfg: cfg, opt: opt, prompts: prompts, maxNew: make([]int, n), out: make([][]int, n)}
	switch len(opt.MaxNew) {
	case 1:
		for i := range g.maxNew {
			g.maxNew[i] = opt.MaxNew[0]
		}
	case n:
		copy(g.maxNew, opt.MaxNew)
	default:
		return nil, fmt.Errorf("%w: MaxNew has %d values for %d prompts", ErrInvalid, len(opt.MaxNew), n)
	}
	for i, p := range prompts {
		if g.maxNew[i] > 0 {
			g.active = append(g.active, i)
			g.step = append(g.step, p)
			g.pos = append(g.pos, 0)
		}
	}
	return g, nil
}

// Done reports whether every sequence has finished.
func (g *Greedy) Done() bool { return len(g.active) == 0 }

// Step returns the tokens to feed next, each sequence's first position and its cache slot.
func (g *Greedy) Step() (tokens [][]int, start, slots []int) {
	return g.step, g.pos, g.active
}

// Advance records next[j], the token chosen for the j-th sequence of the current step, and
// prepares the following step.
func (g *Greedy) Advance(next []int) error {
	if len(next) != len(g.active) {
		return fmt.Errorf("%w: %d next tokens for a step of %d sequences", ErrInvalid, len(next), len(g.active))
	}
	var active, pos []int
	var step [][]int
	for j, i := range g.active {
		tok := next[j]
		if tok < 0 || tok >= g.cfg.Vocab {
			return fmt.Errorf("%w: next token %d of sequence %d is outside the vocabulary of %d", ErrInvalid, tok, i, g.cfg.Vocab)
		}
		g.out[i] = append(g.out[i], tok)
		done := len(g.out[i]) >= g.maxNew[i] || (g.opt.StopAtEOS && g.cfg.IsEOS(tok))
		if !done {
			active = append(active, i)
			step = append(step, []int{tok})
			pos = append(pos, g.pos[j]+len(g.step[j]))
		}
	}
	g.active, g.step, g.pos = active, step, pos
	return nil
}

// Out returns the new tokens of each prompt so far.
func (g *Greedy) Out() [][]int { return g.out }

// Next returns, for every sequence of st, the argmax of the logits of its last row (the lowest id
// wins a tie, as torch.argmax does). The model must hold the final norm and lm_head.
func (m *Model) Next(st *State) ([]int, error) {
	if m.LMHead == nil {
		return nil, fmt.Errorf("%w: model %s holds layers [%d, %d) without lm_head", ErrInvalid, m.Dir, m.Range.Lo, m.Range.Hi)
	}
	last := make([]int, len(st.Lens))
	for j := range st.Lens {
		last[j] = st.Offsets[j] + st.Lens[j] - 1
	}
	logits := m.Logits(st, last)
	V := m.Config.Vocab
	out := make([]int, len(last))
	for j := range last {
		row := logits[j*V : (j+1)*V]
		best := 0
		for t, x := range row {
			if x > row[best] {
				best = t
			}
		}
		out[j] = best
	}
	return out, nil
}

// Generate continues every prompt greedily with a key/value cache and returns the new tokens of
// each prompt. Prompts of different lengths are run together without padding.
func (m *Model) Generate(prompts [][]int, opt GenerateOptions) ([][]int, error) {
	if err := m.requireFull(); err != nil {
		return nil, err
	}
	g, err := NewGreedy(m.Config, prompts, opt)
	if err != nil {
		return nil, err
	}
	cache := NewCache(len(m.Layers), len(prompts))
	for !g.Done() {
		tokens, start, slots := g.Step()
		st, err := m.EmbedTokens(tokens, start, cache, slots)
		if err != nil {
			return nil, err
		}
		for l := range m.Layers {
			m.RunLayer(l, st, nil)
		}
		next, err := m.Next(st)
		if err != nil {
			return nil, err
		}
		if err := g.Advance(next); err != nil {
			return nil, err
		}
	}
	return g.Out(), nil
}
