package mergejob

import (
	"encoding/json"
	"fmt"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/layerplan"
)

// Plan cuts a queued job into contiguous shards for the free workers it is given, with
// layerplan: every shard fits its worker's memory and the work is balanced. A model that does
// not fit is refused naming the layer and the bytes.
func (h *Handler) Plan(j *coordinator.Job, free []*coordinator.Worker) (coordinator.Plan, []string, error) {
	var meta Meta
	if err := json.Unmarshal(j.Spec.Footprint, &meta); err != nil {
		return coordinator.Plan{}, nil, fmt.Errorf("job %s: validation record: %w", j.ID, err)
	}
	workers := make([]layerplan.Worker, len(free))
	for i, w := range free {
		workers[i] = layerplan.Worker{ID: w.ID, Memory: w.Memory}
	}
	lp, err := layerplan.Build(meta.Plan, workers)
	if err != nil {
		return coordinator.Plan{}, nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	p := coordinator.Plan{Steps: j.Spec.Steps, Tolerance: j.Spec.Tolerance}
	var ids []string
	for _, s := range lp.Shards {
		p.Shards = append(p.Shards, coordinator.ShardPlan{Lo: s.Lo, Hi: s.Hi, Memory: s.Footprint.Peak})
		ids = append(ids, free[s.Worker].ID)
	}
	return p, ids, nil
}
