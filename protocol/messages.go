package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// MessageVersion is the version of the JSON messages of this build. A message of another version
// is refused with ErrMessageVersion, naming both versions.
const MessageVersion = 1

// MaxMessageSize bounds every JSON message a decoder accepts (a submit carries the config, at
// most 4 MiB, plus its framing).
const MaxMessageSize = 8 << 20

// StepKind names a kind of step of a job's plan: the typed vocabulary shared by the plan, the
// state machine, the tasks and the results.
type StepKind string

// The step kinds.
const (
	// StepCalibrate generates the calibration completions, as a pipeline through the shards.
	StepCalibrate StepKind = "calibrate"
	// StepWeightOnly merges a shard's sites from the adapters' weights alone.
	StepWeightOnly StepKind = "weightonly"
	// StepJacobi is one jacobi solve (Solve = k) of a shard; RegMean is the single solve 1.
	StepJacobi StepKind = "jacobi"
	// StepSweep is the sweep of a shard.
	StepSweep StepKind = "sweep"
)

// Valid reports whether k is a step kind of this build.
func (k StepKind) Valid() bool {
	switch k {
	case StepCalibrate, StepWeightOnly, StepJacobi, StepSweep:
		return true
	}
	return false
}

// message is implemented by every JSON message: its version field and its own checks.
type message interface {
	version() int
	validate() error
}

// Head is the version field every message starts with.
type Head struct {
	// V is MessageVersion.
	V int `json:"v"`
}

func (h Head) version() int { return h.V }

// NewHead returns the head of a message of this build.
func NewHead() Head { return Head{V: MessageVersion} }

// Encode returns the JSON encoding of a message.
func Encode(m any) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		// Messages hold only plain values; this cannot fail.
		panic(fmt.Sprintf("protocol: encoding %T: %v", m, err))
	}
	return b
}

// decode decodes one JSON message strictly: a size limit, no unknown fields, nothing after the
// value, the version, then the message's own checks. Errors name the message type.
func decode[M message](name string, b []byte) (M, error) {
	var m M
	if len(b) > MaxMessageSize {
		return m, fmt.Errorf("%s: %w: %d bytes (at most %d)", name, ErrMessage, len(b), MaxMessageSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%s: %w: %v", name, ErrMessage, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return m, fmt.Errorf("%s: %w: data after the message", name, ErrMessage)
	}
	if v := m.version(); v != MessageVersion {
		return m, fmt.Errorf("%s: %w: version %d (this build speaks %d)", name, ErrMessageVersion, v, MessageVersion)
	}
	if err := m.validate(); err != nil {
		return m, fmt.Errorf("%s: %w: %v", name, ErrMessage, err)
	}
	return m, nil
}

// MaxNameLen bounds worker and coordinator ids and other names in messages.
const MaxNameLen = 128

// ValidateName checks a worker or node id: 1 to MaxNameLen characters of [A-Za-z0-9_.-], so it is
// safe in a subject token and a file name.
func ValidateName(what, s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("%s %q: want 1-%d characters", what, truncate(s, 80), MaxNameLen)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_.-", c)) {
			return fmt.Errorf("%s %q: character %q is not one of A-Z a-z 0-9 _ . -", what, truncate(s, 80), c)
		}
	}
	return nil
}

// TaskKey names one task of a job: a step of its plan on one shard.
type TaskKey struct {
	// Job is the job id.
	Job string `json:"job"`
	// Step indexes the job plan's steps.
	Step int `json:"step"`
	// Shard indexes the plan's shards.
	Shard int `json:"shard"`
}

// String returns "job/step/shard".
func (k TaskKey) String() string { return fmt.Sprintf("%s/%d/%d", k.Job, k.Step, k.Shard) }

func (k TaskKey) validate() error {
	if err := ValidateJobID(k.Job); err != nil {
		return err
	}
	if k.Step < 0 || k.Step > 1<<20 || k.Shard < 0 || k.Shard > 1<<16 {
		return fmt.Errorf("task %s: step or shard out of range", k)
	}
	return nil
}

