// Package coordinator will hold the raft-replicated job state machine of an iteris merge cluster:
// jobs, their layer plan, the current iteration and level, every task's state, lease and attempt,
// and the content hash of every result. Only the leader schedules; a new leader resumes from the
// replicated state.
//
// Not built yet: the cluster is a later issue. Today `iteris merge` runs the merge in one process
// (see internal/merge and internal/pipeline); this package is where the replicated scheduler goes.
package coordinator
