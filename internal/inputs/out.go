package inputs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/iteris-dev/iteris/internal/spec"
)

// CheckOut checks, before any work, that the merge can write OUT_DIR out:
//   - out is not, does not contain and does not lie inside any input of s (the config file, the
//     base model, an adapter directory, a calibration file), with symbolic links resolved, and
//     is not the working directory or one of its parents;
//   - out does not exist, or is an empty directory, or force is set (then it is replaced whole
//     at the end, so it must be a directory that can be renamed: not a mount point);
//   - the nearest existing directory above out accepts a new entry (a probe directory is
//     created and removed).
//
// Errors wrap ErrInput and name OUT_DIR and the input concerned.
func CheckOut(s *spec.Spec, out string, force bool) error {
	if out == "" {
		return fmt.Errorf("%w: no output directory", ErrInput)
	}
	real, err := resolve(out)
	if err != nil {
		return fmt.Errorf("%w: output %s: %v", ErrInput, out, err)
	}
	if err := checkOverlap(s, out, real); err != nil {
		return err
	}
	fi, err := os.Stat(out)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("%w: output %s: %v", ErrInput, out, err)
	case !fi.IsDir():
		return fmt.Errorf("%w: output %s exists and is not a directory", ErrInput, out)
	default:
		entries, err := os.ReadDir(out)
		if err != nil {
			return fmt.Errorf("%w: output %s: %v", ErrInput, out, err)
		}
		if len(entries) > 0 && !force {
			return fmt.Errorf("%w: output directory %s is not empty (use --force to replace it)", ErrInput, out)
		}
		if mountPoint(real) {
			return fmt.Errorf("%w: output directory %s is a mount point: it cannot be replaced by a rename; give a directory inside it", ErrInput, out)
		}
	}
	return probe(out, real)
}

// inputPaths lists what the merge reads, by config key.
func inputPaths(s *spec.Spec) [][2]string {
	var in [][2]string
	if s.Path != "" {
		in = append(in, [2]string{"the config file", s.Path})
	}
	in = append(in, [2]string{"base_model", s.BaseModel})
	for i, a := range s.Adapters {
		in = append(in, [2]string{fmt.Sprintf("adapters[%d].path", i), a.Path})
		if a.Calibration != "" {
			in = append(in, [2]string{fmt.Sprintf("adapters[%d].calibration", i), a.Calibration})
		}
	}
	return in
}

// checkOverlap refuses an OUT_DIR (resolved: real) that is, contains or lies inside an input or
// the working directory.
func checkOverlap(s *spec.Spec, out, real string) error {
	for _, in := range inputPaths(s) {
		if in[1] == "" {
			continue
		}
		p, err := resolve(in[1])
		if err != nil {
			continue // reported by the checks of the input itself
		}
		var how string
		switch {
		case p == real:
			how = "is"
		case within(p, real):
			how = "contains"
		case within(real, p):
			how = "lies inside"
		default:
			continue
		}
		return fmt.Errorf("%w: output directory %s %s %s %s (%s): the merge would overwrite its own input; give another OUT_DIR",
			ErrInput, out, how, in[0], in[1], p)
	}
	if wd, err := os.Getwd(); err == nil {
		if w, err := filepath.EvalSymlinks(wd); err == nil && (w == real || within(w, real)) {
			return fmt.Errorf("%w: output directory %s is the working directory or one of its parents (%s): it cannot be replaced while in use; give a new directory such as ./merged",
				ErrInput, out, w)
		}
	}
	return nil
}

// probe checks that the nearest existing directory above out takes a new entry.
func probe(out, real string) error {
	dir := filepath.Dir(real)
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			break
		}
		dir = up
	}
	p, err := os.MkdirTemp(dir, "."+filepath.Base(real)+".probe-")
	if err != nil {
		return fmt.Errorf("%w: output %s: cannot create entries in %s: %v", ErrInput, out, dir, err)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("%w: output %s: cannot remove the probe entry %s: %v", ErrInput, out, p, err)
	}
	return nil
}

// resolve returns the absolute form of p with every symbolic link resolved; the part of p that
// does not exist yet is appended as written.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for cur := abs; ; {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			for i := len(rest) - 1; i >= 0; i-- {
				r = filepath.Join(r, rest[i])
			}
			return r, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		up := filepath.Dir(cur)
		if up == cur {
			return abs, nil
		}
		rest = append(rest, filepath.Base(cur))
		cur = up
	}
}

// within reports whether path p lies strictly inside directory dir (both clean and absolute).
func within(p, dir string) bool {
	if dir == string(filepath.Separator) {
		return p != dir
	}
	return strings.HasPrefix(p, dir+string(filepath.Separator))
}
