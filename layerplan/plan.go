package layerplan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// PlanVersion is the version of the Plan JSON this package writes and reads.
const PlanVersion = 1

// MaxPlanBytes bounds the JSON that Decode accepts.
const MaxPlanBytes = 16 << 20

// Plan is a merge cut into shards on workers, with the steps of its schedule. It is a value:
// Build computes it from its Input and Workers alone, its JSON has a fixed field order and no
// floating-point numbers, and Hash identifies it.
type Plan struct {
	// Version is PlanVersion.
	Version int `json:"version"`
	// Input and Workers are what the plan was computed from.
	Input   Input    `json:"input"`
	Workers []Worker `json:"workers"`
	// Levels are the dependency levels in order.
	Levels []Level `json:"levels"`
	// Shards are the layer ranges in order, each on one worker.
	Shards []Shard `json:"shards"`
	// Stages is the number of wavefront stages; Steps are ordered by stage, then shard.
	Stages int    `json:"stages"`
	Steps  []Step `json:"steps"`
	// BytesMoved is the sum of every step's Bytes.
	BytesMoved int64 `json:"bytes_moved"`
	// SingleProcess is the footprint of one process holding the whole model.
	SingleProcess Footprint `json:"single_process"`
	// Notes explain choices a reader may not expect (workers left out, shards without sites).
	Notes []string `json:"notes,omitempty"`
}

// Build validates the input and the workers, cuts the model and lists the steps. A model that
// does not fit the workers is refused with a *FitError.
func Build(in Input, workers []Worker) (*Plan, error) {
	e, err := NewEstimator(in)
	if err != nil {
		return nil, err
	}
	shards, notes, err := e.Cut(workers)
	if err != nil {
		return nil, err
	}
	steps, err := e.Steps(shards)
	if err != nil {
		return nil, err
	}
	p := &Plan{Version: PlanVersion, Input: e.Input(), Workers: append([]Worker(nil), workers...), Levels: e.Levels(),
		Shards: shards, Steps: steps, SingleProcess: e.SingleProcess(), Notes: notes}
	for _, s := range steps {
		p.Stages = max(p.Stages, s.Stage+1)
		p.BytesMoved = add(p.BytesMoved, s.Bytes)
	}
	return p, nil
}

// Encode returns the plan's canonical JSON: compact, fields in declaration order.
func (p *Plan) Encode() ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %v", ErrPlan, err)
	}
	return b, nil
}

// Hash returns the hex sha256 of the plan's canonical JSON. A Plan holds only strings,
// integers, booleans and slices of them, so its encoding cannot fail; if it ever did, Hash
// returns "" (which no valid plan hash equals).
func (p *Plan) Hash() string {
	b, err := p.Encode()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Decode parses a plan's JSON strictly (no unknown field, one value, at most MaxPlanBytes) and
// checks it with Validate.
func Decode(b []byte) (*Plan, error) {
	if len(b) > MaxPlanBytes {
		return nil, fmt.Errorf("%w: %d bytes of JSON, at most %d", ErrPlan, len(b), MaxPlanBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: not a plan JSON object: %v", ErrPlan, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the plan object", ErrPlan)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks a plan's structure: its input and workers, shards that cover the layers in
// order on distinct workers within their memory, and steps that depend only on earlier stages
// and send to existing shards. Verify also recomputes it.
func (p *Plan) Validate() error {
	if p.Version != PlanVersion {
		return fmt.Errorf("%w: version %d (this build reads %d)", ErrPlan, p.Version, PlanVersion)
	}
	if err := p.Input.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrPlan, err)
	}
	if err := validateWorkers(p.Workers); err != nil {
		return fmt.Errorf("%w: %w", ErrPlan, err)
	}
	if err := p.validateShards(); err != nil {
		return err
	}
	return p.validateSteps()
}

func (p *Plan) validateShards() error {
	if len(p.Shards) == 0 {
		return fmt.Errorf("%w: no shards", ErrPlan)
	}
	next, lastWorker := 0, -1
	for i, s := range p.Shards {
		if s.Index != i || s.Lo != next || s.Hi <= s.Lo {
			return fmt.Errorf("%w: shards[%d] is #%d [%d, %d), want #%d starting at layer %d", ErrPlan, i, s.Index, s.Lo, s.Hi, i, next)
		}
		if s.Worker <= lastWorker || s.Worker >= len(p.Workers) {
			return fmt.Errorf("%w: shards[%d]: worker %d (want %d..%d, after the previous shard's)", ErrPlan, i, s.Worker, lastWorker+1, len(p.Workers)-1)
		}
		if s.Footprint.Peak < 0 || s.Footprint.Peak > p.Workers[s.Worker].Memory {
			return fmt.Errorf("%w: shards[%d]: peak %d bytes, worker %s has %d", ErrPlan, i, s.Footprint.Peak, p.Workers[s.Worker].ID, p.Workers[s.Worker].Memory)
		}
		next, lastWorker = s.Hi, s.Worker
	}
	if next != p.Input.Model.Layers {
		return fmt.Errorf("%w: shards end at layer %d, the model has %d", ErrPlan, next, p.Input.Model.Layers)
	}
	return nil
}

func (p *Plan) validateSteps() error {
	if len(p.Steps) > MaxSteps {
		return fmt.Errorf("%w: %d steps (at most %d)", ErrPlan, len(p.Steps), MaxSteps)
	}
	if p.Stages < 0 || p.Stages > MaxSteps {
		return fmt.Errorf("%w: %d stages", ErrPlan, p.Stages)
	}
	for i, s := range p.Steps {
		switch s.Kind {
		case StepCalibrate, StepJacobi, StepSweep, StepWeightOnly:
		default:
			return fmt.Errorf("%w: steps[%d]: kind %q", ErrPlan, i, s.Kind)
		}
		if s.Shard < 0 || s.Shard >= len(p.Shards) || s.Stage < 0 || s.Stage >= p.Stages {
			return fmt.Errorf("%w: steps[%d]: shard %d, stage %d (want < %d shards, < %d stages)", ErrPlan, i, s.Shard, s.Stage, len(p.Shards), p.Stages)
		}
		for _, d := range s.After {
			if d < 0 || d >= i || p.Steps[d].Stage >= s.Stage {
				return fmt.Errorf("%w: steps[%d] (%s) depends on step %d, which is not an earlier stage", ErrPlan, i, s.Name(), d)
			}
		}
		var b int64
		for _, t := range s.Sends {
			if t.To < Coordinator || t.To >= len(p.Shards) || t.Bytes < 0 || t.Bytes > Unbounded {
				return fmt.Errorf("%w: steps[%d] (%s): transfer to %d of %d bytes", ErrPlan, i, s.Name(), t.To, t.Bytes)
			}
			b = add(b, t.Bytes)
		}
		if b != s.Bytes {
			return fmt.Errorf("%w: steps[%d] (%s): bytes %d, its transfers sum to %d", ErrPlan, i, s.Name(), s.Bytes, b)
		}
	}
	return nil
}

// Verify recomputes the plan from its Input and Workers and reports whether it is the same
// plan, byte for byte.
func (p *Plan) Verify() error {
	q, err := Build(p.Input, p.Workers)
	if err != nil {
		return fmt.Errorf("%w: its input does not plan: %w", ErrPlan, err)
	}
	if got, want := p.Hash(), q.Hash(); got != want {
		return fmt.Errorf("%w: hash %s, its input plans to %s", ErrPlan, got, want)
	}
	return nil
}
