//go:build unix

package safetensors

import (
	"os"
	"syscall"
	"unsafe"
)

// mapFile maps size bytes of f read-only. ok is false when mapping is not
// possible, and the caller falls back to reading the file.
func mapFile(f *os.File, size int64) (data []byte, unmap func() error, ok bool) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil, false
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, false
	}
	return b, func() error { return syscall.Munmap(b) }, true
}

// releasePages drops the whole pages inside b, a part of a read-only file
// mapping, from the process's resident set (MADV_DONTNEED); later reads fault
// them in again from the file.
func releasePages(b []byte) error {
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := (start + page - 1) &^ (page - 1)
	hi := (start + uintptr(len(b))) &^ (page - 1)
	if hi <= lo {
		return nil
	}
	return syscall.Madvise(b[lo-start:hi-start], syscall.MADV_DONTNEED)
}
