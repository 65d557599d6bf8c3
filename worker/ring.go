package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/protocol"
)

// maxInlineRows is the largest rows content sent inside a ring message; larger rows go through
// the artifact store.
const maxInlineRows = 512 << 10

// genPlan is the calibration batches of a job and, for each, the items it completes.
type genPlan struct {
	prompts [][]protocol.Prompt
	batches []shard.GenBatch
	items   [][]int // batch -> item index (within its task) of each prompt
}

// planGeneration cuts each task's items that need a completion into batches of size bs, in
// item order (the single-process driver batches them the same way).
func planGeneration(prompts [][]protocol.Prompt, bs int) genPlan {
	if bs <= 0 {
		bs = 16
	}
	g := genPlan{prompts: prompts}
	for t, items := range prompts {
		var idx []int
		for i, p := range items {
			if p.MaxNew > 0 {
				idx = append(idx, i)
			}
		}
		for lo := 0; lo < len(idx); lo += bs {
			part := idx[lo:min(lo+bs, len(idx))]
			b := shard.GenBatch{Task: t, MaxNew: items[part[0]].MaxNew}
			for _, i := range part {
				b.Prompts = append(b.Prompts, items[i].Tokens)
			}
			g.batches = append(g.batches, b)
			g.items = append(g.items, part)
		}
	}
	return g
}

// sequences returns each task's calibration sequences in item order: the prompt followed by its
// completion, or the item as given.
func (g genPlan) sequences(cal *shard.Calibration) [][][]int {
	out := make([][][]int, len(g.prompts))
	for t, items := range g.prompts {
		out[t] = make([][]int, len(items))
		for i, p := range items {
			out[t][i] = p.Tokens
		}
	}
	for b, idx := range g.items {
		comp := cal.Completions(b)
		t := g.batches[b].Task
		for j, i := range idx {
			out[t][i] = append(append([]int(nil), g.prompts[t][i].Tokens...), comp[j]...)
		}
	}
	return out
}

// calibrate runs this shard's part of the pipelined greedy completion of the calibration
// prompts: every shard runs its layers with its own key/value cache, the first shard feeds the
// steps and the last chooses the tokens. The first shard writes the sequences.
func (tr *taskRun) calibrate(ctx context.Context, ls *loadedShard) error {
	t := tr.t
	content, err := tr.get(ctx, "calibration prompts", t.Inputs.Prompts, protocol.KindPrompts)
	if err != nil {
		return err
	}
	prompts, err := protocol.DecodePrompts(content)
	if err != nil {
		return &inputError{code: protocol.CodeInputCorrupt, ref: t.Inputs.Prompts, err: err}
	}
	g := planGeneration(prompts, ls.shard.BatchSize())
	cal, err := ls.shard.NewCalibration(g.batches)
	if err != nil {
		return err
	}
	r := &ring{tr: tr, cal: cal}
	if t.Shards > 1 {
		msgs, stop, err := tr.w.cfg.Ring.Listen(t.Job, t.Attempt, t.Shard)
		if err != nil {
			return err
		}
		defer stop()
		r.msgs = msgs
	}
	if t.Shard != 0 {
		if err := r.follow(ctx); err != nil {
			r.abort(err)
			return err
		}
		return nil
	}
	if err := r.lead(ctx, len(g.batches)); err != nil {
		if t.Shards > 1 {
			r.abort(err)
		}
		return err
	}
	seqs, err := protocol.EncodeSequences(g.sequences(cal))
	if err != nil {
		return err
	}
	tr.res.Outputs.Sequences, err = tr.put(ctx, protocol.KindSequences, seqs)
	return err
}

// ring is one shard's side of a calibrate attempt.
type ring struct {
	tr   *taskRun
	cal  *shard.Calibration
	msgs <-chan []byte
}

func (r *ring) send(ctx context.Context, to int, g shard.GenMsg, extra protocol.GenStep) error {
	t := r.tr.t
	step := extra
	step.Job, step.Attempt, step.From, step.Batch, step.Slots, step.Next = t.Job, t.Attempt, t.Shard, g.Batch, g.Slots, g.Next
	if step.Slots == nil {
		step.Slots = []int{}
	}
	var rows []byte
	if len(g.Wire.Data) > 0 {
		content, err := protocol.EncodeRows([]protocol.Batch{{Width: g.Wire.Width, Lens: g.Wire.Lens, Start: g.Wire.Starts, Data: g.Wire.Data}})
		if err != nil {
			return err
		}
		if len(content) > maxInlineRows {
			if step.Rows, err = r.tr.put(ctx, protocol.KindRows, content); err != nil {
				return err
			}
		} else {
			rows = content
		}
	}
	return r.tr.w.cfg.Ring.Send(ctx, t.Job, t.Attempt, to, protocol.EncodeGenStep(step, rows))
}

// readyEvery is how often a shard repeats that it listens until the ring has started (a core
// NATS message sent before the first shard subscribed is lost).
const readyEvery = 100 * time.Millisecond

