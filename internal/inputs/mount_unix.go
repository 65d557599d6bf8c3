//go:build unix

package inputs

import (
	"os"
	"path/filepath"
	"syscall"
)

// mountPoint reports whether dir (absolute, resolved) is a mount point or the root: a directory
// that a rename cannot move.
func mountPoint(dir string) bool {
	parent := filepath.Dir(dir)
	if parent == dir {
		return true
	}
	a, errA := os.Stat(dir)
	b, errB := os.Stat(parent)
	if errA != nil || errB != nil {
		return false
	}
	sa, okA := a.Sys().(*syscall.Stat_t)
	sb, okB := b.Sys().(*syscall.Stat_t)
	return okA && okB && sa.Dev != sb.Dev
}
