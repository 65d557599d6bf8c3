package layerplan

import (
	"fmt"
	"strings"
)

// Worker is a worker a plan may place a shard on.
type Worker struct {
	// ID identifies the worker.
	ID string `json:"id"`
	// Memory is the bytes the worker may use.
	Memory int64 `json:"memory"`
}

// Shard is a contiguous layer range placed on one worker.
type Shard struct {
	// Index numbers the shards from 0 in layer order.
	Index int `json:"index"`
	// Lo and Hi bound the layers [Lo, Hi).
	Lo int `json:"lo"`
	Hi int `json:"hi"`
	// Worker indexes Plan.Workers.
	Worker int `json:"worker"`
	// Sites and Levels count the shard's sites and dependency levels.
	Sites  int `json:"sites"`
	Levels int `json:"levels"`
	// Work is the FLOPs of one step over the shard's layers.
	Work int64 `json:"work_flops"`
	// Footprint is the shard's estimated memory; Footprint.Peak <= the worker's Memory.
	Footprint Footprint `json:"footprint"`
}

// FitError reports workers that cannot hold the model. It wraps ErrNoFit.
type FitError struct {
	// Layer is the layer that cannot be placed.
	Layer int
	// Needs is the peak of a shard holding Layer alone.
	Needs int64
	// Usage is that shard's peak phase, for naming what dominates.
	Usage Usage
	// Largest is the largest worker's memory; Workers the number of workers.
	Largest int64
	Workers int
	// Placed is how many layers (from layer 0) the workers hold when every layer fits the
	// largest worker alone; MinWorkers is then how many workers of the largest size the model
	// needs. Both are 0 when Needs > Largest.
	Placed, MinWorkers int
}

// Error names the layer and the bytes, e.g. "layer 17 needs 9.1 GiB, the largest worker has
// 8 GiB (grams 6.1 GiB, ...)".
func (e *FitError) Error() string {
	if e.Needs > e.Largest {
		return fmt.Sprintf("layer %d needs %s, the largest worker has %s (%s)",
			e.Layer, FormatSize(e.Needs), FormatSize(e.Largest), e.Usage.Describe(3))
	}
	return fmt.Sprintf("%d workers (largest %s) hold layers 0-%d only: layer %d needs %s on a further worker (%s); with workers of %s the model needs at least %d",
		e.Workers, FormatSize(e.Largest), e.Placed-1, e.Layer, FormatSize(e.Needs), e.Usage.Describe(3), FormatSize(e.Largest), e.MinWorkers)
}

// Unwrap returns ErrNoFit.
func (e *FitError) Unwrap() error { return ErrNoFit }

func validateWorkers(ws []Worker) error {
	if len(ws) < 1 || len(ws) > MaxWorkers {
		return fmt.Errorf("%w: workers: %d (want 1..%d)", ErrInput, len(ws), MaxWorkers)
	}
	seen := map[string]bool{}
	for i, w := range ws {
		if w.ID == "" || len(w.ID) > 256 || seen[w.ID] {
			return fmt.Errorf("%w: workers[%d]: id %q is empty, longer than 256 bytes or repeated", ErrInput, i, w.ID)
		}
		seen[w.ID] = true
		if w.Memory < 1 || w.Memory >= Unbounded {
			return fmt.Errorf("%w: workers[%d] (%s): memory %d is outside 1 .. 2^62 bytes", ErrInput, i, w.ID, w.Memory)
		}
	}
	return nil
}

// table holds the peak and the work of every layer range [i, j).
type table struct {
	n          int // layers
	peak, work []int64
}

func (t *table) at(i, j int) int { return i*(t.n+1) + j }

func (e *Estimator) table() *table {
	L := len(e.layers)
	t := &table{n: L, peak: make([]int64, (L+1)*(L+1)), work: make([]int64, (L+1)*(L+1))}
	for i := 0; i < L; i++ {
		s := span{lo: i, hi: i}
		for j := i + 1; j <= L; j++ {
			s.extend(e.layers[j-1])
			t.peak[t.at(i, j)], t.work[t.at(i, j)] = e.peak(s), s.work
		}
	}
	return t
}

