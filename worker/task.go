package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/iteris-dev/iteris/internal/artifact"
	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/protocol"
)

// taskRun is one task attempt in progress: its I/O counters and its result.
type taskRun struct {
	w   *Worker
	t   protocol.Task
	res protocol.Result
}

// inputError marks a failure to read an input artifact (the coordinator runs its producer
// again).
type inputError struct {
	code protocol.Code
	ref  protocol.Ref
	err  error
}

func (e *inputError) Error() string { return e.err.Error() }

// execute runs one task and returns its result (with Error set when it failed).
func (w *Worker) execute(ctx context.Context, ls *loadedShard, t protocol.Task) protocol.Result {
	tr := &taskRun{w: w, t: t, res: protocol.Result{Head: protocol.NewHead(), TaskKey: t.TaskKey, Attempt: t.Attempt, Worker: w.cfg.ID}}
	var err error
	switch t.Kind {
	case protocol.StepCalibrate:
		err = tr.calibrate(ctx, ls)
	case protocol.StepWeightOnly:
		err = tr.weightOnly(ctx, ls)
	case protocol.StepJacobi, protocol.StepSweep:
		err = tr.solve(ctx, ls)
	default:
		err = fmt.Errorf("unknown step kind %q", t.Kind)
	}
	if err != nil {
		tr.res.Outputs = protocol.Outputs{}
		var ie *inputError
		switch {
		case errors.As(err, &ie):
			ref := ie.ref
			tr.res.Error = &protocol.Error{Code: ie.code, Message: fmt.Sprintf("job %s task %s attempt %d: %v", t.Job, t.TaskKey, t.Attempt, err), Ref: &ref}
		case errors.Is(err, protocol.ErrUnavailable):
			// NATS or the store failed the task: it runs again, not counted as a failure.
			tr.res.Error = protocol.Errorf(protocol.CodeUnavailable, "job %s task %s attempt %d on %s: %v", t.Job, t.TaskKey, t.Attempt, w.cfg.ID, err)
		default:
			tr.res.Error = protocol.Errorf(protocol.CodeTaskFailed, "job %s task %s attempt %d on %s: %v", t.Job, t.TaskKey, t.Attempt, w.cfg.ID, err)
		}
	}
	return tr.res
}

// get reads and verifies an input artifact. A store that did not answer is not a verdict on the
// artifact: that error stays ErrUnavailable.
func (tr *taskRun) get(ctx context.Context, what string, ref protocol.Ref, kind protocol.Kind) ([]byte, error) {
	k, content, err := tr.w.cfg.Store.Get(ctx, tr.t.Job, ref)
	switch {
	case errors.Is(err, artifact.ErrNotFound):
		return nil, &inputError{code: protocol.CodeInputMissing, ref: ref, err: fmt.Errorf("%s %s: %w", what, ref, err)}
	case err != nil && (ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, protocol.ErrUnavailable)):
		return nil, fmt.Errorf("%s %s: %w", what, ref, err)
	case err != nil:
		return nil, &inputError{code: protocol.CodeInputCorrupt, ref: ref, err: fmt.Errorf("%s %s: %w", what, ref, err)}
	case k != kind:
		return nil, &inputError{code: protocol.CodeInputCorrupt, ref: ref, err: fmt.Errorf("%s %s is a %s artifact, want %s", what, ref, k, kind)}
	}
	tr.res.Stats.BytesIn += int64(len(content))
	return content, nil
}

// put stores an output artifact.
func (tr *taskRun) put(ctx context.Context, kind protocol.Kind, content []byte) (protocol.Ref, error) {
	ref, err := tr.w.cfg.Store.Put(ctx, tr.t.Job, kind, content)
	if err == nil {
		tr.res.Stats.BytesOut += int64(len(content))
	}
	return ref, err
}

// streams reads a rows artifact as the wire forms of the batches' states.
func (tr *taskRun) streams(ctx context.Context, what string, ref protocol.Ref) (shard.Streams, error) {
	if ref.IsZero() {
		return nil, nil
	}
	content, err := tr.get(ctx, what, ref, protocol.KindRows)
	if err != nil {
		return nil, err
	}
	bs, err := protocol.DecodeRows(content)
	if err != nil {
		return nil, &inputError{code: protocol.CodeInputCorrupt, ref: ref, err: fmt.Errorf("%s %s: %w", what, ref, err)}
	}
	out := make(shard.Streams, len(bs))
	for i, b := range bs {
		out[i] = model.Wire{Width: b.Width, Lens: b.Lens, Starts: b.Start, Data: b.Data}
	}
	return out, nil
}

