package layerplan

import (
	"fmt"
	"slices"
)

// StepKind names a step of a schedule (docs/cluster-plan.md's step table).
type StepKind string

// The steps. Every step is one task for one shard.
const (
	// StepCalibrate generates the prompts' completions as a pipeline through every shard (a
	// ring: hidden states go forward, the new tokens from the last shard back to the first).
	StepCalibrate StepKind = "calibrate"
	// StepJacobi is solve k of the jacobi schedule on one shard (k = 1 is also RegMean).
	StepJacobi StepKind = "jacobi"
	// StepSweep is the sweep's pass over one shard.
	StepSweep StepKind = "sweep"
	// StepWeightOnly merges one shard's sites from the adapters alone.
	StepWeightOnly StepKind = "weightonly"
)

// ArtifactKind names what a transfer carries.
type ArtifactKind string

// The artifacts a step sends.
const (
	// ArtifactRows is a residual stream's rows: rows x hidden float32.
	ArtifactRows ArtifactKind = "rows"
	// ArtifactFactors is the merged sites' B (m x k) and A (k x n) in float64.
	ArtifactFactors ArtifactKind = "factors"
	// ArtifactSequences is the calibration token ids of every task (4 bytes per id).
	ArtifactSequences ArtifactKind = "sequences"
	// ArtifactRing is calibration's per-generation-step messages: the new rows' hidden states
	// to the next shard, or the new token ids (4 bytes each) from the last shard to the first.
	ArtifactRing ArtifactKind = "ring"
)

// Stream names a residual stream.
type Stream string

// The streams.
const (
	// StreamTask is the task streams (base + adapter i on task i's sequences).
	StreamTask Stream = "T"
	// StreamMerged is the merged model's stream on the same sequences.
	StreamMerged Stream = "M"
)

// Coordinator is Transfer.To for a transfer to the coordinator.
const Coordinator = -1

// Transfer is bytes a step sends.
type Transfer struct {
	// Artifact is what is sent; Stream which residual stream, for rows.
	Artifact ArtifactKind `json:"artifact"`
	Stream   Stream       `json:"stream,omitempty"`
	// To is the receiving shard's index, or Coordinator.
	To int `json:"to"`
	// Bytes is the payload's size before any compression.
	Bytes int64 `json:"bytes"`
}

// Step is one task of the plan.
type Step struct {
	// Kind is the step's kind.
	Kind StepKind `json:"kind"`
	// Solve is the jacobi solve k (from 1), 1 for the sweep, 0 otherwise.
	Solve int `json:"solve,omitempty"`
	// Shard is the shard's index.
	Shard int `json:"shard"`
	// Stage is the step's place in the wavefront: every step of a stage can run at once once
	// the earlier stages are done. Calibration is stage 0 when present; jacobi step (k, s) is
	// stage offset + k - 1 + s, the sweep's step s is offset + s (offset 1 after calibration).
	Stage int `json:"stage"`
	// After lists the indexes (in Plan.Steps) of the steps whose results this step consumes.
	After []int `json:"after,omitempty"`
	// Sends lists what the step's result moves; Bytes is their sum.
	Sends []Transfer `json:"sends,omitempty"`
	Bytes int64      `json:"bytes"`
}

// Name returns "calibrate shard 0", "jacobi k=2 shard 1", "sweep shard 3", "weightonly shard 0".
func (s Step) Name() string {
	if s.Kind == StepJacobi {
		return fmt.Sprintf("jacobi k=%d shard %d", s.Solve, s.Shard)
	}
	return fmt.Sprintf("%s shard %d", s.Kind, s.Shard)
}

// mergeShards returns how many leading shards run data-aware merge steps: those that start at or
// before the last site's layer (the streams need not reach the layers after it).
func (e *Estimator) mergeShards(shards []Shard) int {
	n := 0
	for _, s := range shards {
		if s.Lo <= e.lastSite {
			n++
		}
	}
	return n
}

// ringRows is the rows that calibration runs through the layers: each generated sequence's
// prompt and completion except the last token, which is never fed back.
func (e *Estimator) ringRows() (rows, tokens int64) {
	for _, t := range e.in.Tasks {
		for j, l := range t.Lengths {
			if t.Completions != nil && t.Completions[j] > 0 {
				rows += int64(l - 1)
				tokens += int64(t.Completions[j])
			}
		}
	}
	return rows, tokens
}

