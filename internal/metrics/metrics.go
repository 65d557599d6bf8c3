// Package metrics exposes the Prometheus metrics of the long-running iteris processes (`iteris
// coordinator` and `iteris worker`). Every name starts with iteris_:
//
//   - NewRegistry: a registry with the Go runtime's and the process's collectors, renamed
//     (iteris_go_goroutines, iteris_process_resident_memory_bytes, ...).
//   - Coordinator: what the replicated state says (jobs by state, tasks by step kind and state,
//     dispatches, failures, task and step durations, artifact bytes of the committed results,
//     workers) and what raft says (state, term, commit and applied index, voters, known leader,
//     leader changes). Every coordinator, follower or leader, reports the same state metrics.
//   - BridgeGoMetrics: raft's own go-metrics (iteris_raft_apply, iteris_raft_commitTime, ...)
//     into the same registry.
//   - Store: the bytes and buckets of the artifact store on JetStream.
//   - Worker: the worker's shard, task counts and durations, busy time and bytes moved; it
//     implements worker.Observer.
//
// The collectors read their sources when scraped; they hold no copy of the state. The HTTP side
// (/metrics, /healthz, /readyz) is internal/health.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/iteris-dev/iteris/protocol"
)

// Prefix starts every metric name.
const Prefix = "iteris_"

// DurationBuckets are the histogram buckets of task and step durations, in seconds: from a tenth
// of a second (a tiny model's task) to four hours (a step of a large model).
var DurationBuckets = []float64{0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 14400}

// StepKinds are the step kinds, in the order the metrics list them.
var StepKinds = []protocol.StepKind{protocol.StepCalibrate, protocol.StepWeightOnly, protocol.StepJacobi, protocol.StepSweep}

// NewRegistry returns a registry holding the Go runtime's and the process's collectors, renamed
// with Prefix (iteris_go_*, iteris_process_*: resident memory, CPU seconds, open files).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	prometheus.WrapRegistererWithPrefix(Prefix, reg).MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// desc returns the description of metric Prefix+name.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Prefix+name, help, labels, nil)
}

// boolFloat is 1 for true.
func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// histogram accumulates observations for a constant histogram over DurationBuckets.
type histogram struct {
	count   uint64
	sum     float64
	buckets map[float64]uint64 // cumulative counts
}

func newHistogram() *histogram {
	h := &histogram{buckets: make(map[float64]uint64, len(DurationBuckets))}
	for _, b := range DurationBuckets {
		h.buckets[b] = 0
	}
	return h
}

func (h *histogram) observe(v float64) {
	h.count++
	h.sum += v
	for _, b := range DurationBuckets {
		if v <= b {
			h.buckets[b]++
		}
	}
}
