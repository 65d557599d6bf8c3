// Package artifact stores the cluster's artifacts: content-addressed bytes (protocol frames)
// grouped by job. Put frames content and stores it under its ref (the sha256 of the content);
// Get reads a frame back and verifies it completely (magic, header, lengths against a size limit,
// decompression, sha256) before returning anything; Delete and DropJob remove one artifact or all
// of a job's.
//
// Two implementations: JetStream, an object store bucket per job on a NATS JetStream server
// (chunked under the server's max payload, streamed on Get), and Memory, for unit tests. Both
// satisfy Store. DESIGN.md gives the invariants and the test of each failure.
package artifact