// Steps returns the steps of the schedule over shards (as Cut returns them), ordered by stage
// and then shard, so that every step comes after the steps it depends on.
func (e *Estimator) Steps(shards []Shard) ([]Step, error) {
	S, M, g := len(shards), e.mergeShards(shards), e.in.Merge
	total := M * g.Solves
	switch {
	case g.Method == WeightOnly:
		total = S
	case e.calibrate:
		total += S
	}
	if S == 0 || total > MaxSteps {
		return nil, fmt.Errorf("%w: %d shards and %d solves make %d steps (at most %d)", ErrInput, S, g.Solves, total, MaxSteps)
	}
	factors := func(s int) []Transfer {
		b := e.span(shards[s].Lo, shards[s].Hi).factors
		if b == 0 {
			return nil
		}
		return []Transfer{{Artifact: ArtifactFactors, To: Coordinator, Bytes: b}}
	}
	var steps []Step
	if g.Method == WeightOnly {
		for s := range shards {
			if shards[s].Sites > 0 {
				steps = append(steps, Step{Kind: StepWeightOnly, Shard: s, Sends: factors(s)})
			}
		}
		return finishSteps(steps), nil
	}
	if e.calibrate {
		steps = e.calibrateSteps(S)
	}
	return finishSteps(e.mergeSteps(steps, M, factors)), nil
}

// calibrateSteps returns stage 0: one calibrate step per shard.
func (e *Estimator) calibrateSteps(S int) []Step {
	ring, tokens := e.ringRows()
	var steps []Step
	for s := 0; s < S; s++ {
		st := Step{Kind: StepCalibrate, Shard: s}
		if s < S-1 {
			st.Sends = append(st.Sends, Transfer{Artifact: ArtifactRing, To: s + 1, Bytes: mul(ring, int64(e.in.Model.Hidden), 4)})
		} else {
			if S > 1 {
				st.Sends = append(st.Sends, Transfer{Artifact: ArtifactRing, To: 0, Bytes: mul(tokens, 4)})
			}
			st.Sends = append(st.Sends, Transfer{Artifact: ArtifactSequences, To: Coordinator, Bytes: mul(e.rows, 4)})
		}
		steps = append(steps, st)
	}
	return steps
}

// mergeSteps appends the jacobi or sweep steps on the first M shards to the calibration steps
// calib (each (1, 0) step depends on all of them).
func (e *Estimator) mergeSteps(calib []Step, M int, factors func(int) []Transfer) []Step {
	g := e.in.Merge
	off := 0
	if len(calib) > 0 {
		off = 1
	}
	type key struct{ k, s int }
	var order []key
	for k := 1; k <= g.Solves; k++ {
		for s := 0; s < M; s++ {
			order = append(order, key{k, s})
		}
	}
	slices.SortFunc(order, func(a, b key) int {
		if a.k+a.s != b.k+b.s {
			return (a.k + a.s) - (b.k + b.s)
		}
		return a.s - b.s
	})
	rows := mul(e.rows, int64(e.in.Model.Hidden), 4)
	steps := calib
	index := map[key]int{} // the step of solve k on shard s, filled in stage order
	for _, ks := range order {
		k, s := ks.k, ks.s
		st := Step{Kind: StepJacobi, Solve: k, Shard: s, Stage: off + k - 1 + s}
		if g.Schedule == Sweep {
			st.Kind = StepSweep
		}
		switch {
		case s > 0:
			st.After = append(st.After, index[key{k, s - 1}])
		case k == 1:
			for i := range calib {
				st.After = append(st.After, i)
			}
		}
		if k > 1 {
			st.After = append(st.After, index[key{k - 1, s}])
		}
		if s < M-1 {
			if g.Schedule == Sweep || k == 1 {
				st.Sends = append(st.Sends, Transfer{Artifact: ArtifactRows, Stream: StreamTask, To: s + 1, Bytes: rows})
			}
			if g.Schedule == Sweep || k > 1 {
				st.Sends = append(st.Sends, Transfer{Artifact: ArtifactRows, Stream: StreamMerged, To: s + 1, Bytes: rows})
			}
		}
		st.Sends = append(st.Sends, factors(s)...)
		index[ks] = len(steps)
		steps = append(steps, st)
	}
	return steps
}

// finishSteps sums each step's transfers.
func finishSteps(steps []Step) []Step {
	for i := range steps {
		var b int64
		for _, t := range steps[i].Sends {
			b = add(b, t.Bytes)
		}
		steps[i].Bytes = b
	}
	return steps
}
