//go:build !unix

package natstest

// lockFile does not lock where flock is missing: concurrent builds then both run, and the
// atomic rename still publishes one complete binary.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
