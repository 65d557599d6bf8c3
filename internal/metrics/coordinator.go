package metrics

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iteris-dev/iteris/coordinator"
)

// CoordinatorSource is what the coordinator collector reads (*coordinator.Node implements it).
type CoordinatorSource interface {
	// View runs fn on the replicated state.
	View(fn func(s *coordinator.State))
	// Raft returns the raft instance (nil before Start).
	Raft() *raft.Raft
}

// Coordinator is the collector of a coordinator: the replicated state's summary and raft's
// state. Register it on a registry; call Watch once raft has started to count leader changes.
type Coordinator struct {
	src CoordinatorSource

	mu      sync.Mutex
	leader  string // the last known leader
	changes uint64

	jobs, tasks, dispatches, failures, ignored  *prometheus.Desc
	taskSeconds, stepSeconds, bytes, workers    *prometheus.Desc
	raftState, term, commit, applied, lastLog   *prometheus.Desc
	voters, leaderKnown, leaderChanges, contact *prometheus.Desc
}

var _ prometheus.Collector = (*Coordinator)(nil)

// NewCoordinator returns the collector of src.
func NewCoordinator(src CoordinatorSource) *Coordinator {
	return &Coordinator{src: src,
		jobs:          desc("jobs", "Jobs in the replicated state, by state.", "state"),
		tasks:         desc("tasks", "Tasks of every job in the replicated state, by step kind and task state.", "kind", "state"),
		dispatches:    desc("task_dispatches_total", "Task attempts dispatched, by step kind (more than the tasks when attempts were retried).", "kind"),
		failures:      desc("task_failures_total", "Task attempts that failed (reported by a worker or refused by the leader's checks), by step kind.", "kind"),
		ignored:       desc("task_ignored_results_total", "Results of stale attempts that were ignored, by step kind.", "kind"),
		taskSeconds:   desc("task_duration_seconds", "Wall time of the committed attempt of each done task, as its worker measured it, by step kind.", "kind"),
		stepSeconds:   desc("step_duration_seconds", "Wall time of each finished step, from its first dispatch to its last completion (leader clock), by step kind.", "kind"),
		bytes:         desc("task_artifact_bytes", "Artifact bytes read (in) and written (out) by the committed results of the tasks now done.", "direction"),
		workers:       desc("workers", "Registered workers: assigned (alive, holding a shard), free (alive) and lost.", "state"),
		raftState:     desc("raft_state", "1 for this node's raft state (follower, candidate, leader, shutdown), 0 for the others.", "state"),
		term:          desc("raft_term", "This node's current raft term."),
		commit:        desc("raft_commit_index", "This node's raft commit index."),
		applied:       desc("raft_applied_index", "The last raft index applied to this node's state."),
		lastLog:       desc("raft_last_log_index", "The last index in this node's raft log."),
		voters:        desc("raft_voters", "Voters in this node's latest raft configuration."),
		leaderKnown:   desc("raft_leader_known", "1 when this node knows a raft leader."),
		leaderChanges: desc("raft_leader_changes_total", "Times this node has seen a new raft leader (the first one included)."),
		contact:       desc("raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader)."),
	}
}

// Describe implements prometheus.Collector.
func (c *Coordinator) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.jobs, c.tasks, c.dispatches, c.failures, c.ignored, c.taskSeconds, c.stepSeconds,
		c.bytes, c.workers, c.raftState, c.term, c.commit, c.applied, c.lastLog, c.voters, c.leaderKnown, c.leaderChanges, c.contact} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Coordinator) Collect(ch chan<- prometheus.Metric) {
	var sum Summary
	c.src.View(func(s *coordinator.State) { sum = Summarize(s) })
	c.collectState(ch, sum)
	c.collectRaft(ch)
}

func (c *Coordinator) collectState(ch chan<- prometheus.Metric, sum Summary) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, st := range JobStates {
		gauge(c.jobs, float64(sum.Jobs[st]), string(st))
	}
	for _, k := range StepKinds {
		for _, st := range TaskStates {
			gauge(c.tasks, float64(sum.Tasks[k][st]), string(k), string(st))
		}
		counter(c.dispatches, float64(sum.Dispatches[k]), string(k))
		counter(c.failures, float64(sum.Failures[k]), string(k))
		counter(c.ignored, float64(sum.Ignored[k]), string(k))
		for d, vs := range map[*prometheus.Desc][]float64{c.taskSeconds: sum.TaskSeconds[k], c.stepSeconds: sum.StepSeconds[k]} {
			h := newHistogram()
			for _, v := range vs {
				h.observe(v)
			}
			ch <- prometheus.MustNewConstHistogram(d, h.count, h.sum, h.buckets, string(k))
		}
	}
	gauge(c.bytes, float64(sum.BytesIn), "in")
	gauge(c.bytes, float64(sum.BytesOut), "out")
	gauge(c.workers, float64(sum.Assigned), "assigned")
	gauge(c.workers, float64(sum.Free), "free")
	gauge(c.workers, float64(sum.Lost), "lost")
}

func (c *Coordinator) collectRaft(ch chan<- prometheus.Metric) {
	r := c.src.Raft()
	if r == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	state := r.State()
	for _, st := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		gauge(c.raftState, boolFloat(st == state), strings.ToLower(st.String()))
	}
	gauge(c.term, float64(r.CurrentTerm()))
	gauge(c.commit, float64(r.CommitIndex()))
	gauge(c.applied, float64(r.AppliedIndex()))
	gauge(c.lastLog, float64(r.LastIndex()))
	if state != raft.Shutdown {
		if f := r.GetConfiguration(); f.Error() == nil {
			n := 0
			for _, s := range f.Configuration().Servers {
				if s.Suffrage == raft.Voter {
					n++
				}
			}
			gauge(c.voters, float64(n))
		}
	}
	_, id := r.LeaderWithID()
	gauge(c.leaderKnown, boolFloat(id != ""))
	c.noteLeader(string(id))
	c.mu.Lock()
	ch <- prometheus.MustNewConstMetric(c.leaderChanges, prometheus.CounterValue, float64(c.changes))
	c.mu.Unlock()
	contact := 0.0
	if state != raft.Leader {
		if t := r.LastContact(); !t.IsZero() {
			contact = time.Since(t).Seconds()
		}
	}
	gauge(c.contact, contact)
}

// noteLeader counts a leader that differs from the last known one; it reports whether it did.
func (c *Coordinator) noteLeader(id string) bool {
	if id == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == c.leader {
		return false
	}
	c.leader = id
	c.changes++
	return true
}

// Watch follows raft's leader observations until ctx ends, counting every new leader and
// logging it (with the term) on log. Call it once, after the node has started.
func (c *Coordinator) Watch(ctx context.Context, log *slog.Logger) {
	r := c.src.Raft()
	if r == nil {
		return
	}
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(obs)
	defer r.DeregisterObserver(obs)
	_, id := r.LeaderWithID() // a leader elected before the observer was registered
	if c.noteLeader(string(id)) {
		log.Info("raft leader", "leader", string(id), "term", r.CurrentTerm())
	}
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			lo := o.Data.(raft.LeaderObservation)
			if lo.LeaderID == "" {
				log.Warn("raft leader lost", "term", r.CurrentTerm())
			} else if c.noteLeader(string(lo.LeaderID)) {
				log.Info("raft leader changed", "leader", string(lo.LeaderID), "term", r.CurrentTerm())
			}
		}
	}
}
