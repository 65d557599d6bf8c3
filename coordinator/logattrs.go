package coordinator

import "github.com/iteris-dev/iteris/protocol"

// taskAttrs are the log fields of one task attempt: job, task (job/step/shard), step, shard and
// attempt, as the workers log them too.
func taskAttrs(job string, step, shard, attempt int, more ...any) []any {
	return append([]any{"job", job, "task", protocol.TaskKey{Job: job, Step: step, Shard: shard}.String(),
		"step", step, "shard", shard, "attempt", attempt}, more...)
}