// Cut places contiguous shards on the workers, in the workers' order: as many shards as there
// are workers (at most one per layer), each within its worker's memory, and among those the
// cut with the least work on its busiest shard (for jacobi the wavefront's length is the total
// work plus K-1 times the busiest shard's), then the lowest largest memory fraction. A worker
// too small for any range where it stands is left out. Notes say what was left out and why.
func (e *Estimator) Cut(workers []Worker) ([]Shard, []string, error) {
	if err := validateWorkers(workers); err != nil {
		return nil, nil, err
	}
	t := e.table()
	if err := e.checkLayersFit(t, workers); err != nil {
		return nil, nil, err
	}
	count, bottleneck, ok := cutCount(t, workers)
	if !ok {
		return nil, nil, e.coverageError(t, workers)
	}
	choice := cutBalance(t, workers, bottleneck)
	var shards []Shard
	used := make([]bool, len(workers))
	for w, j := len(workers), t.n; w > 0; w-- {
		i := choice[w*(t.n+1)+j]
		if i < 0 {
			continue
		}
		s := e.span(i, j)
		shards = append(shards, Shard{Lo: i, Hi: j, Worker: w - 1, Sites: s.sites, Levels: s.levels, Work: s.work, Footprint: e.footprint(s)})
		used[w-1] = true
		j = i
	}
	for a, b := 0, len(shards)-1; a < b; a, b = a+1, b-1 {
		shards[a], shards[b] = shards[b], shards[a]
	}
	for i := range shards {
		shards[i].Index = i
	}
	if len(shards) != count { // cannot happen: the balance pass admits the count pass's cut
		return nil, nil, fmt.Errorf("layerplan: internal error: the cut has %d shards, the count pass found %d", len(shards), count)
	}
	return shards, e.cutNotes(shards, workers, used), nil
}

// checkLayersFit refuses a layer that alone needs more than the largest worker has.
func (e *Estimator) checkLayersFit(t *table, workers []Worker) error {
	largest := int64(0)
	for _, w := range workers {
		largest = max(largest, w.Memory)
	}
	worst := 0
	for l := 1; l < t.n; l++ {
		if t.peak[t.at(l, l+1)] > t.peak[t.at(worst, worst+1)] {
			worst = l
		}
	}
	if need := t.peak[t.at(worst, worst+1)]; need > largest {
		fp := e.footprint(e.span(worst, worst+1))
		return &FitError{Layer: worst, Needs: need, Usage: fp.PeakUsage(), Largest: largest, Workers: len(workers)}
	}
	return nil
}

// coverageError reports the first layer that the workers, each taking the longest range that
// fits from where the previous one stopped, cannot reach (that greedy covers the most layers,
// because a range's peak never shrinks when it grows).
func (e *Estimator) coverageError(t *table, workers []Worker) error {
	largest := int64(0)
	for _, w := range workers {
		largest = max(largest, w.Memory)
	}
	greedy := func(mem func(int) int64, n int) (covered, used int) {
		for w := 0; w < n && covered < t.n; w++ {
			hi := covered
			for hi < t.n && t.peak[t.at(covered, hi+1)] <= mem(w) {
				hi++
			}
			if hi > covered {
				covered, used = hi, used+1
			}
		}
		return covered, used
	}
	placed, _ := greedy(func(w int) int64 { return workers[w].Memory }, len(workers))
	if placed >= t.n { // cannot happen: the greedy and the count pass agree on coverage
		return fmt.Errorf("layerplan: internal error: the workers cover the model but the cut found no plan")
	}
	_, minWorkers := greedy(func(int) int64 { return largest }, t.n)
	fp := e.footprint(e.span(placed, placed+1))
	return &FitError{Layer: placed, Needs: fp.Peak, Usage: fp.PeakUsage(), Largest: largest, Workers: len(workers),
		Placed: placed, MinWorkers: minWorkers}
}