// putStreams stores streams as a rows artifact.
func (tr *taskRun) putStreams(ctx context.Context, s shard.Streams, batches []shard.Batch) (protocol.Ref, error) {
	bs := make([]protocol.Batch, len(s))
	for i, w := range s {
		bs[i] = protocol.Batch{Task: batches[i].Task, Width: w.Width, Lens: w.Lens, Start: w.Starts, Data: w.Data}
	}
	content, err := protocol.EncodeRows(bs)
	if err != nil {
		return protocol.Ref{}, err
	}
	return tr.put(ctx, protocol.KindRows, content)
}

// batches reads the calibration sequences and cuts them into the job's batches.
func (tr *taskRun) batches(ctx context.Context, ls *loadedShard) ([]shard.Batch, error) {
	ref := tr.t.Inputs.Sequences
	content, err := tr.get(ctx, "calibration sequences", ref, protocol.KindSequences)
	if err != nil {
		return nil, err
	}
	seqs, err := protocol.DecodeSequences(content)
	if err != nil {
		return nil, &inputError{code: protocol.CodeInputCorrupt, ref: ref, err: fmt.Errorf("calibration sequences %s: %w", ref, err)}
	}
	return shard.MakeBatches(seqs, ls.shard.BatchSize()), nil
}

// solve runs a jacobi or sweep step.
func (tr *taskRun) solve(ctx context.Context, ls *loadedShard) error {
	t := tr.t
	batches, err := tr.batches(ctx, ls)
	if err != nil {
		return err
	}
	in := shard.StepInput{Batches: batches}
	if in.T, err = tr.streams(ctx, "task stream", t.Inputs.T); err != nil {
		return err
	}
	if in.M, err = tr.streams(ctx, "merged stream", t.Inputs.M); err != nil {
		return err
	}
	if !t.Inputs.Prev.IsZero() {
		content, err := tr.get(ctx, "factors of the previous solve", t.Inputs.Prev, protocol.KindFactors)
		if err != nil {
			return err
		}
		if in.Prev, err = mergejob.DecodeUpdates(content); err != nil {
			return &inputError{code: protocol.CodeInputCorrupt, ref: t.Inputs.Prev, err: err}
		}
	}
	var out shard.StepOutput
	if t.Kind == protocol.StepSweep {
		out, err = ls.shard.Sweep(ctx, in)
	} else {
		out, err = ls.shard.Jacobi(ctx, t.Solve, in)
	}
	if err != nil {
		return err
	}
	return tr.report(ctx, batches, out)
}

// report stores a solve step's outputs and fills the result.
func (tr *taskRun) report(ctx context.Context, batches []shard.Batch, out shard.StepOutput) error {
	last := tr.t.Shard == tr.t.Shards-1
	o := &tr.res.Outputs
	var err error
	if !last && out.T != nil {
		if o.T, err = tr.putStreams(ctx, out.T, batches); err != nil {
			return err
		}
	}
	if !last && out.M != nil {
		if o.M, err = tr.putStreams(ctx, out.M, batches); err != nil {
			return err
		}
	}
	if err := tr.putFactors(ctx, out.Updates); err != nil {
		return err
	}
	recs, err := mergejob.EncodeRecords(mergejob.StepRecords{Sites: out.Records, CaptureSeconds: out.CaptureSeconds,
		SolveSeconds: out.SolveSeconds, RefineSeconds: out.RefineSeconds, Layers: out.Layers})
	if err != nil {
		return err
	}
	if o.Records, err = tr.put(ctx, protocol.KindFactors, recs); err != nil {
		return err
	}
	tr.res.Stats.CaptureSeconds, tr.res.Stats.SolveSeconds = out.CaptureSeconds, out.SolveSeconds
	for _, r := range out.Records {
		if r.RelChange != nil && (tr.res.Stats.MaxRelChange == nil || *r.RelChange > *tr.res.Stats.MaxRelChange) {
			v := *r.RelChange
			tr.res.Stats.MaxRelChange = &v
		}
	}
	return nil
}

func (tr *taskRun) putFactors(ctx context.Context, up shard.Updates) error {
	content, err := mergejob.EncodeUpdates(up)
	if err != nil {
		return err
	}
	tr.res.Outputs.Factors, err = tr.put(ctx, protocol.KindFactors, content)
	return err
}

// weightOnly merges the shard's modules from the adapters alone.
func (tr *taskRun) weightOnly(ctx context.Context, ls *loadedShard) error {
	up, err := ls.shard.WeightOnly()
	if err != nil {
		return err
	}
	return tr.putFactors(ctx, up)
}
