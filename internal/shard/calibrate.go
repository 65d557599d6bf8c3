package shard

import (
	"fmt"

	"github.com/iteris-dev/iteris/internal/model"
)

// GenBatch is one batch of one task's calibration prompts whose completions the task model
// (base + the task's adapter) generates greedily, stopping at EOS.
type GenBatch struct {
	// Task indexes the merge's tasks.
	Task int
	// Prompts are the prompts' token ids.
	Prompts [][]int
	// MaxNew caps the completion of each prompt.
	MaxNew int
}

// GenMsg is one generation step of one batch on its way through the shards: the first shard
// embeds the step's tokens, every shard runs its layers with its own key/value cache, and the last
// shard chooses the next tokens, which go back to the first.
type GenMsg struct {
	// Batch indexes the calibration batches.
	Batch int
	// Slots are the cache slots (prompt indices within the batch) of the step's sequences.
	Slots []int
	// Wire is the residual stream entering the receiving shard (empty once Next is set).
	Wire model.Wire
	// Next holds the token chosen for each sequence of the step (set by the last shard).
	Next []int
}

// Calibration is one shard's part of the greedy completion of every calibration batch. The first
// shard also tracks the generated tokens.
type Calibration struct {
	u       *Unit
	batches []GenBatch
	caches  []*model.Cache
	greedy  []*model.Greedy
}

// NewCalibration prepares the unit's part of generating the batches' completions.
func (u *Unit) NewCalibration(batches []GenBatch) (*Calibration, error) {
	c := &Calibration{u: u, batches: batches}
	for i, b := range batches {
		if b.Task < 0 || b.Task >= len(u.tasks) {
			return nil, fmt.Errorf("%w: calibration batch %d names task %d of %d", ErrInput, i, b.Task, len(u.tasks))
		}
		c.caches = append(c.caches, model.NewCache(len(u.base.Layers), len(b.Prompts)))
		if u.lo == 0 {
			g, err := model.NewGreedy(u.base.Config, b.Prompts, model.GenerateOptions{MaxNew: []int{b.MaxNew}, StopAtEOS: true})
			if err != nil {
				return nil, fmt.Errorf("calibration batch %d: %w", i, err)
			}
			c.greedy = append(c.greedy, g)
		}
	}
	return c, nil
}

// Begin runs the first step of batch b through the first shard; the message goes to the next
// shard (or, on a single shard, straight back to Advance).
func (c *Calibration) Begin(b int) (GenMsg, bool, error) {
	if c.u.lo != 0 {
		return GenMsg{}, false, fmt.Errorf("%w: only the first shard begins a calibration step", ErrInput)
	}
	if b < 0 || b >= len(c.batches) {
		return GenMsg{}, false, fmt.Errorf("%w: calibration batch %d of %d", ErrInput, b, len(c.batches))
	}
	g := c.greedy[b]
	if g.Done() {
		return GenMsg{}, true, nil
	}
	tokens, start, slots := g.Step()
	st, err := c.u.base.EmbedTokens(tokens, start, c.caches[b], slots)
	if err != nil {
		return GenMsg{}, false, fmt.Errorf("calibration batch %d: %w", b, err)
	}
	msg, err := c.run(b, st, slots)
	return msg, false, err
}

// Forward runs a step that arrived from the previous shard through this one.
func (c *Calibration) Forward(msg GenMsg) (GenMsg, error) {
	if msg.Batch < 0 || msg.Batch >= len(c.batches) {
		return GenMsg{}, fmt.Errorf("%w: calibration batch %d of %d", ErrInput, msg.Batch, len(c.batches))
	}
	if c.u.lo == 0 || msg.Next != nil {
		return GenMsg{}, fmt.Errorf("%w: calibration step of batch %d sent to the wrong shard", ErrInput, msg.Batch)
	}
	st, err := c.u.base.Resume(msg.Wire, c.caches[msg.Batch], msg.Slots)
	if err != nil {
		return GenMsg{}, fmt.Errorf("calibration batch %d: %w", msg.Batch, err)
	}
	return c.run(msg.Batch, st, msg.Slots)
}

// run advances st through the unit's layers with the batch's task model; the last shard picks the
// next tokens.
func (c *Calibration) run(b int, st *model.State, slots []int) (GenMsg, error) {
	tm := c.u.taskMods[c.batches[b].Task]
	for l := c.u.lo; l < c.u.hi; l++ {
		tm.RunLayer(l, st, nil)
	}
	msg := GenMsg{Batch: b, Slots: slots}
	if c.u.hi < len(c.u.base.Layers) {
		msg.Wire = st.Export()
		return msg, nil
	}
	next, err := tm.Next(st)
	if err != nil {
		return GenMsg{}, err
	}
	msg.Next = next
	return msg, nil
}

// Advance takes the next tokens of a batch's step (on the first shard) and runs the batch's
// following step, if any, through the first shard. done reports that the batch has finished.
func (c *Calibration) Advance(msg GenMsg) (next GenMsg, done bool, err error) {
	if c.u.lo != 0 || msg.Next == nil {
		return GenMsg{}, false, fmt.Errorf("%w: next tokens of batch %d must reach the first shard", ErrInput, msg.Batch)
	}
	if msg.Batch < 0 || msg.Batch >= len(c.batches) {
		return GenMsg{}, false, fmt.Errorf("%w: calibration batch %d of %d", ErrInput, msg.Batch, len(c.batches))
	}
	g := c.greedy[msg.Batch]
	if _, _, slots := g.Step(); !equalInts(slots, msg.Slots) {
		return GenMsg{}, false, fmt.Errorf("%w: next tokens of batch %d are for slots %v, the step has %v", ErrInput, msg.Batch, msg.Slots, slots)
	}
	if err := g.Advance(msg.Next); err != nil {
		return GenMsg{}, false, fmt.Errorf("calibration batch %d: %w", msg.Batch, err)
	}
	return c.Begin(msg.Batch)
}

// Completions returns the generated tokens of batch b (first shard), one list per prompt.
func (c *Calibration) Completions(b int) [][]int {
	return c.greedy[b].Out()
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
