package worker

import (
	"context"

	"github.com/iteris-dev/iteris/internal/mergejob"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/protocol"
)

// CPULoader loads shards for the CPU engine (internal/shard).
func CPULoader(_ context.Context, a protocol.Assignment) (Shard, error) {
	sh, err := mergejob.LoadShard(a)
	if err != nil {
		return nil, err
	}
	return cpuShard{sh}, nil
}

type cpuShard struct{ *mergejob.Shard }

func (c cpuShard) unit() (*shard.Unit, error) {
	if c.Unit == nil {
		return nil, shard.ErrInput
	}
	return c.Unit, nil
}

func (c cpuShard) Jacobi(ctx context.Context, k int, in shard.StepInput) (shard.StepOutput, error) {
	u, err := c.unit()
	if err != nil {
		return shard.StepOutput{}, err
	}
	return u.Jacobi(ctx, k, in)
}

func (c cpuShard) Sweep(ctx context.Context, in shard.StepInput) (shard.StepOutput, error) {
	u, err := c.unit()
	if err != nil {
		return shard.StepOutput{}, err
	}
	return u.Sweep(ctx, in)
}

func (c cpuShard) NewCalibration(b []shard.GenBatch) (*shard.Calibration, error) {
	u, err := c.unit()
	if err != nil {
		return nil, err
	}
	return u.NewCalibration(b)
}

func (c cpuShard) WeightOnly() (shard.Updates, error) {
	return shard.WeightOnly(shard.WeightOnlyOf(c.Spec), c.Tasks, shard.ModuleNames(c.Tasks, c.Lo, c.Hi))
}

func (c cpuShard) BatchSize() int { return c.Spec.Parameters.BatchSize }

func (c cpuShard) Read() []model.TensorRead { return c.Shard.Read }
