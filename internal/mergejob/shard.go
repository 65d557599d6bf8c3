package mergejob

import (
	"fmt"
	"path/filepath"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/internal/spec"
	"github.com/iteris-dev/iteris/protocol"
)

func pointOf(name string) (int, model.Point, bool) { return model.PointOf(name) }

// Shard is one loaded shard of a job on a worker.
type Shard struct {
	// Spec is the job's config, its paths resolved.
	Spec *spec.Spec
	// Tasks are the adapters.
	Tasks []shard.Task
	// Unit is the per-shard unit (nil for weight-only merges, which need no base weights).
	Unit *shard.Unit
	// Lo and Hi are the shard's layers.
	Lo, Hi int
	// Read lists the base model tensors the load read.
	Read []model.TensorRead
}

// LoadShard loads what a worker needs for its assignment: the adapters, and for data-aware
// merges the base model's layers [lo, hi) only (with the embeddings on the first shard and the
// final norm and lm_head on the last).
func LoadShard(a protocol.Assignment) (*Shard, error) {
	s, err := Open(a.Config, "config.yaml", a.Dir)
	if err != nil {
		return nil, err
	}
	sh := &Shard{Spec: s, Lo: a.Lo, Hi: a.Hi}
	for _, as := range s.Adapters {
		ad, err := adapter.Load(as.Path)
		if err != nil {
			return nil, fmt.Errorf("adapter %s: %w", as.Name, err)
		}
		sh.Tasks = append(sh.Tasks, shard.Task{Name: as.Name, Adapter: ad, Weight: as.Weight})
	}
	if !s.DataAware() {
		return sh, nil
	}
	cfg, err := model.LoadConfig(filepath.Join(s.BaseModel, "config.json"))
	if err != nil {
		return nil, err
	}
	if a.Hi > cfg.Layers {
		return nil, fmt.Errorf("assignment of layers [%d, %d) for a model of %d layers", a.Lo, a.Hi, cfg.Layers)
	}
	base, err := model.LoadRange(s.BaseModel, model.ShardRange(cfg, a.Lo, a.Hi))
	if err != nil {
		return nil, err
	}
	sh.Read = base.Read
	if sh.Unit, err = shard.New(base, a.Lo, a.Hi, sh.Tasks, shard.SettingsOf(s)); err != nil {
		return nil, err
	}
	return sh, nil
}
