//go:build !unix

package safetensors

import "os"

// mapFile never maps on this platform; the caller reads the file instead.
func mapFile(*os.File, int64) ([]byte, func() error, bool) { return nil, nil, false }

// releasePages is never called where files are not mapped.
func releasePages([]byte) error { return nil }
