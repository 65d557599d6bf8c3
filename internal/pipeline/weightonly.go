package pipeline

import (
	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/internal/spec"
)

// weightOnly runs a merge that needs no data over every module, as one shard.
func weightOnly(s *spec.Spec, tasks []*Task, warn func(string, ...any)) ([]*adapter.Module, error) {
	if s.Method == spec.MethodLinear {
		warn("method linear averages the A's and the B's separately, as PEFT does: it is not task arithmetic (use cat for the exact weighted sum of updates)")
	}
	st := make([]shard.Task, len(tasks))
	for i, t := range tasks {
		st[i] = shard.Task{Name: t.Name, Adapter: t.Adapter, Weight: t.Weight}
	}
	up, err := shard.WeightOnly(shard.WeightOnlyOf(s), st, shard.ModuleNames(st, 0, 1<<30))
	if err != nil {
		return nil, err
	}
	return modulesOf(up), nil
}
