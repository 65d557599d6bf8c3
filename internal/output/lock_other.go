//go:build !unix

package output

import (
	"errors"
	"os"
	"time"
)

// errLocked reports a lock held by another merge.
var errLocked = errors.New("locked")

// staleAfter is how old an unlockable staging directory must be to count as stale where there
// is no flock.
const staleAfter = 24 * time.Hour

// lock marks a staging directory in use; without flock, an old lock file counts as abandoned.
type lock struct{ f *os.File }

// createLock creates path.
func createLock(path string) (*lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &lock{f}, nil
}

// tryLock reports errLocked unless the lock file is older than staleAfter.
func tryLock(path string) (*lock, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if time.Since(fi.ModTime()) < staleAfter {
		return nil, errLocked
	}
	return nil, nil
}

// unlock closes the lock file.
func (l *lock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
