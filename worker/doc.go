// Package worker will hold the process that owns one contiguous layer shard of the model in a merge
// cluster: it runs feature capture for its layers, accumulates its sites' Gram matrices locally,
// solves its own sites and passes activations to the next shard.
//
// Not built yet: the cluster is a later issue. The units it will call already exist in one process:
// internal/gram (capture Grams of sites for sequences under a model state) and internal/merge
// (solve a site from its Grams).
package worker
