package mergejob

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/iteris-dev/iteris/internal/spec"
)

// ErrOutsideInputs is returned for a submitted config that names a path outside the
// coordinator's input roots (Handler.Roots).
var ErrOutsideInputs = errors.New("outside the cluster's input directories")

// checkRoots checks that every path of a config (resolved) lies in one of roots, after symbolic
// links are resolved, before anything is read from it: a submitter cannot make the cluster read
// (or learn whether there is) a file elsewhere. raw gives the paths as written, for the message.
func checkRoots(roots []string, raw, s *spec.Spec) error {
	if len(roots) == 0 {
		return nil
	}
	type named struct{ key, raw, path string }
	paths := []named{{"base_model", raw.BaseModel, s.BaseModel}}
	for i, a := range s.Adapters {
		paths = append(paths, named{fmt.Sprintf("adapters[%d].path", i), raw.Adapters[i].Path, a.Path})
		if a.Calibration != "" {
			paths = append(paths, named{fmt.Sprintf("adapters[%d].calibration", i), raw.Adapters[i].Calibration, a.Calibration})
		}
	}
	for _, p := range paths {
		if p.path == "" {
			continue
		}
		if !inRoots(roots, p.path) {
			return fmt.Errorf("%s: %s: %s%s is %w (%s)", s.Path, p.key, p.raw, where(p.raw, p.path), ErrOutsideInputs, strings.Join(roots, ", "))
		}
	}
	return nil
}

func where(raw, path string) string {
	if raw == path {
		return ""
	}
	return " (" + path + ")"
}

// inRoots reports whether path, and what it resolves to through symbolic links, lie in a root.
func inRoots(roots []string, path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	check := []string{abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		check = append(check, real)
	}
	for _, c := range check {
		ok := false
		for _, r := range roots {
			if rel, err := filepath.Rel(r, c); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
