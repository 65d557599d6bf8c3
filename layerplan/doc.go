// Package layerplan will cut a model into contiguous layer shards that fit each worker's memory and
// derive each step's tasks for the jacobi and sweep schedules.
//
// Not built yet: the cluster is a later issue. The dependency levels the sweep schedule uses are
// computed today by internal/merge.
package layerplan
