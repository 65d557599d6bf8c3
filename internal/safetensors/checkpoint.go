package safetensors

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/iteris-dev/iteris/internal/jsonx"
)

// File names of a Hugging Face model directory.
const (
	// SingleFileName is the weights file of an unsharded model.
	SingleFileName = "model.safetensors"
	// IndexFileName lists the shards of a sharded model.
	IndexFileName = "model.safetensors.index.json"
)

// Checkpoint is the set of tensors of a model directory: one
// model.safetensors, or the shards listed by model.safetensors.index.json.
// It is safe for concurrent use.
type Checkpoint struct {
	dir   string
	index string // path of the index file; empty for a single file
	files []*File
	where map[string]*File // tensor name -> file holding it
	names []string
	meta  map[string]string
}

// OpenCheckpoint opens the model at dir. dir may also name a .safetensors
// file or an index .json file directly. With an index, every shard is opened
// and validated, and every weight_map entry must exist in its shard; errors
// name the index file, the tensor and the shard.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("safetensors: checkpoint: %w", err)
	}
	if !st.IsDir() {
		if strings.HasSuffix(dir, ".json") {
			return openIndex(filepath.Dir(dir), dir)
		}
		return openSingle(filepath.Dir(dir), dir)
	}
	index := filepath.Join(dir, IndexFileName)
	if _, err := os.Stat(index); err == nil {
		return openIndex(dir, index)
	}
	single := filepath.Join(dir, SingleFileName)
	if _, err := os.Stat(single); err == nil {
		return openSingle(dir, single)
	}
	return nil, fmt.Errorf("safetensors: checkpoint %s: %w: neither %s nor %s", dir, ErrNotFound, SingleFileName, IndexFileName)
}

// openSingle opens an unsharded checkpoint.
func openSingle(dir, path string) (*Checkpoint, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{dir: dir, files: []*File{f}, where: make(map[string]*File, len(f.names)), names: f.Names(), meta: f.meta}
	for _, n := range f.names {
		c.where[n] = f
	}
	return c, nil
}

// openIndex opens a sharded checkpoint described by the index file.
func openIndex(dir, index string) (_ *Checkpoint, err error) {
	data, err := os.ReadFile(index)
	if err != nil {
		return nil, fmt.Errorf("safetensors: checkpoint: %w", err)
	}
	wrap := func(err error) error { return fmt.Errorf("safetensors: index %s: %w", index, err) }
	top, err := objectMembers(data, "index")
	if err != nil {
		return nil, wrap(err)
	}
	var weightMap []jsonx.Member
	meta := map[string]string{}
	haveMap := false
	for _, m := range top {
		switch m.Key {
		case "weight_map":
			if weightMap, err = objectMembers(m.Val, "weight_map"); err != nil {
				return nil, wrap(err)
			}
			haveMap = true
		case "metadata":
			if jsonx.IsNull(m.Val) {
				continue
			}
			members, err := objectMembers(m.Val, "metadata")
			if err != nil {
				return nil, wrap(err)
			}
			for _, mm := range members { // e.g. total_size is a number: keep its JSON text
				if s, ok := rawString(mm.Val); ok {
					meta[mm.Key] = s
				} else {
					meta[mm.Key] = compact(mm.Val)
				}
			}
		}
	}
	if !haveMap {
		return nil, wrap(fmt.Errorf("%w: missing \"weight_map\"", ErrMalformed))
	}
	c := &Checkpoint{dir: dir, index: index, where: make(map[string]*File, len(weightMap)), meta: meta}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	shards := map[string]*File{}
	for _, m := range weightMap {
		shard, ok := rawString(m.Val)
		if !ok {
			return nil, wrap(fmt.Errorf("%w: tensor %q: shard is %s, want a file name", ErrMalformed, m.Key, jsonx.Kind(m.Val)))
		}
		if err := checkShardName(shard); err != nil {
			return nil, wrap(fmt.Errorf("%w: tensor %q: %w", ErrMalformed, m.Key, err))
		}
		f, ok := shards[shard]
		if !ok {
			path := filepath.Join(dir, shard)
			f, err = Open(path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil, wrap(fmt.Errorf("tensor %q: shard %s: %w: %w", m.Key, shard, ErrNotFound, err))
				}
				return nil, wrap(fmt.Errorf("tensor %q: shard %s: %w", m.Key, shard, err))
			}
			shards[shard] = f
			c.files = append(c.files, f)
		}
		if _, ok := f.tensors[m.Key]; !ok {
			return nil, wrap(fmt.Errorf("tensor %q: %w in shard %s", m.Key, ErrNotFound, f.path))
		}
		c.where[m.Key] = f
		c.names = append(c.names, m.Key)
	}
	sort.Strings(c.names)
	return c, nil
}

// Dir returns the model directory.
func (c *Checkpoint) Dir() string { return c.dir }

// IndexPath returns the index file's path, or "" for a single-file model.
func (c *Checkpoint) IndexPath() string { return c.index }

// maxNameBytes is the longest file name (one path element) a shard may have, as on Linux.
const maxNameBytes = 255

// checkShardName refuses a shard name that is not a file inside the directory or that no file
// system holds (the name is quoted at most 64 bytes long).
func checkShardName(shard string) error {
	short := shard
	if len(short) > 64 {
		short = short[:64] + "..."
	}
	if !filepath.IsLocal(shard) {
		return fmt.Errorf("shard %q is not a file name inside the directory", short)
	}
	for _, el := range strings.Split(filepath.ToSlash(shard), "/") {
		if len(el) > maxNameBytes {
			return fmt.Errorf("shard %q has a name of %d bytes, longer than the %d a file name may have", short, len(el), maxNameBytes)
		}
	}
	return nil
}

// Files returns the open files (one per shard) in index order. They belong
// to the Checkpoint: do not close them.
func (c *Checkpoint) Files() []*File { return append([]*File(nil), c.files...) }

// Names returns every tensor name in sorted order.
func (c *Checkpoint) Names() []string { return append([]string(nil), c.names...) }

// Metadata returns the index's "metadata" (non-string values as their JSON
// text, e.g. total_size) or, for a single file, its __metadata__.
func (c *Checkpoint) Metadata() map[string]string {
	m := make(map[string]string, len(c.meta))
	for k, v := range c.meta {
		m[k] = v
	}
	return m
}

// File returns the file holding the named tensor.
func (c *Checkpoint) File(name string) (*File, bool) {
	f, ok := c.where[name]
	return f, ok
}

// Info returns the description of the named tensor; its offsets are within
// the file that File returns.
func (c *Checkpoint) Info(name string) (TensorInfo, bool) {
	f, ok := c.where[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

// notFound reports a tensor missing from the checkpoint.
func (c *Checkpoint) notFound(name string) error {
	src := c.index
	if src == "" && len(c.files) == 1 {
		src = c.files[0].path
	}
	return fmt.Errorf("safetensors: %s: tensor %q: %w", src, name, ErrNotFound)
}

// Float32 returns the named tensor converted to float32, as File.Float32.
func (c *Checkpoint) Float32(name string) ([]float32, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, c.notFound(name)
	}
	return f.Float32(name)
}

// Raw returns the named tensor's stored bytes, as File.Raw.
func (c *Checkpoint) Raw(name string) ([]byte, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, c.notFound(name)
	}
	return f.Raw(name)
}

// Close closes every shard and returns the first error.
func (c *Checkpoint) Close() error {
	var first error
	for _, f := range c.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
