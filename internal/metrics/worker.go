package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iteris-dev/iteris/protocol"
)

// Worker is the collector of a worker process; it implements worker.Observer (pass it as the
// worker's Config.Observer) and prometheus.Collector.
type Worker struct {
	budget int64
	now    func() time.Time

	mu          sync.Mutex
	shard       *protocol.Assignment
	loadSeconds float64
	loads       uint64
	running     *protocol.Task
	since       time.Time // start of the running task
	busy        float64   // seconds of the tasks that ended
	tasks       map[[2]string]uint64
	bytesIn     int64
	bytesOut    int64

	durations                               *prometheus.HistogramVec
	loaded, info, loadTime, loadsTotal      *prometheus.Desc
	runningDesc, busyDesc, tasksDesc, bytes *prometheus.Desc
	budgetDesc                              *prometheus.Desc
}

var _ prometheus.Collector = (*Worker)(nil)

// NewWorker returns the collector of a worker with a memory budget of budget bytes.
func NewWorker(budget int64) *Worker {
	return &Worker{budget: budget, now: time.Now, tasks: map[[2]string]uint64{},
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: Prefix + "worker_task_duration_seconds",
			Help: "Wall time of the task attempts this worker ran, by step kind.", Buckets: DurationBuckets}, []string{"kind"}),
		loaded:      desc("worker_shard_loaded", "1 while this worker holds a loaded shard."),
		info:        desc("worker_shard_info", "1 for the shard this worker holds: its job, index and layers [lo, hi).", "job", "shard", "lo", "hi"),
		loadTime:    desc("worker_shard_load_seconds", "How long the last shard load took."),
		loadsTotal:  desc("worker_shard_loads_total", "Shards this worker has loaded."),
		runningDesc: desc("worker_task_running", "1 while this worker runs a task attempt."),
		busyDesc:    desc("worker_busy_seconds_total", "Seconds this worker has spent running task attempts (the one in progress included)."),
		tasksDesc:   desc("worker_tasks_total", "Task attempts this worker finished, by step kind and outcome (done or failed).", "kind", "outcome"),
		bytes:       desc("worker_bytes_total", "Artifact bytes this worker's task attempts read (in) and wrote (out).", "direction"),
		budgetDesc:  desc("worker_memory_budget_bytes", "The memory this worker may use (--memory); compare with iteris_process_resident_memory_bytes."),
	}
}

// ShardLoaded implements worker.Observer.
func (w *Worker) ShardLoaded(a protocol.Assignment, seconds float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.shard = &a
	w.loadSeconds = seconds
	w.loads++
}

// ShardDropped implements worker.Observer.
func (w *Worker) ShardDropped(s protocol.ShardRef) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.shard != nil && w.shard.ShardRef == s {
		w.shard = nil
	}
}

// TaskStarted implements worker.Observer.
func (w *Worker) TaskStarted(t protocol.Task) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running, w.since = &t, w.now()
}

// TaskEnded implements worker.Observer.
func (w *Worker) TaskEnded(t protocol.Task, r protocol.Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running != nil {
		w.busy += w.now().Sub(w.since).Seconds()
		w.running = nil
	}
	outcome := "done"
	if r.Error != nil {
		outcome = "failed"
	}
	w.tasks[[2]string{string(t.Kind), outcome}]++
	w.bytesIn += r.Stats.BytesIn
	w.bytesOut += r.Stats.BytesOut
	w.durations.WithLabelValues(string(t.Kind)).Observe(r.Stats.Seconds)
}

// Describe implements prometheus.Collector.
func (w *Worker) Describe(ch chan<- *prometheus.Desc) {
	w.durations.Describe(ch)
	for _, d := range []*prometheus.Desc{w.loaded, w.info, w.loadTime, w.loadsTotal, w.runningDesc, w.busyDesc, w.tasksDesc, w.bytes, w.budgetDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (w *Worker) Collect(ch chan<- prometheus.Metric) {
	w.durations.Collect(ch)
	w.mu.Lock()
	defer w.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(w.loaded, boolFloat(w.shard != nil))
	if s := w.shard; s != nil {
		gauge(w.info, 1, s.Job, strconv.Itoa(s.Shard), strconv.Itoa(s.Lo), strconv.Itoa(s.Hi))
	}
	gauge(w.loadTime, w.loadSeconds)
	counter(w.loadsTotal, float64(w.loads))
	busy := w.busy
	if w.running != nil {
		busy += w.now().Sub(w.since).Seconds()
	}
	gauge(w.runningDesc, boolFloat(w.running != nil))
	counter(w.busyDesc, busy)
	for _, k := range StepKinds {
		for _, o := range []string{"done", "failed"} {
			counter(w.tasksDesc, float64(w.tasks[[2]string{string(k), o}]), string(k), o)
		}
	}
	counter(w.bytes, float64(w.bytesIn), "in")
	counter(w.bytes, float64(w.bytesOut), "out")
	gauge(w.budgetDesc, float64(w.budget))
}
