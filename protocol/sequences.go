package protocol

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Sequences content layout (little-endian):
//
//	"SEQS", version (= ContentVersion), task count T
//	T times: sequence count S, S lengths (uint32, at least 1 each), sum(lengths) token ids (int32,
//	         non-negative)

// EncodeSequences returns the canonical content of a sequences artifact: per task (in task
// order) its token-id sequences.
func EncodeSequences(tasks [][][]int) ([]byte, error) {
	size := 12
	for t, seqs := range tasks {
		size += 4 + 4*len(seqs)
		for i, s := range seqs {
			if len(s) == 0 || !fitsU32(1, len(s)) {
				return nil, fmt.Errorf("sequences: task %d, sequence %d: %w: length %d (want at least 1)", t, i, ErrInvalid, len(s))
			}
			for j, id := range s {
				if id < 0 || id > math.MaxInt32 {
					return nil, fmt.Errorf("sequences: task %d, sequence %d, position %d: %w: token id %d out of range", t, i, j, ErrInvalid, id)
				}
			}
			size += 4 * len(s)
		}
	}
	out := make([]byte, 0, size)
	out = appendContentHeader(out, sequencesMagic)
	out = appendU32(out, uint32(len(tasks)))
	for _, seqs := range tasks {
		out = appendU32(out, uint32(len(seqs)))
		for _, s := range seqs {
			out = appendU32(out, uint32(len(s)))
		}
		for _, s := range seqs {
			for _, id := range s {
				out = appendU32(out, uint32(id))
			}
		}
	}
	return out, nil
}

// DecodeSequences decodes the content of a sequences artifact, accepting exactly what
// EncodeSequences writes. Errors wrap ErrMalformed (or ErrVersion) and name the task and sequence.
func DecodeSequences(content []byte) ([][][]int, error) {
	d := newDecoder("sequences", content)
	d.header(sequencesMagic)
	nt := d.u32("task count")
	if !d.need(uint64(nt), 4, "tasks") {
		return nil, d.err
	}
	tasks := make([][][]int, nt)
	for t := range tasks {
		ns := d.u32("sequence count")
		if !d.need(uint64(ns), 4, fmt.Sprintf("task %d: lengths", t)) {
			return nil, d.err
		}
		seqs := make([][]int, ns)
		lens := d.bytes(4*uint64(ns), "lengths")
		for i := range seqs {
			n := binary.LittleEndian.Uint32(lens[4*i:])
			if n == 0 {
				d.fail("task %d, sequence %d has no tokens", t, i)
				return nil, d.err
			}
			if !d.need(uint64(n), 4, fmt.Sprintf("task %d, sequence %d: %d tokens", t, i, n)) {
				return nil, d.err
			}
			seqs[i] = make([]int, n)
			for j := range seqs[i] {
				id := d.u32("token")
				if id > math.MaxInt32 {
					d.fail("task %d, sequence %d, position %d: token id %d is negative", t, i, j, int32(id))
					return nil, d.err
				}
				seqs[i][j] = int(id)
			}
		}
		tasks[t] = seqs
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return tasks, nil
}
