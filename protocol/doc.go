// Package protocol defines what iteris processes exchange: today the artifacts (content-addressed
// bytes between shards and to the coordinator); the NATS subjects and the task and result messages
// join it with the cluster.
//
// # Artifacts
//
// An artifact is content of one Kind (rows, factors, sequences) addressed by its Ref, the sha256
// of the canonical uncompressed content. It is stored as a frame: a fixed 64-byte Header (magic,
// format version, kind, codec, content and payload lengths, the content's sha256, a header
// checksum) followed by the payload, the content stored raw or zstd-compressed (Codec). The codec
// never changes the ref. DecodeFrame and ReadFrame check everything against the ref asked for and a
// caller's size limit, decompress into a buffer bounded by the declared length, and verify the hash;
// errors name the ref and wrap ErrCorrupt, ErrTooLarge or ErrVersion.
//
// The content encodings are little-endian and versioned (ContentVersion); each decoder is strict
// (every count is checked against the bytes present before anything is allocated, no trailing
// bytes), so encode(decode(b)) == b for every accepted b:
//   - EncodeRows / DecodeRows: a residual stream, a list of Batch (the wire form of a model state);
//   - EncodeFactors / DecodeFactors: per-site LoRA factors B (m x k) and A (k x n) as float64, plus
//     JSON site records;
//   - EncodeSequences / DecodeSequences: token-id sequences per task.
//
// protocol imports no other iteris package. DESIGN.md describes the formats, the limits and which
// test covers which failure.
package protocol
