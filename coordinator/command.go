package coordinator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/iteris-dev/iteris/protocol"
)

// CommandType names a replicated command.
type CommandType string

// The commands of the state machine.
const (
	// CmdSubmit adds a validated job (queued).
	CmdSubmit CommandType = "submit"
	// CmdStart gives a queued job its plan and its workers.
	CmdStart CommandType = "start"
	// CmdRegister adds a worker or marks it alive again.
	CmdRegister CommandType = "register"
	// CmdWorkerLost marks a worker dead and frees its shard for another worker.
	CmdWorkerLost CommandType = "worker_lost"
	// CmdReassign gives a running job's unheld shard to a free worker.
	CmdReassign CommandType = "reassign"
	// CmdLoaded records that a worker has loaded its shard.
	CmdLoaded CommandType = "loaded"
	// CmdDispatch starts a new attempt of a task.
	CmdDispatch CommandType = "dispatch"
	// CmdRenew extends the lease of a task's current attempt.
	CmdRenew CommandType = "renew"
	// CmdComplete commits a task attempt's result.
	CmdComplete CommandType = "complete"
	// CmdFail records a failed attempt (the task runs again, or the job fails).
	CmdFail CommandType = "fail"
	// CmdFinish records a job's output files.
	CmdFinish CommandType = "finish"
	// CmdFailJob stops a job with an error.
	CmdFailJob CommandType = "fail_job"
	// CmdCancel cancels a job.
	CmdCancel CommandType = "cancel"
	// CmdTakeover records that a new leader took over the running jobs (an event in each).
	CmdTakeover CommandType = "takeover"
)

// TaskRef names one attempt of one task of a job.
type TaskRef struct {
	Step    int `json:"step"`
	Shard   int `json:"shard"`
	Attempt int `json:"attempt"`
}

// Command is one entry of the replicated log. The leader stamps At (Unix ms) and Leader; Apply
// uses no other clock and nothing random, so every replica reaches the same state.
type Command struct {
	// V is the command format version (CommandVersion; absent in entries written before it
	// existed, which are version 1).
	V      int         `json:"v,omitempty"`
	Type   CommandType `json:"type"`
	At     int64       `json:"at"`
	Leader string      `json:"leader,omitempty"`
	// Job names the job concerned.
	Job string `json:"job,omitempty"`
	// Spec is a CmdSubmit's job.
	Spec *JobSpec `json:"spec,omitempty"`
	// Plan and Workers (one per shard) start a job (CmdStart).
	Plan    *Plan    `json:"plan,omitempty"`
	Workers []string `json:"workers,omitempty"`
	// Worker is a CmdRegister's, CmdWorkerLost's, CmdReassign's or CmdLoaded's worker.
	Worker *WorkerInfo `json:"worker,omitempty"`
	// Shard is a CmdReassign's or CmdLoaded's shard.
	Shard int `json:"shard,omitempty"`
	// Task is a CmdDispatch's, CmdRenew's, CmdComplete's or CmdFail's task attempt.
	Task *TaskRef `json:"task,omitempty"`
	// LeaseUntil is a CmdDispatch's or CmdRenew's lease end (Unix ms).
	LeaseUntil int64 `json:"lease_until,omitempty"`
	// Result is a CmdComplete's or CmdFail's result.
	Result *protocol.Result `json:"result,omitempty"`
	// Files is a CmdFinish's output files.
	Files protocol.Ref `json:"files,omitzero"`
	// Reason is a CmdFailJob's or CmdCancel's message.
	Reason string `json:"reason,omitempty"`
}

// WorkerInfo identifies a worker in a command.
type WorkerInfo struct {
	ID      string `json:"id"`
	Version string `json:"version,omitempty"`
	Memory  int64  `json:"memory,omitempty"`
}

// MaxCommandSize bounds an encoded command (a submit carries the config, at most 4 MiB).
const MaxCommandSize = 8 << 20

// CommandVersion is the version of the log entries this build writes and reads.
const CommandVersion = 1

// Encode returns the command's log entry (version CommandVersion).
func (c Command) Encode() []byte {
	c.V = CommandVersion
	return protocol.Encode(c)
}

// DecodeCommand decodes a log entry strictly (size limit, no unknown fields, nothing after it)
// and checks the fields its type needs.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxCommandSize {
		return c, fmt.Errorf("%w: %d bytes (at most %d)", ErrBadCommand, len(b), MaxCommandSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, fmt.Errorf("%w: data after the command", ErrBadCommand)
	}
	if c.V != 0 && c.V != CommandVersion {
		return c, fmt.Errorf("%w: %s command of version %d (this build reads %d)", ErrBadCommand, c.Type, c.V, CommandVersion)
	}
	return c, c.validate()
}

// validate checks that a command carries what its type needs.
func (c Command) validate() error {
	need := func(ok bool, what string) error {
		if !ok {
			return fmt.Errorf("%w: %s command without %s", ErrBadCommand, c.Type, what)
		}
		return nil
	}
	if c.Job != "" {
		if err := protocol.ValidateJobID(c.Job); err != nil {
			return fmt.Errorf("%w: %v", ErrBadCommand, err)
		}
	}
	switch c.Type {
	case CmdSubmit:
		return need(c.Job != "" && c.Spec != nil, "a job and its spec")
	case CmdStart:
		if err := need(c.Job != "" && c.Plan != nil, "a job and a plan"); err != nil {
			return err
		}
		if err := c.Plan.Validate(); err != nil {
			return err
		}
		return need(len(c.Workers) == len(c.Plan.Shards), "one worker per shard")
	case CmdRegister, CmdWorkerLost:
		return c.needWorker()
	case CmdReassign, CmdLoaded:
		if err := c.needWorker(); err != nil {
			return err
		}
		return need(c.Job != "", "a job")
	case CmdDispatch, CmdRenew:
		return need(c.Job != "" && c.Task != nil && c.Task.Attempt >= 1, "a job and a task attempt")
	case CmdComplete, CmdFail:
		return need(c.Job != "" && c.Result != nil && c.Result.Job == c.Job, "a job and its result")
	case CmdFinish:
		return need(c.Job != "" && !c.Files.IsZero(), "a job and its files")
	case CmdFailJob, CmdCancel:
		return need(c.Job != "", "a job")
	case CmdTakeover:
		return need(c.Leader != "", "a leader")
	}
	return fmt.Errorf("%w: unknown type %q", ErrBadCommand, c.Type)
}

func (c Command) needWorker() error {
	if c.Worker == nil {
		return fmt.Errorf("%w: %s command without a worker", ErrBadCommand, c.Type)
	}
	if err := protocol.ValidateName("worker", c.Worker.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return nil
}
