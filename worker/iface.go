package worker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/protocol"
)

// ErrNoTask is returned by Tasks.Next when no task arrived in time.
var ErrNoTask = errors.New("worker: no task")

// Control is the request side of the coordinators: registration and heartbeats.
type Control interface {
	Register(ctx context.Context, r protocol.Register) error
	Heartbeat(ctx context.Context, hb protocol.Heartbeat) (protocol.HeartbeatReply, error)
}

// Delivery is one delivered task message.
type Delivery interface {
	// Task is the decoded task.
	Task() protocol.Task
	// AckWait is how long the message stays with this worker without an InProgress.
	AckWait() time.Duration
	InProgress() error
	Ack() error
	Nak() error
}

// Tasks is the source of a shard's tasks.
type Tasks interface {
	// Next waits up to wait for the next task of a job's shard (ErrNoTask when none came).
	Next(ctx context.Context, job string, shard int, wait time.Duration) (Delivery, error)
}

// Results is where task results go.
type Results interface {
	Publish(ctx context.Context, r protocol.Result) error
}

// Ring carries the generation steps of a calibrate task between neighbouring shards.
type Ring interface {
	// Listen delivers the steps sent to one shard of a calibrate attempt until stop is called; it
	// closes the channel when it can no longer deliver every step (the connection dropped).
	Listen(job string, attempt, shard int) (msgs <-chan []byte, stop func(), err error)
	// Send sends a step to one shard of a calibrate attempt.
	Send(ctx context.Context, job string, attempt, shard int, msg []byte) error
}

// ArtifactStore is the part of the artifact store a worker uses.
type ArtifactStore interface {
	Put(ctx context.Context, job string, kind protocol.Kind, content []byte) (protocol.Ref, error)
	Get(ctx context.Context, job string, ref protocol.Ref) (protocol.Kind, []byte, error)
}

// Shard is a loaded shard: the compute a worker runs (the CPU implementation wraps
// internal/shard; a GPU backend implements the same steps).
type Shard interface {
	// Jacobi runs jacobi solve k over the shard's layers.
	Jacobi(ctx context.Context, k int, in shard.StepInput) (shard.StepOutput, error)
	// Sweep runs the sweep over the shard's layers.
	Sweep(ctx context.Context, in shard.StepInput) (shard.StepOutput, error)
	// NewCalibration prepares the shard's part of generating the calibration completions.
	NewCalibration(batches []shard.GenBatch) (*shard.Calibration, error)
	// WeightOnly merges the shard's modules from the adapters alone.
	WeightOnly() (shard.Updates, error)
	// BatchSize is the job's calibration batch size.
	BatchSize() int
	// Read lists the base model tensors the load read.
	Read() []model.TensorRead
}

// Loader loads the shard of an assignment.
type Loader func(ctx context.Context, a protocol.Assignment) (Shard, error)

// loadedFile is what writeLoaded records.
type loadedFile struct {
	Job     string             `json:"job"`
	Shard   int                `json:"shard"`
	Lo      int                `json:"lo"`
	Hi      int                `json:"hi"`
	Tensors []model.TensorRead `json:"tensors"`
}

// writeLoaded records in dir/loaded.json which tensors the last load read (operators and tests
// check that a worker read only its shard).
func writeLoaded(dir string, a protocol.Assignment, read []model.TensorRead) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(loadedFile{Job: a.Job, Shard: a.Shard, Lo: a.Lo, Hi: a.Hi, Tensors: read}, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".loaded.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "loaded.json"))
}
