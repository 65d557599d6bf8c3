//go:build !unix

package inputs

import "path/filepath"

// mountPoint reports whether dir is the root of its volume (other mount points are not detected
// here).
func mountPoint(dir string) bool { return filepath.Dir(dir) == dir }
