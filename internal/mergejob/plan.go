package mergejob

import (
	"fmt"

	"github.com/iteris-dev/iteris/coordinator"
)

// Plan cuts a queued job into contiguous shards for the free workers it is given (one shard per
// worker, at most one per layer), balanced by layer count.
func (h *Handler) Plan(j *coordinator.Job, free []*coordinator.Worker) (coordinator.Plan, []string, error) {
	n := min(len(free), j.Spec.Layers)
	if n < 1 {
		return coordinator.Plan{}, nil, fmt.Errorf("job %s: no worker for a model of %d layers", j.ID, j.Spec.Layers)
	}
	p := coordinator.Plan{Steps: j.Spec.Steps, Tolerance: j.Spec.Tolerance}
	var ids []string
	for i := 0; i < n; i++ {
		p.Shards = append(p.Shards, coordinator.ShardPlan{Lo: i * j.Spec.Layers / n, Hi: (i + 1) * j.Spec.Layers / n})
		ids = append(ids, free[i].ID)
	}
	return p, ids, nil
}
