package protocol

import "fmt"

// Submit asks the leader to run a merge.
type Submit struct {
	Head
	// Config is the merge config (YAML) byte for byte.
	Config []byte `json:"config"`
	// Path is the config's file name as the submitter gave it (messages name it).
	Path string `json:"path"`
	// Dir is the directory relative paths in the config are resolved against, on the cluster's
	// filesystems (the submitter's working directory: a shared volume has the same paths).
	Dir string `json:"dir"`
	// Command is the submitting command line, recorded in the model card.
	Command string `json:"command,omitempty"`
	// Workers, when > 0, is how many workers the job waits for and is cut across (else the
	// config's cluster.workers).
	Workers int `json:"workers,omitempty"`
	// Request, when set, identifies this submission (the client picks it at random): the job id
	// is derived from it, so a submission sent again after a leader change names the job the
	// first one may have created instead of starting a second job.
	Request string `json:"request,omitempty"`
}

func (s Submit) validate() error {
	if len(s.Config) == 0 {
		return fmt.Errorf("empty config")
	}
	if s.Request != "" {
		if err := ValidateName("request id", s.Request); err != nil {
			return err
		}
	}
	if len(s.Path) > 4096 || len(s.Dir) > 4096 || len(s.Command) > 1<<16 {
		return fmt.Errorf("path, dir or command too long")
	}
	if s.Workers < 0 || s.Workers > 1<<16 {
		return fmt.Errorf("workers %d", s.Workers)
	}
	return nil
}

// DecodeSubmit decodes a submit request.
func DecodeSubmit(b []byte) (Submit, error) { return decode[Submit]("submit", b) }

// SubmitReply answers a submit.
type SubmitReply struct {
	Head
	// Job is the new job's id.
	Job string `json:"job,omitempty"`
	// Error is set when the config was refused (CodeInvalidConfig: the same message `iteris
	// merge` gives) or the request could not be served.
	Error *Error `json:"error,omitempty"`
	// Leader names the raft leader.
	Leader string `json:"leader,omitempty"`
}

func (r SubmitReply) validate() error {
	if r.Error == nil {
		return ValidateJobID(r.Job)
	}
	return nil
}

// DecodeSubmitReply decodes a submit reply.
func DecodeSubmitReply(b []byte) (SubmitReply, error) { return decode[SubmitReply]("submit reply", b) }

// JobRequest names a job (status, cancel, fetch); an empty Job in a status request asks for all.
type JobRequest struct {
	Head
	// Job is the job id.
	Job string `json:"job,omitempty"`
	// Events asks a status request for each job's event history (JobStatus.Events).
	Events bool `json:"events,omitempty"`
}

func (r JobRequest) validate() error {
	if r.Job == "" {
		return nil
	}
	return ValidateJobID(r.Job)
}

// DecodeJobRequest decodes a status, cancel or fetch request.
func DecodeJobRequest(b []byte) (JobRequest, error) { return decode[JobRequest]("job request", b) }

// JobStatus describes one job.
type JobStatus struct {
	// Job is the id; State is queued, running, done, failed or canceled.
	Job   string `json:"job"`
	State string `json:"state"`
	// Method and Schedule describe the merge.
	Method   string `json:"method"`
	Schedule string `json:"schedule,omitempty"`
	// StepsDone and Steps count the plan's tasks.
	TasksDone int `json:"tasks_done"`
	Tasks     int `json:"tasks"`
	// Step names the earliest step not yet done.
	Step string `json:"step,omitempty"`
	// Steps are the plan's steps with their tasks done.
	Steps []StepStatus `json:"steps,omitempty"`
	// Shards describe the plan's shards and who holds them.
	Shards []ShardStatus `json:"shards"`
	// Error says why a job failed.
	Error string `json:"error,omitempty"`
	// Submitted and Finished are Unix milliseconds (Finished 0 while running).
	Submitted int64 `json:"submitted"`
	Finished  int64 `json:"finished,omitempty"`
	// Events is the job's history, oldest first (only when the request asked for it).
	Events []JobEvent `json:"events,omitempty"`
}

