package output

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/internal/spec"
)

// Options says where and how Write writes.
type Options struct {
	// Dir is OUT_DIR. When it is a symbolic link, the directory it points to is replaced.
	Dir string
	// Force replaces a non-empty Dir; without it Dir must not exist or be empty.
	Force bool
	// Spec is the merge config (its base model, output dtype and raw bytes are written).
	Spec *spec.Spec
	// Base lists the base model's linear modules (target_modules is written as leaf names when
	// that selects exactly the merged modules).
	Base adapter.Shapes
	// BaseModelName is the adapter config's base_model_name_or_path ("" writes null).
	BaseModelName string
	// Command is the command line, recorded in the model card.
	Command string
	// Warn receives problems that do not fail the write (nil discards them).
	Warn func(format string, args ...any)
}

// Write writes the adapter, model card, config copy and report into a locked staging directory
// next to OUT_DIR and renames it into place: OUT_DIR is either left as it was or replaced whole.
// When ctx is done before the rename, the staging directory is removed and ctx's error returned.
func Write(ctx context.Context, opt Options, report *Report, mods []*adapter.Module) error {
	dt, err := DType(opt.Spec.Output.DType)
	if err != nil {
		return err
	}
	rj, err := MarshalReport(report)
	if err != nil {
		return err
	}
	card, err := modelCard(opt, report)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"README.md":          []byte(card),
		"merge_report.json":  rj,
		"iteris_config.yaml": opt.Spec.Raw,
	}
	warn := opt.Warn
	if warn == nil {
		warn = func(string, ...any) {}
	}
	out, err := target(opt.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	st, err := newStage(out)
	if err != nil {
		return err
	}
	err = adapter.Write(st.path(), mods, adapter.WriteOptions{BaseModel: opt.BaseModelName, DType: dt, Base: opt.Base, Files: files,
		Metadata: map[string]string{"iteris_method": report.Method}})
	if err == nil {
		err = st.commit(ctx, opt.Force)
	}
	if derr := st.discard(); derr != nil {
		if err != nil {
			return errors.Join(err, derr)
		}
		warn("%v", derr)
	}
	if err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(out)); err != nil {
		warn("%v (the rename into place may not survive a power loss)", err)
	}
	return nil
}

// target returns the directory Write replaces: dir, or where dir points when it is a symbolic
// link.
func target(dir string) (string, error) {
	dir = filepath.Clean(dir)
	fi, err := os.Lstat(dir)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return dir, nil
	}
	t, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("output: %s: %w", dir, err)
	}
	return t, nil
}

// DType maps output.dtype to the safetensors dtype written.
func DType(s string) (safetensors.DType, error) {
	switch s {
	case "", "float32":
		return safetensors.F32, nil
	case "float16":
		return safetensors.F16, nil
	case "bfloat16":
		return safetensors.BF16, nil
	}
	return "", fmt.Errorf("output: output.dtype %q (want float32, float16 or bfloat16)", s)
}
