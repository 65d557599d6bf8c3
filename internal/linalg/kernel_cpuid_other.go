//go:build !amd64

package linalg

// cpuSignature is only read on amd64.
func cpuSignature() (vendor string, family, model, stepping int) { return "", 0, 0, 0 }