// JobEvent is one entry of a job's replicated history: which leader dispatched, committed,
// failed or ignored which task attempt, and when a new leader took the job over.
type JobEvent struct {
	// At is the leader's clock (Unix ms); Leader the coordinator that proposed the entry.
	At     int64  `json:"at"`
	Leader string `json:"leader,omitempty"`
	// Type is dispatch, complete, fail, ignored, rerun or takeover.
	Type string `json:"type"`
	// Step, Shard and Attempt name the task attempt (a takeover names the first step not done).
	Step    int `json:"step"`
	Shard   int `json:"shard"`
	Attempt int `json:"attempt"`
	// Worker reported the result; Note says more (a failure's message, why a result was ignored).
	Worker string `json:"worker,omitempty"`
	Note   string `json:"note,omitempty"`
}

// StepStatus is one step of a job's plan.
type StepStatus struct {
	// Kind and Solve say what the step does.
	Kind  StepKind `json:"kind"`
	Solve int      `json:"solve,omitempty"`
	// Done and Tasks count the step's tasks (one per shard); Skipped marks a jacobi solve not run
	// because an earlier one met the tolerance.
	Done    int  `json:"done"`
	Tasks   int  `json:"tasks"`
	Skipped bool `json:"skipped,omitempty"`
}

// ShardStatus is one shard of a job.
type ShardStatus struct {
	// Lo and Hi are the shard's layers.
	Lo int `json:"lo"`
	Hi int `json:"hi"`
	// Worker holds the shard ("" when unassigned); Loaded says it has loaded it.
	Worker string `json:"worker,omitempty"`
	Loaded bool   `json:"loaded"`
}

// WorkerStatus is one registered worker.
type WorkerStatus struct {
	// Worker is the id; Version its iteris version; Memory its budget in bytes.
	Worker  string `json:"worker"`
	Version string `json:"version"`
	Memory  int64  `json:"memory"`
	// Alive says the worker's lease holds; Job and Shard say what it holds.
	Alive bool   `json:"alive"`
	Job   string `json:"job,omitempty"`
	Shard int    `json:"shard"`
}

// StatusReply answers a status request.
type StatusReply struct {
	Head
	// Error is set when the request could not be served.
	Error *Error `json:"error,omitempty"`
	// Leader names the raft leader.
	Leader string `json:"leader,omitempty"`
	// Jobs and Workers describe the cluster.
	Jobs    []JobStatus    `json:"jobs"`
	Workers []WorkerStatus `json:"workers"`
}

func (r StatusReply) validate() error {
	for _, j := range r.Jobs {
		if err := ValidateJobID(j.Job); err != nil {
			return err
		}
	}
	for _, w := range r.Workers {
		if err := ValidateName("worker", w.Worker); err != nil {
			return err
		}
		if w.Job != "" {
			if err := ValidateJobID(w.Job); err != nil {
				return err
			}
		}
	}
	return nil
}

// DecodeStatusReply decodes a status reply.
func DecodeStatusReply(b []byte) (StatusReply, error) { return decode[StatusReply]("status reply", b) }

// FetchReply answers a fetch: the artifact holding a finished job's output files.
type FetchReply struct {
	Head
	// Error is set when the job has no result (CodeNotDone, CodeJobFailed, CodeNotFound).
	Error *Error `json:"error,omitempty"`
	// Leader names the raft leader.
	Leader string `json:"leader,omitempty"`
	// Files is the files artifact (in the job's artifact bucket).
	Files Ref `json:"files,omitzero"`
}

func (r FetchReply) validate() error {
	if r.Error == nil && r.Files.IsZero() {
		return fmt.Errorf("fetch reply without files or error")
	}
	return nil
}

// DecodeFetchReply decodes a fetch reply.
func DecodeFetchReply(b []byte) (FetchReply, error) { return decode[FetchReply]("fetch reply", b) }

// Event is one progress event of a job (core NATS; best effort, for `submit --wait`).
type Event struct {
	Head
	// Job is the job id; Type is phase_start, progress, phase_end, warning, done or failed.
	Job  string `json:"job"`
	Type string `json:"type"`
	// Phase names the phase; Done and Total count its units.
	Phase string `json:"phase,omitempty"`
	Done  int    `json:"done,omitempty"`
	Total int    `json:"total,omitempty"`
	// Message is a warning's or a failure's text.
	Message string `json:"message,omitempty"`
}

func (e Event) validate() error { return ValidateJobID(e.Job) }

// DecodeEvent decodes a progress event.
func DecodeEvent(b []byte) (Event, error) { return decode[Event]("event", b) }
