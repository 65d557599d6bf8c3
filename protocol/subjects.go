package protocol

import (
	"fmt"
	"strconv"
)

// Subject prefix and names. Every subject of this format version starts with SubjectPrefix, so a
// NATS account can grant a cluster exactly its own subjects.
const (
	// SubjectPrefix starts every subject of this message version.
	SubjectPrefix = "iteris.v1."
	// SubjectSubmit is the job API's submit request (answered by the raft leader).
	SubjectSubmit = SubjectPrefix + "api.submit"
	// SubjectStatus is the job API's status request.
	SubjectStatus = SubjectPrefix + "api.status"
	// SubjectCancel is the job API's cancel request.
	SubjectCancel = SubjectPrefix + "api.cancel"
	// SubjectFetch is the job API's request for a finished job's output files.
	SubjectFetch = SubjectPrefix + "api.fetch"
	// SubjectRegister is a worker's registration request.
	SubjectRegister = SubjectPrefix + "worker.register"
	// SubjectHeartbeat is a worker's periodic heartbeat request; the reply carries its assignment.
	SubjectHeartbeat = SubjectPrefix + "worker.heartbeat"
	// SubjectTasks matches every task subject (the tasks stream's subjects).
	SubjectTasks = SubjectPrefix + "task.>"
	// SubjectResults matches every result subject (the results stream's subjects).
	SubjectResults = SubjectPrefix + "result.>"
	// SubjectEvents matches every job's progress events (core NATS).
	SubjectEvents = SubjectPrefix + "event.>"
)

// JetStream names.
const (
	// StreamTasks is the work-queue stream of tasks: explicit ack, ack wait, max deliver.
	StreamTasks = "ITERIS_TASKS"
	// StreamResults is the work-queue stream of task results, consumed by the raft leader.
	StreamResults = "ITERIS_RESULTS"
	// ConsumerResults is the durable consumer of StreamResults (one for the coordinator group:
	// whichever coordinator leads pulls from it).
	ConsumerResults = "coordinator"
)

// TaskSubject is the subject of the tasks of one shard of a job: only the worker holding that
// shard's weights consumes it.
func TaskSubject(job string, shard int) string {
	return SubjectPrefix + "task." + job + "." + strconv.Itoa(shard)
}

// TaskConsumer is the durable consumer name of one shard's tasks.
func TaskConsumer(job string, shard int) string {
	return fmt.Sprintf("task_%s_%d", job, shard)
}

// ResultSubject is the subject a worker publishes a job's task results on.
func ResultSubject(job string) string { return SubjectPrefix + "result." + job }

// EventSubject is the subject of a job's progress events.
func EventSubject(job string) string { return SubjectPrefix + "event." + job }

// GenSubject is where the shard of a calibrate attempt receives generation steps from its
// neighbour (core NATS; the ring of the pipelined greedy decode).
func GenSubject(job string, attempt, shard int) string {
	return fmt.Sprintf("%sgen.%s.%d.%d", SubjectPrefix, job, attempt, shard)
}

// TaskMsgID is the JetStream message id of a task attempt: a leader that publishes the same
// attempt twice (after a failover) is de-duplicated by the server.
func TaskMsgID(job string, step, shard, attempt int) string {
	return fmt.Sprintf("%s.%d.%d.%d", job, step, shard, attempt)
}

// ResultMsgID is the JetStream message id of a task attempt's result.
func ResultMsgID(job string, step, shard, attempt int, worker string) string {
	return fmt.Sprintf("%s.%d.%d.%d.%s", job, step, shard, attempt, worker)
}
