package output

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/internal/spec"
)

// Options says where and how Write writes.
type Options struct {
	// Dir is OUT_DIR.
	Dir string
	// Spec is the merge config (its base model, output dtype and raw bytes are written).
	Spec *spec.Spec
	// Base lists the base model's linear modules (target_modules is written as leaf names when
	// that selects exactly the merged modules).
	Base adapter.Shapes
	// Command is the command line, recorded in the model card.
	Command string
}

// Write writes the adapter, model card, config copy and report into a temporary directory next
// to OUT_DIR and renames it into place.
func Write(opt Options, report *Report, mods []*adapter.Module) error {
	dt, err := DType(opt.Spec.Output.DType)
	if err != nil {
		return err
	}
	rj, err := json.MarshalIndent(sanitize(report), "", "  ")
	if err != nil {
		return fmt.Errorf("merge report: %w", err)
	}
	files := map[string][]byte{
		"README.md":          []byte(modelCard(opt, report)),
		"merge_report.json":  append(rj, '\n'),
		"iteris_config.yaml": opt.Spec.Raw,
	}
	parent := filepath.Dir(filepath.Clean(opt.Dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(opt.Dir)+".tmp-")
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	defer os.RemoveAll(tmp)
	stage := filepath.Join(tmp, "adapter")
	if err := adapter.Write(stage, mods, adapter.WriteOptions{BaseModel: opt.Spec.BaseModel, DType: dt, Base: opt.Base, Files: files,
		Metadata: map[string]string{"iteris_method": report.Method}}); err != nil {
		return err
	}
	if _, err := os.Stat(opt.Dir); err == nil {
		// Checked empty (or --force) before any work: move the old directory aside, then drop it.
		old := filepath.Join(tmp, "old")
		if err := os.Rename(opt.Dir, old); err != nil {
			return fmt.Errorf("output: replace %s: %w", opt.Dir, err)
		}
		if err := os.Rename(stage, opt.Dir); err != nil {
			os.Rename(old, opt.Dir)
			return fmt.Errorf("output: %w", err)
		}
		return nil
	}
	if err := os.Rename(stage, opt.Dir); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	return nil
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
	return "", fmt.Errorf("output.dtype %q (want float32, float16 or bfloat16)", s)
}