// recv waits for the next ring message; tick, if set, is called every readyEvery meanwhile.
func (r *ring) recv(ctx context.Context, tick func()) (protocol.GenStep, shard.GenMsg, error) {
	timeout := time.NewTimer(r.tr.w.cfg.RingTimeout)
	defer timeout.Stop()
	var tc <-chan time.Time
	if tick != nil {
		t := time.NewTicker(readyEvery)
		defer t.Stop()
		tc = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return protocol.GenStep{}, shard.GenMsg{}, ctx.Err()
		case <-timeout.C:
			return protocol.GenStep{}, shard.GenMsg{}, fmt.Errorf("calibration ring stalled: shard %d heard nothing for %s", r.tr.t.Shard, r.tr.w.cfg.RingTimeout)
		case <-tc:
			tick()
		case b, ok := <-r.msgs:
			if !ok {
				r.msgs = nil
				return protocol.GenStep{}, shard.GenMsg{}, fmt.Errorf("%w: calibration ring of job %s attempt %d: the NATS connection dropped, so ring messages may be lost",
					protocol.ErrUnavailable, r.tr.t.Job, r.tr.t.Attempt)
			}
			return r.decode(ctx, b)
		}
	}
}

// decode decodes one ring message, fetching its rows from the store when they are not inline.
func (r *ring) decode(ctx context.Context, b []byte) (protocol.GenStep, shard.GenMsg, error) {
	step, rows, err := protocol.DecodeGenStep(b)
	if err != nil {
		return step, shard.GenMsg{}, err
	}
	if step.Error != nil {
		if step.Error.Code == protocol.CodeUnavailable {
			return step, shard.GenMsg{}, fmt.Errorf("%w: shard %d aborted the calibration: %v", protocol.ErrUnavailable, step.From, step.Error)
		}
		return step, shard.GenMsg{}, fmt.Errorf("shard %d aborted the calibration: %v", step.From, step.Error)
	}
	g := shard.GenMsg{Batch: step.Batch, Slots: step.Slots, Next: step.Next}
	if !step.Rows.IsZero() {
		if rows, err = r.tr.get(ctx, "generation step rows", step.Rows, protocol.KindRows); err != nil {
			return step, g, err
		}
	}
	if len(rows) > 0 {
		bs, err := protocol.DecodeRows(rows)
		if err != nil || len(bs) != 1 {
			return step, g, fmt.Errorf("generation step of batch %d from shard %d: rows: %v", step.Batch, step.From, err)
		}
		g.Wire.Width, g.Wire.Lens, g.Wire.Starts, g.Wire.Data = bs[0].Width, bs[0].Lens, bs[0].Start, bs[0].Data
	}
	return step, g, nil
}

// lead runs the first shard: it waits until every other shard listens, begins every batch, and
// advances each batch with the tokens the last shard chose until all have finished.
func (r *ring) lead(ctx context.Context, batches int) error {
	shards := r.tr.t.Shards
	if shards == 1 {
		for b := 0; b < batches; b++ {
			msg, done, err := r.cal.Begin(b)
			for !done && err == nil {
				msg, done, err = r.cal.Advance(msg)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := r.waitReady(ctx, shards); err != nil {
		return err
	}
	active := 0
	for b := 0; b < batches; b++ {
		msg, done, err := r.cal.Begin(b)
		if err != nil {
			return err
		}
		if !done {
			active++
			if err := r.forward(ctx, msg); err != nil {
				return err
			}
		}
	}
	for active > 0 {
		_, msg, err := r.recv(ctx, nil)
		if err != nil {
			return err
		}
		if msg.Next == nil {
			continue
		}
		next, done, err := r.cal.Advance(msg)
		if err != nil {
			return err
		}
		if done {
			active--
			continue
		}
		if err := r.forward(ctx, next); err != nil {
			return err
		}
	}
	for s := 1; s < shards; s++ {
		if err := r.send(ctx, s, shard.GenMsg{}, protocol.GenStep{Done: true}); err != nil {
			return err
		}
	}
	return nil
}

// waitReady waits until every other shard of the ring has said it listens.
func (r *ring) waitReady(ctx context.Context, shards int) error {
	ready := map[int]bool{}
	for len(ready) < shards-1 {
		step, _, err := r.recv(ctx, nil)
		if err != nil {
			return err
		}
		if step.Ready && step.From > 0 && step.From < shards {
			ready[step.From] = true
		}
	}
	return nil
}

// forward sends a step that left the first shard to shard 1.
func (r *ring) forward(ctx context.Context, msg shard.GenMsg) error {
	return r.send(ctx, 1, msg, protocol.GenStep{})
}

// abort tells the other shards of the attempt that this one failed, so they stop at once
// instead of waiting out the ring timeout. A failure of the cluster (NATS dropped, the task
// cancelled or the worker stopping) is passed on as such, so no shard counts it as a failure of
// the calibration.
func (r *ring) abort(err error) {
	t := r.tr.t
	code := protocol.CodeTaskFailed
	if errors.Is(err, protocol.ErrUnavailable) || errors.Is(err, context.Canceled) {
		code = protocol.CodeUnavailable
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for s := 0; s < t.Shards; s++ {
		if s != t.Shard {
			_ = r.send(ctx, s, shard.GenMsg{}, protocol.GenStep{Error: protocol.Errorf(code, "%v", err)})
		}
	}
}

// follow runs a shard after the first: it announces itself, then runs every step it receives
// through its layers and passes it on, until the first shard says the ring is done.
func (r *ring) follow(ctx context.Context) error {
	t := r.tr.t
	started := false
	announce := func() {
		if !started {
			_ = r.send(ctx, 0, shard.GenMsg{}, protocol.GenStep{Ready: true})
		}
	}
	announce()
	for {
		step, msg, err := r.recv(ctx, announce)
		if err != nil {
			return err
		}
		if step.Done {
			return nil
		}
		started = true
		out, err := r.cal.Forward(msg)
		if err != nil {
			return err
		}
		to := t.Shard + 1
		if to == t.Shards {
			to = 0
		}
		if err := r.send(ctx, to, out, protocol.GenStep{}); err != nil {
			return err
		}
	}
}
