package coordinator

import (
	"errors"
	"fmt"
	"sort"

	"github.com/iteris-dev/iteris/protocol"
)

// Sentinel errors of the state machine. Apply returns them (wrapped, naming the job, task and
// attempt) for commands that change nothing; they are not failures of the state machine.
var (
	// ErrUnknownJob is returned for a command naming a job the state does not hold.
	ErrUnknownJob = errors.New("unknown job")
	// ErrStale is returned for a result or failure of an attempt that is no longer current, or of
	// a task that is already done.
	ErrStale = errors.New("stale attempt")
	// ErrConflict is returned for a command that does not fit the state (a job id twice, a
	// worker assigned twice, a task dispatched out of order).
	ErrConflict = errors.New("command conflicts with the state")
	// ErrBadCommand is returned for a command that does not decode or validate.
	ErrBadCommand = errors.New("invalid command")
)

// JobState is the lifecycle of a job.
type JobState string

// The job states.
const (
	// JobQueued waits for enough free workers.
	JobQueued JobState = "queued"
	// JobRunning has a plan and workers.
	JobRunning JobState = "running"
	// JobDone has its output files.
	JobDone JobState = "done"
	// JobFailed stopped with an error.
	JobFailed JobState = "failed"
	// JobCanceled was canceled by a user.
	JobCanceled JobState = "canceled"
)

// Ended reports whether the state is final.
func (s JobState) Ended() bool { return s == JobDone || s == JobFailed || s == JobCanceled }

// TaskState is the lifecycle of one task (a step of the plan on one shard).
type TaskState string

// The task states.
const (
	// TaskPending waits for its inputs (or for a new attempt).
	TaskPending TaskState = "pending"
	// TaskDispatched has an attempt on the task stream.
	TaskDispatched TaskState = "dispatched"
	// TaskDone has a committed result.
	TaskDone TaskState = "done"
	// TaskSkipped will not run (jacobi stopped early at its tolerance).
	TaskSkipped TaskState = "skipped"
)

// Step is one step of a plan.
type Step struct {
	// Kind is what the step does; Solve numbers jacobi solves from 1.
	Kind  protocol.StepKind `json:"kind"`
	Solve int               `json:"solve,omitempty"`
}

// String names the step ("sweep", "jacobi 3").
func (s Step) String() string {
	if s.Kind == protocol.StepJacobi {
		return fmt.Sprintf("jacobi %d", s.Solve)
	}
	return string(s.Kind)
}

// ShardPlan is one shard of a plan: layers [Lo, Hi) and the memory it needs.
type ShardPlan struct {
	Lo     int   `json:"lo"`
	Hi     int   `json:"hi"`
	Memory int64 `json:"memory"`
}

// Plan is a job's cut into shards and its steps (every step runs on every shard).
type Plan struct {
	Shards []ShardPlan `json:"shards"`
	Steps  []Step      `json:"steps"`
	// Tolerance stops jacobi when a solve's largest relative change falls below it (0: off).
	Tolerance float64 `json:"tolerance,omitempty"`
}

// Validate checks the plan's shape.
func (p Plan) Validate() error {
	if len(p.Shards) == 0 || len(p.Steps) == 0 {
		return fmt.Errorf("%w: plan with %d shards and %d steps", ErrBadCommand, len(p.Shards), len(p.Steps))
	}
	for i, s := range p.Shards {
		if s.Lo < 0 || s.Hi <= s.Lo || (i > 0 && s.Lo != p.Shards[i-1].Hi) || (i == 0 && s.Lo != 0) {
			return fmt.Errorf("%w: plan shard %d has layers [%d, %d)", ErrBadCommand, i, s.Lo, s.Hi)
		}
	}
	for i, s := range p.Steps {
		if !s.Kind.Valid() || (s.Kind == protocol.StepJacobi) != (s.Solve > 0) {
			return fmt.Errorf("%w: plan step %d is %q solve %d", ErrBadCommand, i, s.Kind, s.Solve)
		}
	}
	return nil
}

// Task is one task's replicated state.
type Task struct {
	State TaskState `json:"state"`
	// Attempt is the current attempt (0 before the first dispatch).
	Attempt int `json:"attempt"`
	// DispatchedAt and LeaseUntil bound the current attempt (Unix ms, the leader's clock).
	// LeaseUntil 0 on a dispatched task means its lease was revoked: the worker holding its shard
	// was lost or restarted, so the attempt runs nowhere.
	DispatchedAt int64 `json:"dispatched_at,omitempty"`
	LeaseUntil   int64 `json:"lease_until,omitempty"`
	// Worker reported the committed result.
	Worker string `json:"worker,omitempty"`
	// Outputs and Stats are the committed result's.
	Outputs protocol.Outputs `json:"outputs"`
	Stats   protocol.Stats   `json:"stats"`
	// Failures counts failed attempts; LastError is the latest failure's message.
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Retries counts attempts that ended without counting as failures: the cluster was
	// unavailable to them, or the task ran again because an artifact it had produced was found
	// corrupt or missing.
	Retries int `json:"retries,omitempty"`
}

