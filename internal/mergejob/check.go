package mergejob

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/iteris-dev/iteris/coordinator"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
	"github.com/iteris-dev/iteris/protocol"
)

// CheckResult checks a result's artifacts before the coordinator commits it: the records decode;
// the factors decode (their hash is checked on the way), every value is finite, the factors hold
// exactly the shard's sites, each with the base module's shape, and adaptive weights, when
// present, one per adapter. A result that fails is re-run, never installed; the error names the
// artifact and the site.
func (h *Handler) CheckResult(ctx context.Context, j *coordinator.Job, r protocol.Result, store coordinator.ArtifactStore) error {
	if r.Shard >= len(j.Plan.Shards) {
		return nil
	}
	if ref := r.Outputs.Records; !ref.IsZero() {
		_, content, err := store.Get(ctx, j.ID, ref)
		if err == nil {
			_, err = DecodeRecords(content)
		}
		if err != nil {
			return fmt.Errorf("records %s: %w", ref, err)
		}
	}
	ref := r.Outputs.Factors
	if ref.IsZero() {
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
	sp := j.Plan.Shards[r.Shard]
	if err := checkSites(up, model.ShapesOf(cfg), r.Shard, sp, len(s.Adapters)); err != nil {
		return fmt.Errorf("factors %s: %w", ref, err)
	}
	var meta Meta
	if err := json.Unmarshal(j.Spec.Footprint, &meta); err != nil || len(meta.Sites) == 0 {
		return nil // a job prepared before the record of its sites
	}
	return checkComplete(up, meta.Sites, r.Shard, sp, ref)
}

// checkSites checks every site's layer, shape and adaptive weights.
func checkSites(up shard.Updates, shapes model.Shapes, shardIdx int, sp coordinator.ShardPlan, tasks int) error {
	names := make([]string, 0, len(up))
	for n := range up {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		u := up[name]
		l, _, ok := model.PointOf(name)
		if !ok || l < sp.Lo || l >= sp.Hi {
			return fmt.Errorf("site %s is not in shard %d's layers [%d, %d)", name, shardIdx, sp.Lo, sp.Hi)
		}
		out, in, ok := shapes.LinearShape(name)
		m, _ := u.B.Dims()
		_, n := u.A.Dims()
		if !ok || m != out || n != in {
			return fmt.Errorf("site %s: update is %dx%d, the base module is %dx%d", name, m, n, out, in)
		}
		if u.Coefs != nil && len(u.Coefs) != tasks {
			return fmt.Errorf("site %s: %d adaptive weights for %d adapters", name, len(u.Coefs), tasks)
		}
	}
	return nil
}

// checkComplete checks that the factors hold every site of the shard's layers and no other.
func checkComplete(up shard.Updates, sites []string, shardIdx int, sp coordinator.ShardPlan, ref protocol.Ref) error {
	var missing, extra []string
	want := map[string]bool{}
	for _, name := range sites {
		if l, _, ok := model.PointOf(name); ok && l >= sp.Lo && l < sp.Hi {
			want[name] = true
			if _, ok := up[name]; !ok {
				missing = append(missing, name)
			}
		}
	}
	for name := range up {
		if !want[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		return fmt.Errorf("factors %s: %d sites, shard %d's layers [%d, %d) have %d; missing [%s], not a site of the merge [%s]",
			ref, len(up), shardIdx, sp.Lo, sp.Hi, len(want), strings.Join(missing, ", "), strings.Join(extra, ", "))
	}
	return nil
}
