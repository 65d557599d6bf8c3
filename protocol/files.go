package protocol

import (
	"fmt"
	"path"
	"strings"
)

// File is one file of a files artifact.
type File struct {
	// Name is a plain file name (no directory, no "..").
	Name string
	// Data is the file's content.
	Data []byte
}

// MaxFileNameLen bounds File.Name.
const MaxFileNameLen = 255

// ValidateFileName checks that name is a plain file name that is safe to create in a directory.
func ValidateFileName(name string) error {
	if name == "" || len(name) > MaxFileNameLen || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") || path.Base(name) != name {
		return fmt.Errorf("%w: file name %q is not a plain file name", ErrInvalid, truncate(name, 80))
	}
	return nil
}

// Files content layout (little-endian):
//
//	magic "FILS", version (= ContentVersion), file count F
//	F times, in name order: name length L, data length D (uint32 each), the name, the data

// EncodeFiles returns the canonical content of a files artifact (files sorted by name; names
// unique).
func EncodeFiles(files []File) ([]byte, error) {
	sorted := append([]File(nil), files...)
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && sorted[j].Name < sorted[j-1].Name; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	out := appendContentHeader(nil, filesMagic)
	out = appendU32(out, uint32(len(sorted)))
	for i, f := range sorted {
		if err := ValidateFileName(f.Name); err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
		if i > 0 && sorted[i-1].Name == f.Name {
			return nil, fmt.Errorf("files: %w: file %q twice", ErrInvalid, f.Name)
		}
		if !fitsU32(0, len(f.Data)) {
			return nil, fmt.Errorf("files: %w: %s is %d bytes", ErrInvalid, f.Name, len(f.Data))
		}
		out = appendU32(out, uint32(len(f.Name)))
		out = appendU32(out, uint32(len(f.Data)))
		out = append(out, f.Name...)
		out = append(out, f.Data...)
	}
	return out, nil
}

// DecodeFiles decodes the content of a files artifact, accepting exactly what EncodeFiles writes.
func DecodeFiles(content []byte) ([]File, error) {
	d := newDecoder("files", content)
	d.header(filesMagic)
	n := d.u32("file count")
	if !d.need(uint64(n), 8, "files") {
		return nil, d.err
	}
	out := make([]File, 0, n)
	for i := 0; i < int(n) && d.err == nil; i++ {
		l, dl := d.u32("name length"), d.u32("data length")
		name := string(d.bytes(uint64(l), "name"))
		data := d.bytes(uint64(dl), "data")
		if d.err != nil {
			break
		}
		if err := ValidateFileName(name); err != nil {
			d.fail("file %d: %v", i, err)
			break
		}
		if i > 0 && out[i-1].Name >= name {
			d.fail("file %d: %q is not after %q", i, name, out[i-1].Name)
			break
		}
		out = append(out, File{Name: name, Data: append([]byte(nil), data...)})
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return out, nil
}