// ShardHolder says which worker holds a shard of a running job.
type ShardHolder struct {
	Worker string `json:"worker,omitempty"`
	Loaded bool   `json:"loaded"`
}

// Event is one entry of a job's history: who dispatched or committed what, when.
type Event struct {
	At      int64  `json:"at"`
	Leader  string `json:"leader,omitempty"`
	Type    string `json:"type"`
	Step    int    `json:"step"`
	Shard   int    `json:"shard"`
	Attempt int    `json:"attempt"`
	Worker  string `json:"worker,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Job is one merge job's replicated state.
type Job struct {
	ID    string   `json:"id"`
	State JobState `json:"state"`
	// Spec is what was submitted, and what the leader derived from it at validation.
	Spec JobSpec `json:"spec"`
	// Plan is set when the job starts.
	Plan   Plan          `json:"plan"`
	Tasks  [][]*Task     `json:"tasks,omitempty"` // [step][shard]
	Shards []ShardHolder `json:"shards,omitempty"`
	// Files is the output-files artifact of a done job.
	Files protocol.Ref `json:"files,omitzero"`
	// Error says why the job failed.
	Error     string  `json:"error,omitempty"`
	Submitted int64   `json:"submitted"`
	Started   int64   `json:"started,omitempty"`
	Finished  int64   `json:"finished,omitempty"`
	Events    []Event `json:"events,omitempty"`
}

// JobSpec is a submitted job as validated by the leader.
type JobSpec struct {
	// Config, Path, Dir and Command are the submit request's.
	Config  []byte `json:"config"`
	Path    string `json:"path"`
	Dir     string `json:"dir"`
	Command string `json:"command,omitempty"`
	// Hash is the sha256 of the config and its directory.
	Hash string `json:"hash"`
	// Method and Schedule describe the merge (status, report).
	Method   string `json:"method"`
	Schedule string `json:"schedule,omitempty"`
	// Workers is how many free workers the job waits for (at least 1).
	Workers int `json:"workers"`
	// Layers is the base model's number of decoder layers.
	Layers int `json:"layers"`
	// Steps are the plan's steps, known at validation (the shards are cut at start).
	Steps []Step `json:"steps"`
	// Tolerance is the jacobi early stop.
	Tolerance float64 `json:"tolerance,omitempty"`
	// Prompts holds the calibration items (StepCalibrate), Sequences the finished calibration
	// sequences when no completion is needed.
	Prompts   protocol.Ref `json:"prompts,omitzero"`
	Sequences protocol.Ref `json:"sequences,omitzero"`
	// Footprint is the plan input the leader cuts shards from (opaque here).
	Footprint []byte `json:"footprint,omitempty"`
}

// Worker is a registered worker.
type Worker struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Memory  int64  `json:"memory"`
	Alive   bool   `json:"alive"`
	// Job and Shard say what the worker holds (Job "" when free).
	Job   string `json:"job,omitempty"`
	Shard int    `json:"shard"`
	// Since is when the worker (re)registered.
	Since int64 `json:"since"`
}

// State is the whole replicated state of a coordinator group. It changes only through Apply.
type State struct {
	Jobs    map[string]*Job    `json:"jobs"`
	Order   []string           `json:"order"`
	Workers map[string]*Worker `json:"workers"`
	// Index is the raft index of the last applied command; Now the latest command time.
	Index uint64 `json:"index"`
	Now   int64  `json:"now"`
}

// NewState returns an empty state.
func NewState() *State {
	return &State{Jobs: map[string]*Job{}, Workers: map[string]*Worker{}}
}

// Job returns a job by id.
func (s *State) Job(id string) (*Job, bool) {
	j, ok := s.Jobs[id]
	return j, ok
}

// WorkerIDs returns the registered workers' ids, sorted.
func (s *State) WorkerIDs() []string {
	ids := make([]string, 0, len(s.Workers))
	for id := range s.Workers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// task returns the task of step i on shard s.
func (j *Job) task(i, s int) (*Task, error) {
	if i < 0 || i >= len(j.Tasks) || s < 0 || s >= len(j.Tasks[i]) {
		return nil, fmt.Errorf("%w: job %s has no task %d/%d", ErrConflict, j.ID, i, s)
	}
	return j.Tasks[i][s], nil
}

// Counts returns the number of done (or skipped) tasks and of all tasks.
func (j *Job) Counts() (done, all int) {
	for _, ts := range j.Tasks {
		for _, t := range ts {
			all++
			if t.State == TaskDone || t.State == TaskSkipped {
				done++
			}
		}
	}
	return done, all
}

// CurrentStep returns the index of the first step with a task not done (len(Steps) when all are).
func (j *Job) CurrentStep() int {
	for i, ts := range j.Tasks {
		for _, t := range ts {
			if t.State != TaskDone && t.State != TaskSkipped {
				return i
			}
		}
	}
	return len(j.Tasks)
}
