package protocol

import (
	"encoding/binary"
	"fmt"
)

// GenStep is one greedy-generation step of one calibration batch travelling between the shards of
// a calibrate task: the rows entering the receiving shard, or (to the first shard) the next tokens.
// It is binary: a JSON head followed by the rows content (EncodeRows of one batch), or, when the
// rows are too large for one message, a ref to a rows artifact.
type GenStep struct {
	// Job, Attempt and Batch say which calibration batch of which attempt this is; Step counts the
	// batch's steps from 0.
	Job     string `json:"job"`
	Attempt int    `json:"attempt"`
	Batch   int    `json:"batch"`
	Step    int    `json:"step"`
	// Slots are the cache slots of the step's sequences.
	Slots []int `json:"slots"`
	// Next are the chosen tokens (to the first shard).
	Next []int `json:"next,omitempty"`
	// Rows is the rows artifact when the rows are not inline.
	Rows Ref `json:"rows,omitzero"`
	// Ready tells the first shard that the sending shard listens (every shard must before the
	// first step is sent).
	Ready bool `json:"ready,omitempty"`
	// From is the sending shard.
	From int `json:"from"`
	// Done ends the attempt's ring on the receiving shard (sent by the first shard when every
	// batch has finished).
	Done bool `json:"done,omitempty"`
	// Error aborts the attempt (a shard failed).
	Error *Error `json:"error,omitempty"`
}

// MaxGenSlots bounds the sequences of one generation step.
const MaxGenSlots = 1 << 16

// EncodeGenStep returns the message: a uint32 head length, the JSON head, then inline rows
// content (may be empty).
func EncodeGenStep(g GenStep, rows []byte) []byte {
	head := Encode(genHead{Head: NewHead(), GenStep: g})
	out := binary.LittleEndian.AppendUint32(nil, uint32(len(head)))
	out = append(out, head...)
	return append(out, rows...)
}

type genHead struct {
	Head
	GenStep
}

func (g genHead) validate() error {
	if err := ValidateJobID(g.Job); err != nil {
		return err
	}
	if g.Attempt < 1 || g.Batch < 0 || g.Step < 0 || len(g.Slots) > MaxGenSlots {
		return fmt.Errorf("generation step %d of batch %d, attempt %d, %d slots", g.Step, g.Batch, g.Attempt, len(g.Slots))
	}
	if g.Next != nil && len(g.Next) != len(g.Slots) {
		return fmt.Errorf("generation step %d of batch %d: %d next tokens for %d slots", g.Step, g.Batch, len(g.Next), len(g.Slots))
	}
	for _, s := range g.Slots {
		if s < 0 || s >= MaxGenSlots {
			return fmt.Errorf("generation step %d of batch %d: slot %d", g.Step, g.Batch, s)
		}
	}
	return nil
}

// DecodeGenStep decodes a generation step message into its head and its inline rows content
// (aliasing b).
func DecodeGenStep(b []byte) (GenStep, []byte, error) {
	if len(b) > MaxMessageSize {
		return GenStep{}, nil, fmt.Errorf("generation step: %w: %d bytes (at most %d)", ErrMessage, len(b), MaxMessageSize)
	}
	if len(b) < 4 {
		return GenStep{}, nil, fmt.Errorf("generation step: %w: %d bytes, no head length", ErrMessage, len(b))
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return GenStep{}, nil, fmt.Errorf("generation step: %w: head of %d bytes in a message of %d", ErrMessage, n, len(b))
	}
	h, err := decode[genHead]("generation step", b[4:4+n])
	if err != nil {
		return GenStep{}, nil, err
	}
	return h.GenStep, b[4+n:], nil
}
