package protocol

import "fmt"

// Register is a worker's registration request.
type Register struct {
	Head
	// Worker is the worker's id, unique in the cluster.
	Worker string `json:"worker"`
	// Version is the worker's iteris version; a coordinator of another version refuses it.
	Version string `json:"version"`
	// Memory is the memory the worker may use, in bytes.
	Memory int64 `json:"memory"`
}

func (r Register) validate() error {
	if err := ValidateName("worker", r.Worker); err != nil {
		return err
	}
	if r.Version == "" || len(r.Version) > MaxNameLen {
		return fmt.Errorf("worker %s: version %q", r.Worker, truncate(r.Version, 80))
	}
	if r.Memory <= 0 {
		return fmt.Errorf("worker %s: memory %d bytes (want > 0)", r.Worker, r.Memory)
	}
	return nil
}

// DecodeRegister decodes a registration request.
func DecodeRegister(b []byte) (Register, error) { return decode[Register]("register", b) }

// Reply is the reply to a request that returns nothing else: an error or none.
type Reply struct {
	Head
	// Error is set when the request was refused.
	Error *Error `json:"error,omitempty"`
	// Leader names the raft leader (a coordinator that does not lead says who does).
	Leader string `json:"leader,omitempty"`
}

func (r Reply) validate() error { return nil }

// DecodeReply decodes a plain reply.
func DecodeReply(b []byte) (Reply, error) { return decode[Reply]("reply", b) }

// Heartbeat is a worker's periodic request: it says what the worker holds and runs, and the reply
// says what it should hold.
type Heartbeat struct {
	Head
	// Worker is the worker's id.
	Worker string `json:"worker"`
	// Loaded is the shard the worker has loaded, if any.
	Loaded *ShardRef `json:"loaded,omitempty"`
	// Running lists the task attempts the worker is working on.
	Running []Running `json:"running,omitempty"`
}

// ShardRef names one shard of one job.
type ShardRef struct {
	// Job is the job id.
	Job string `json:"job"`
	// Shard indexes the job plan's shards.
	Shard int `json:"shard"`
}

// Running is one task attempt in progress.
type Running struct {
	TaskKey
	// Attempt is the attempt number.
	Attempt int `json:"attempt"`
}

func (h Heartbeat) validate() error {
	if err := ValidateName("worker", h.Worker); err != nil {
		return err
	}
	if h.Loaded != nil {
		if err := ValidateJobID(h.Loaded.Job); err != nil {
			return err
		}
	}
	if len(h.Running) > 64 {
		return fmt.Errorf("worker %s: %d running tasks", h.Worker, len(h.Running))
	}
	for _, r := range h.Running {
		if err := r.TaskKey.validate(); err != nil {
			return err
		}
	}
	return nil
}

// DecodeHeartbeat decodes a heartbeat.
func DecodeHeartbeat(b []byte) (Heartbeat, error) { return decode[Heartbeat]("heartbeat", b) }

// Assignment tells a worker which shard of which job to hold.
type Assignment struct {
	ShardRef
	// Lo and Hi are the shard's layers [Lo, Hi); Shards is the number of shards of the job.
	Lo     int `json:"lo"`
	Hi     int `json:"hi"`
	Shards int `json:"shards"`
	// Config is the job's merge config as submitted (YAML), and Dir the directory its relative
	// paths are resolved against (on the worker's own filesystem).
	Config []byte `json:"config"`
	Dir    string `json:"dir"`
}

// HeartbeatReply answers a heartbeat.
type HeartbeatReply struct {
	Head
	// Error is set when the heartbeat was refused (an unknown worker must register again).
	Error *Error `json:"error,omitempty"`
	// Assignment is the shard the worker should hold (nil: none; drop what is loaded).
	Assignment *Assignment `json:"assignment,omitempty"`
	// Cancel lists running attempts (of the heartbeat's Running) the worker should abandon: the
	// task is done or skipped, its calibration ring moved to a newer attempt, or the worker no
	// longer holds its shard. Their messages are acked and no result is sent.
	Cancel []Running `json:"cancel,omitempty"`
	// Leader names the raft leader.
	Leader string `json:"leader,omitempty"`
}

func (r HeartbeatReply) validate() error {
	if len(r.Cancel) > 64 {
		return fmt.Errorf("heartbeat reply cancels %d attempts", len(r.Cancel))
	}
	for _, c := range r.Cancel {
		if err := c.TaskKey.validate(); err != nil {
			return err
		}
	}
	if a := r.Assignment; a != nil {
		if err := ValidateJobID(a.Job); err != nil {
			return err
		}
		if a.Lo < 0 || a.Hi <= a.Lo || a.Shards < 1 || a.Shard < 0 || a.Shard >= a.Shards {
			return fmt.Errorf("assignment of %s shard %d: layers [%d, %d) of %d shards", a.Job, a.Shard, a.Lo, a.Hi, a.Shards)
		}
	}
	return nil
}

// DecodeHeartbeatReply decodes a heartbeat reply.
func DecodeHeartbeatReply(b []byte) (HeartbeatReply, error) {
	return decode[HeartbeatReply]("heartbeat reply", b)
}
