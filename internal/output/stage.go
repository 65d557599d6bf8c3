package output

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Staging directories. OUT_DIR is written as .NAME.tmp-XXXX/out next to it (NAME = OUT_DIR's
// base name), with .NAME.tmp-XXXX/lock held locked while the merge that made it runs; a replaced
// OUT_DIR is moved to .NAME.tmp-XXXX/old until the new one is in place.
const (
	stageInfix = ".tmp-"
	lockFile   = "lock"
	stagedDir  = "out"
	oldDir     = "old"
	// unlockedGrace is how old a staging directory without a lock file must be before it counts
	// as stale (a merge creates the lock right after the directory).
	unlockedGrace = time.Minute
)

// StagePrefix returns the name prefix of dir's staging directories (".NAME.tmp-").
func StagePrefix(dir string) string {
	return "." + filepath.Base(filepath.Clean(dir)) + stageInfix
}

// CleanStale removes the staging directories of dir that no running merge holds (left by a merge
// that was killed) and returns their paths. A staging directory still locked by another process
// is left alone and reported in the error.
func CleanStale(dir string) ([]string, error) {
	parent := filepath.Dir(filepath.Clean(dir))
	ents, err := os.ReadDir(parent)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	prefix := StagePrefix(dir)
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		ok, err := removeIfStale(p)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			removed = append(removed, p)
		}
	}
	return removed, errors.Join(errs...)
}

// removeIfStale removes the staging directory p unless a running merge holds its lock.
func removeIfStale(p string) (bool, error) {
	l, err := tryLock(filepath.Join(p, lockFile))
	switch {
	case errors.Is(err, errLocked):
		return false, fmt.Errorf("output: %s is in use by another merge into the same directory", p)
	case errors.Is(err, os.ErrNotExist):
		fi, serr := os.Stat(p)
		if serr != nil || time.Since(fi.ModTime()) < unlockedGrace {
			return false, nil // just created by a merge that is about to lock it
		}
	case err != nil:
		return false, fmt.Errorf("output: stale staging directory %s: %w", p, err)
	}
	rerr := os.RemoveAll(p)
	if l != nil {
		l.unlock()
	}
	if rerr != nil {
		return false, fmt.Errorf("output: remove stale staging directory %s: %w", p, rerr)
	}
	return true, nil
}

// stage is a locked staging directory next to OUT_DIR.
type stage struct {
	dir, out string // out is OUT_DIR
	lock     *lock
}

// newStage creates and locks a staging directory for out (its parent must exist).
func newStage(out string) (*stage, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(out), StagePrefix(out))
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	l, err := createLock(filepath.Join(tmp, lockFile))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("output: lock %s: %w", tmp, err), os.RemoveAll(tmp))
	}
	return &stage{dir: tmp, out: out, lock: l}, nil
}

// path returns the directory that becomes OUT_DIR.
func (s *stage) path() string { return filepath.Join(s.dir, stagedDir) }

// discard removes the staging directory.
func (s *stage) discard() error {
	var err error
	if s.dir != "" {
		err = os.RemoveAll(s.dir)
	}
	s.lock.unlock()
	if err != nil {
		return fmt.Errorf("output: remove staging directory: %w", err)
	}
	return nil
}

// commit moves the staged directory to OUT_DIR. An existing OUT_DIR is replaced when force is
// set and must otherwise still be empty; it is moved into the staging directory first and moved
// back if the staged directory cannot take its place. ctx is checked before anything moves.
func (s *stage) commit(ctx context.Context, force bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Lstat(s.out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Rename(s.path(), s.out); err != nil {
			return fmt.Errorf("output: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("output: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("output: %s exists and is not a directory", s.out)
	}
	if !force {
		if err := os.Remove(s.out); err != nil { // only succeeds on an empty directory
			return fmt.Errorf("output: %s is no longer empty (use --force to replace it): %w", s.out, err)
		}
		if err := os.Rename(s.path(), s.out); err != nil {
			return fmt.Errorf("output: %w", err)
		}
		return nil
	}
	old := filepath.Join(s.dir, oldDir)
	if err := os.Rename(s.out, old); err != nil {
		return fmt.Errorf("output: move the old %s aside: %w", s.out, err)
	}
	if err := os.Rename(s.path(), s.out); err != nil {
		if rerr := os.Rename(old, s.out); rerr != nil {
			// Keep the staging directory: it holds the old contents.
			s.dir = ""
			return fmt.Errorf("output: %w; moving the old contents back also failed (%v): they are in %s", err, rerr, old)
		}
		return fmt.Errorf("output: %w (the old %s is back in place)", err, s.out)
	}
	return nil
}

// syncDir fsyncs a directory so that renames in it persist.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("output: sync %s: %w", dir, err)
	}
	return nil
}