// Inputs are the artifacts a task reads (zero refs are absent).
type Inputs struct {
	// Prompts are the calibration prompts (StepCalibrate).
	Prompts Ref `json:"prompts,omitzero"`
	// Sequences are the calibration sequences (the first shard of a data-aware step).
	Sequences Ref `json:"sequences,omitzero"`
	// T and M are the task and merged streams entering the shard.
	T Ref `json:"t,omitzero"`
	M Ref `json:"m,omitzero"`
	// Prev are the shard's factors of the previous jacobi solve.
	Prev Ref `json:"prev,omitzero"`
}

// Task is one attempt of one task, published on the shard's task subject.
type Task struct {
	Head
	TaskKey
	// Kind and Solve say what the step does (Solve: the jacobi solve number).
	Kind  StepKind `json:"kind"`
	Solve int      `json:"solve,omitempty"`
	// Attempt numbers the attempts of this task from 1; a result of another attempt is stale.
	Attempt int `json:"attempt"`
	// Inputs are the artifacts the task reads.
	Inputs Inputs `json:"inputs"`
	// Shards is the number of shards of the job (a calibrate task talks to its neighbours).
	Shards int `json:"shards"`
}

func (t Task) validate() error {
	if err := t.TaskKey.validate(); err != nil {
		return err
	}
	if !t.Kind.Valid() {
		return fmt.Errorf("task %s: unknown step kind %q", t.TaskKey, t.Kind)
	}
	if t.Attempt < 1 || t.Solve < 0 || (t.Kind == StepJacobi) != (t.Solve > 0) {
		return fmt.Errorf("task %s: attempt %d, solve %d do not fit kind %s", t.TaskKey, t.Attempt, t.Solve, t.Kind)
	}
	if t.Shards < 1 || t.Shard >= t.Shards {
		return fmt.Errorf("task %s: shard %d of %d", t.TaskKey, t.Shard, t.Shards)
	}
	return nil
}

// DecodeTask decodes a task message.
func DecodeTask(b []byte) (Task, error) { return decode[Task]("task", b) }

// Outputs are the artifacts a task wrote (zero refs are absent).
type Outputs struct {
	// T and M are the streams leaving the shard.
	T Ref `json:"t,omitzero"`
	M Ref `json:"m,omitzero"`
	// Factors are the shard's solved factors and site records.
	Factors Ref `json:"factors,omitzero"`
	// Sequences are the calibration sequences (StepCalibrate, first shard).
	Sequences Ref `json:"sequences,omitzero"`
	// Records are the site records of the step (a factors artifact without sites), for the
	// merge report.
	Records Ref `json:"records,omitzero"`
}

// Stats describe a task attempt's work.
type Stats struct {
	// Seconds is the attempt's wall time; CaptureSeconds and SolveSeconds its two parts.
	Seconds        float64 `json:"seconds"`
	CaptureSeconds float64 `json:"capture_seconds,omitempty"`
	SolveSeconds   float64 `json:"solve_seconds,omitempty"`
	// BytesIn and BytesOut count the artifact bytes read and written.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// MaxRelChange is the largest relative change of the shard's sites (jacobi solve > 1).
	MaxRelChange *float64 `json:"max_rel_change,omitempty"`
	// BLAS names the worker's BLAS backend and kernel core.
	BLAS string `json:"blas,omitempty"`
}

// Result is what a worker reports for a task attempt, on the job's result subject.
type Result struct {
	Head
	TaskKey
	// Attempt is the attempt the result is for.
	Attempt int `json:"attempt"`
	// Worker is the reporting worker's id.
	Worker string `json:"worker"`
	// Outputs are the artifacts written (absent on error).
	Outputs Outputs `json:"outputs"`
	// Stats describe the work.
	Stats Stats `json:"stats"`
	// Error is set when the attempt failed.
	Error *Error `json:"error,omitempty"`
}

func (r Result) validate() error {
	if err := r.TaskKey.validate(); err != nil {
		return err
	}
	if r.Attempt < 1 {
		return fmt.Errorf("result %s: attempt %d", r.TaskKey, r.Attempt)
	}
	if err := ValidateName("worker", r.Worker); err != nil {
		return fmt.Errorf("result %s: %v", r.TaskKey, err)
	}
	if r.Stats.Seconds < 0 || r.Stats.BytesIn < 0 || r.Stats.BytesOut < 0 {
		return fmt.Errorf("result %s: negative stats", r.TaskKey)
	}
	return nil
}

// DecodeResult decodes a result message.
func DecodeResult(b []byte) (Result, error) { return decode[Result]("result", b) }
