//go:build !((linux || darwin || freebsd || netbsd) && (amd64 || arm64))

package linalg

import (
	"errors"
	"runtime"
)

// openLibrary always fails: loading OpenBLAS through purego is wired up
// only for linux, darwin, freebsd and netbsd on amd64 and arm64.
func openLibrary(string) (*library, error) {
	return nil, errors.New("loading OpenBLAS is not supported on " + runtime.GOOS + "/" + runtime.GOARCH)
}

func (l *library) call(uintptr, ...uintptr) {
	panic("linalg: OpenBLAS is not supported on this platform")
}

func (l *library) threads() int { return 1 }

func (l *library) setThreads(int) {}
