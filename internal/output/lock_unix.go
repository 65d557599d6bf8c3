//go:build unix

package output

import (
	"errors"
	"os"
	"syscall"
)

// errLocked reports a lock held by another process (or another open file in this one).
var errLocked = errors.New("locked")

// lock is an exclusive flock on a file; the kernel releases it when the process dies.
type lock struct{ f *os.File }

// createLock creates path and locks it.
func createLock(path string) (*lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return &lock{f}, nil
}

// tryLock locks the existing file path without waiting: errLocked when it is held, an error
// wrapping os.ErrNotExist when there is no such file.
func tryLock(path string) (*lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return &lock{f}, nil
}

// unlock releases the lock (closing the file releases the flock).
func (l *lock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
