// Package protocol will define the NATS subjects and the versioned messages exchanged between
// coordinators and workers: tasks on a JetStream work-queue stream and artifacts as chunked,
// sha256-checked objects.
//
// Not built yet: the cluster is a later issue.
package protocol
