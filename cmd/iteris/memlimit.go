package main

import "runtime/debug"

// goMemoryLimit decides the Go runtime's soft memory limit of a worker: its --memory budget, so
// that the collector keeps the heap within what the worker offered the plan (with the default
// GOGC alone the heap may grow to about twice the live data: a 155.7M shard estimated at 2.4 GiB
// peaked at 3.5 GiB). A GOMEMLIMIT the user set is never overridden (ok is false then).
func goMemoryLimit(budget int64, getenv func(string) string) (limit int64, ok bool) {
	if getenv("GOMEMLIMIT") != "" || budget <= 0 {
		return 0, false
	}
	return budget, true
}

// applyMemoryLimit sets the limit goMemoryLimit decides and returns the limit in effect.
func applyMemoryLimit(budget int64, getenv func(string) string) int64 {
	if limit, ok := goMemoryLimit(budget, getenv); ok {
		debug.SetMemoryLimit(limit)
	}
	return debug.SetMemoryLimit(-1)
}
