package pipeline

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
)

// wireBytes round-trips streams through a byte encoding, as they cross shards in a cluster.
func wireBytes(s shard.Streams) (shard.Streams, error) {
	out := make(shard.Streams, len(s))
	for i, w := range s {
		b := make([]byte, 0, 4*len(w.Data))
		for _, v := range w.Data {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
		data := make([]float32, len(b)/4)
		for j := range data {
			data[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
		}
		out[i] = model.Wire{Width: w.Width, Lens: append([]int(nil), w.Lens...), Starts: append([]int(nil), w.Starts...), Data: data}
	}
	return out, nil
}

// sameModules reports the first difference between two merged adapters, bit for bit.
func sameModules(a, b []*adapter.Module) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d modules vs %d", len(a), len(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.R != y.R || x.In != y.In || x.Out != y.Out {
			return fmt.Errorf("module %d: %s r=%d %dx%d vs %s r=%d %dx%d", i, x.Name, x.R, x.Out, x.In, y.Name, y.R, y.Out, y.In)
		}
		for j := range x.A {
			if math.Float32bits(x.A[j]) != math.Float32bits(y.A[j]) {
				return fmt.Errorf("%s: lora_A[%d] = %v vs %v", x.Name, j, x.A[j], y.A[j])
			}
		}
		for j := range x.B {
			if math.Float32bits(x.B[j]) != math.Float32bits(y.B[j]) {
				return fmt.Errorf("%s: lora_B[%d] = %v vs %v", x.Name, j, x.B[j], y.B[j])
			}
		}
	}
	return nil
}

// TestShardedMergeIsBitIdentical is the shard seam's acceptance test: tiny-skills cut into 1, 2
// and 4 shards, with every stream sent through its wire bytes between shards, gives bit-identical
// adapters for every schedule and objective, the residual objective and its refinement included
// (3 Adam steps per layer: each step runs every batch of the layer, so more steps repeat the same
// arithmetic).
func TestShardedMergeIsBitIdentical(t *testing.T) {
	base := loadBase(t)
	tasks := fixtureTasks(t, base)
	jacobi := func(obj merge.Objective, k int) SolveSettings {
		s := paperSettings(k)
		s.Objective = obj
		return s
	}
	sweep := func(obj merge.Objective) SolveSettings {
		s := paperSettings(0)
		s.Objective, s.Schedule = obj, Sweep
		return s
	}
	tests := []struct {
		name string
		set  SolveSettings
	}{
		{"jacobi delta", jacobi(merge.Delta, 3)},
		{"jacobi full", jacobi(merge.Full, 2)},
		{"sweep delta", sweep(merge.Delta)},
		{"sweep full", sweep(merge.Full)},
		{"regmean", SolveSettings{Method: "regmean", Reduce: 1}},
		{"sweep full, data truncation", func() SolveSettings { s := sweep(merge.Full); s.Truncation = merge.TruncData; return s }()},
		{"sweep residual", rcSettings(0, 0)},
		{"sweep residual, refined", rcSettings(0, 3)},
	}
	cutsOf := [][]int{{0, 4}, {0, 2, 4}, {0, 1, 2, 3, 4}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []*adapter.Module
			var wantLosses [][2]float64
			for _, cuts := range cutsOf {
				mg, err := NewShardedMerger(base, tasks, tc.set, nil, cuts)
				if err != nil {
					t.Fatal(err)
				}
				mg.Transfer = wireBytes
				recs, err := mg.Run()
				if err != nil {
					t.Fatal(err)
				}
				got := mg.Result()
				if len(got) != 28 {
					t.Fatalf("cuts %v: %d merged modules, want 28", cuts, len(got))
				}
				// The refinement's losses are bit-identical too.
				var losses [][2]float64
				for _, r := range recs[len(recs)-1].Layers {
					losses = append(losses, [2]float64{r.LossBefore, r.LossAfter})
				}
				if refined := tc.set.RefineSteps > 0; refined != (len(losses) == 4) {
					t.Fatalf("cuts %v: %d refined layers", cuts, len(losses))
				}
				if want == nil {
					want, wantLosses = got, losses
					continue
				}
				if err := sameModules(got, want); err != nil {
					t.Errorf("%d shards %v vs 1 shard: %v", len(cuts)-1, cuts, err)
				}
				if !slices.Equal(losses, wantLosses) {
					t.Errorf("%d shards %v: refinement losses %v, 1 shard %v", len(cuts)-1, cuts, losses, wantLosses)
				}
			}
		})
	}
}
