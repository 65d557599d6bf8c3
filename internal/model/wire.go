package model

import "fmt"

// Wire is a State's residual stream as plain values: what crosses from one layer shard to the
// next. Rows of sequence i are packed after those of sequence i-1; Data holds sum(Lens) x Width
// float32 values. Resume rebuilds the State bit for bit (the rotary tables follow from Starts).
type Wire struct {
	// Width is the hidden size.
	Width int
	// Lens holds each sequence's number of rows.
	Lens []int
	// Starts holds each sequence's first position.
	Starts []int
	// Data is the residual stream, row-major.
	Data []float32
}

// Export returns st's residual stream in wire form. Data aliases st.H: the caller must not change
// it while st is in use.
func (st *State) Export() Wire {
	return Wire{Width: st.hidden, Lens: append([]int(nil), st.Lens...), Starts: append([]int(nil), st.Start...), Data: st.H}
}

// Resume rebuilds a State from its wire form, as Export wrote it on another shard. With a cache,
// slots names each sequence's cache slot (see EmbedTokens). w.Data is used in place.
func (m *Model) Resume(w Wire, cache *Cache, slots []int) (*State, error) {
	c := m.Config
	if w.Width != c.Hidden {
		return nil, fmt.Errorf("%w: residual stream of width %d for a model of hidden size %d", ErrInvalid, w.Width, c.Hidden)
	}
	if len(w.Starts) != len(w.Lens) {
		return nil, fmt.Errorf("%w: residual stream has %d sequence lengths but %d start positions", ErrInvalid, len(w.Lens), len(w.Starts))
	}
	rows := 0
	for i, n := range w.Lens {
		if n <= 0 || n > len(w.Data) {
			return nil, fmt.Errorf("%w: residual stream: sequence %d has %d rows", ErrInvalid, i, n)
		}
		rows += n
	}
	if rows*c.Hidden != len(w.Data) {
		return nil, fmt.Errorf("%w: residual stream has %d values, want %d rows x %d", ErrInvalid, len(w.Data), rows, c.Hidden)
	}
	st, err := m.newState(w.Lens, w.Starts, cache, slots)
	if err != nil {
		return nil, err
	}
	st.H = w.Data
	return st, nil
}

// requireFull reports an error unless m holds the whole model.
func (m *Model) requireFull() error {
	if m.Range != FullRange(m.Config) {
		return fmt.Errorf("%w: model %s holds layers [%d, %d) only; this needs the whole model", ErrInvalid, m.Dir, m.Range.Lo, m.Range.Hi)
	}
	return nil
}
