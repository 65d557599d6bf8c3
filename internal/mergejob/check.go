package mergejob

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/protocol"
)

// CheckResult checks a result's factors before the coordinator commits it: they decode, every
// value is finite, every site lies in the shard's layers and has the base module's shape. A
// result that fails is re-run, never installed.
func (h *Handler) CheckResult(ctx context.Context, j *coordinator.Job, r protocol.Result, store coordinator.ArtifactStore) error {
	ref := r.Outputs.Factors
	if ref.IsZero() || r.Shard >= len(j.Plan.Shards) {
		return nil
	}
	up, err := getUpdates(ctx, store, j.ID, ref)
	if err != nil {
		return fmt.Errorf("factors %s: %w", ref, err)
	}
	s, err := Open(j.Spec.Config, j.Spec.Path, j.Spec.Dir)
	if err != nil {
		return err
	}
	cfg, err := model.LoadConfig(filepath.Join(s.BaseModel, "config.json"))
	if err != nil {
		return err
	}
	shapes := model.ShapesOf(cfg)
	sp := j.Plan.Shards[r.Shard]
	for name, u := range up {
		l, _, ok := model.PointOf(name)
		if !ok || l < sp.Lo || l >= sp.Hi {
			return fmt.Errorf("site %s is not in shard %d's layers [%d, %d)", name, r.Shard, sp.Lo, sp.Hi)
		}
		out, in, ok := shapes.LinearShape(name)
		m, _ := u.B.Dims()
		_, n := u.A.Dims()
		if !ok || m != out || n != in {
			return fmt.Errorf("site %s: update is %dx%d, the base module is %dx%d", name, m, n, out, in)
		}
	}
	return nil
}
