package protocol

import "fmt"

// Batch is one calibration batch's residual stream: the wire form of a model state (rows packed
// without padding, one row per token).
type Batch struct {
	// Task is the index of the task whose sequences the batch holds.
	Task int
	// Width is the number of float32 values per row (the hidden size).
	Width int
	// Lens holds the number of rows of each sequence (at least 1 each).
	Lens []int
	// Start holds the position of each sequence's first row.
	Start []int
	// Data is sum(Lens) x Width, row-major, the sequences back to back.
	Data []float32
}

// Rows content layout (little-endian; all fields uint32 so the float data stays 4-byte aligned):
//
//	"ROWS", version (= ContentVersion), batch count B
//	B times: task, width W, sequence count S, S lengths, S start positions,
//	         sum(lengths) x W float32
//
// Batches are in a fixed order (task, then batch), so tasks never decrease.

// rowsBatchHeader is the smallest encoded batch: task, width and one sequence's length and start.
const rowsBatchHeader = 5 * 4

// EncodeRows returns the canonical content of a rows artifact holding batches, in order.
func EncodeRows(batches []Batch) ([]byte, error) {
	size := 12
	for i := range batches {
		b := &batches[i]
		if err := checkBatch(b, i, batches); err != nil {
			return nil, err
		}
		size += 12 + 8*len(b.Lens) + 4*len(b.Data)
	}
	out := make([]byte, 0, size)
	out = appendContentHeader(out, rowsMagic)
	out = appendU32(out, uint32(len(batches)))
	for i := range batches {
		b := &batches[i]
		out = appendU32(out, uint32(b.Task))
		out = appendU32(out, uint32(b.Width))
		out = appendU32(out, uint32(len(b.Lens)))
		for _, n := range b.Lens {
			out = appendU32(out, uint32(n))
		}
		for _, s := range b.Start {
			out = appendU32(out, uint32(s))
		}
		out = appendFloat32s(out, b.Data)
	}
	return out, nil
}

func checkBatch(b *Batch, i int, all []Batch) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("rows: batch %d: %w: %s", i, ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case !fitsU32(0, b.Task):
		return bad("task %d out of range", b.Task)
	case i > 0 && b.Task < all[i-1].Task:
		return bad("task %d after task %d (batches go in task order)", b.Task, all[i-1].Task)
	case !fitsU32(1, b.Width):
		return bad("width %d (want at least 1)", b.Width)
	case len(b.Lens) == 0:
		return bad("no sequences")
	case len(b.Start) != len(b.Lens):
		return bad("%d start positions for %d sequences", len(b.Start), len(b.Lens))
	case !fitsU32(1, b.Lens...):
		return bad("sequence lengths %v (want at least 1 each)", b.Lens)
	case !fitsU32(0, b.Start...):
		return bad("start positions %v out of range", b.Start)
	}
	rows := 0
	for _, n := range b.Lens {
		rows += n
	}
	if len(b.Data) != rows*b.Width {
		return bad("%d values for %d rows of width %d", len(b.Data), rows, b.Width)
	}
	return nil
}

// DecodeRows decodes the content of a rows artifact, accepting exactly what EncodeRows writes.
// Errors wrap ErrMalformed (or ErrVersion) and name the batch and field.
func DecodeRows(content []byte) ([]Batch, error) {
	d := newDecoder("rows", content)
	d.header(rowsMagic)
	n := d.u32("batch count")
	if !d.need(uint64(n), rowsBatchHeader, "batches") {
		return nil, d.err
	}
	batches := make([]Batch, n)
	for i := range batches {
		if err := decodeBatch(d, i, batches); err != nil {
			return nil, err
		}
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return batches, nil
}

func decodeBatch(d *decoder, i int, batches []Batch) error {
	b := &batches[i]
	b.Task = int(d.u32("task"))
	b.Width = int(d.u32("width"))
	ns := d.u32("sequence count")
	if d.err != nil {
		return d.err
	}
	switch {
	case i > 0 && b.Task < batches[i-1].Task:
		d.fail("batch %d: task %d after task %d", i, b.Task, batches[i-1].Task)
	case b.Width == 0:
		d.fail("batch %d: width 0", i)
	case ns == 0:
		d.fail("batch %d: no sequences", i)
	}
	if !d.need(uint64(ns), 8, fmt.Sprintf("batch %d: lengths and starts", i)) {
		return d.err
	}
	b.Lens, b.Start = make([]int, ns), make([]int, ns)
	var rows uint64
	for j := range b.Lens {
		b.Lens[j] = int(d.u32("length"))
		if b.Lens[j] == 0 {
			d.fail("batch %d: sequence %d has 0 rows", i, j)
			return d.err
		}
		rows += uint64(b.Lens[j])
	}
	for j := range b.Start {
		b.Start[j] = int(d.u32("start"))
	}
	if !d.need(rows, uint64(b.Width)*4, fmt.Sprintf("batch %d: %d rows of width %d", i, rows, b.Width)) {
		return d.err
	}
	b.Data = d.float32s(rows*uint64(b.Width), "data")
	return d.err
}