// cutCount finds the largest number of shards the workers can hold in order, and for that
// number the least work of the busiest shard. The comparison (more shards, then less work) is
// exact in a dynamic program over (workers used, layers covered), because a prefix that is
// better in it stays better under every continuation.
func cutCount(t *table, workers []Worker) (count int, bottleneck int64, ok bool) {
	type cell struct {
		ok  bool
		cnt int
		b   int64
	}
	n := t.n + 1
	prev, cur := make([]cell, n), make([]cell, n)
	prev[0] = cell{ok: true}
	for _, w := range workers {
		for j := 0; j < n; j++ {
			best := prev[j] // skip this worker
			for i := 0; i < j; i++ {
				p := prev[i]
				if !p.ok || t.peak[t.at(i, j)] > w.Memory {
					continue
				}
				c := cell{ok: true, cnt: p.cnt + 1, b: max(p.b, t.work[t.at(i, j)])}
				if !best.ok || c.cnt > best.cnt || (c.cnt == best.cnt && c.b < best.b) {
					best = c
				}
			}
			cur[j] = best
		}
		prev, cur = cur, prev
	}
	end := prev[t.n]
	return end.cnt, end.b, end.ok
}

// cutBalance finds, among the cuts with the most shards and no shard above bottleneck work,
// the one whose largest peak/memory fraction is least, and returns its choices: for each
// (workers used w, layers covered j), the lo of worker w-1's shard ending at j, or -1 when
// worker w-1 is skipped. Ties keep the first candidate (skipping first, then lo ascending).
func cutBalance(t *table, workers []Worker, bottleneck int64) []int {
	type cell struct {
		ok  bool
		cnt int
		u   float64
	}
	n := t.n + 1
	choice := make([]int, (len(workers)+1)*n)
	prev, cur := make([]cell, n), make([]cell, n)
	prev[0] = cell{ok: true}
	for wi, w := range workers {
		for j := 0; j < n; j++ {
			best, pick := prev[j], -1
			for i := 0; i < j; i++ {
				p := prev[i]
				k := t.at(i, j)
				if !p.ok || t.peak[k] > w.Memory || t.work[k] > bottleneck {
					continue
				}
				c := cell{ok: true, cnt: p.cnt + 1, u: max(p.u, float64(t.peak[k])/float64(w.Memory))}
				if !best.ok || c.cnt > best.cnt || (c.cnt == best.cnt && c.u < best.u) {
					best, pick = c, i
				}
			}
			cur[j] = best
			choice[(wi+1)*n+j] = pick
		}
		prev, cur = cur, prev
	}
	return choice
}

// cutNotes explains the workers left out and the shards without sites.
func (e *Estimator) cutNotes(shards []Shard, workers []Worker, used []bool) []string {
	var notes, idle []string
	for i, u := range used {
		if !u {
			idle = append(idle, workers[i].ID)
		}
	}
	L := len(e.layers)
	switch {
	case len(workers) > L:
		notes = append(notes, fmt.Sprintf("%d workers for %d layers: at most one shard per layer, so %d workers are not used (%s)",
			len(workers), L, len(idle), strings.Join(idle, ", ")))
	case len(idle) > 0:
		notes = append(notes, fmt.Sprintf("not used: %s (too small for any layer range where it stands in the order)", strings.Join(idle, ", ")))
	}
	for _, s := range shards {
		if s.Sites > 0 || (e.in.Merge.Method == DataAware && s.Lo <= e.lastSite) {
			continue
		}
		what := "it has no step"
		if e.calibrate {
			what = "it takes part in calibration only"
		}
		notes = append(notes, fmt.Sprintf("shard %d (layers %d-%d) holds no site: %s", s.Index, s.Lo, s.Hi-1, what))
	}
	if e.in.Merge.Schedule == Sweep && len(shards) > 1 {
		notes = append(notes, "the sweep runs the shards one after another: more shards add memory, not speed")
	}
	return notes
}
