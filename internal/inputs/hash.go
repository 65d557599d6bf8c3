package inputs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/iteris-dev/iteris/internal/spec"
)

// Hash records in out the sha256 of the base model's files, the adapters' files and the
// calibration files. ctx stops it between reads.
func Hash(ctx context.Context, s *spec.Spec, out map[string]string) error {
	var files []string
	entries, err := os.ReadDir(s.BaseModel)
	if err != nil {
		return fmt.Errorf("base_model: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if !e.IsDir() && (strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".safetensors")) {
			files = append(files, filepath.Join(s.BaseModel, n))
		}
	}
	for _, a := range s.Adapters {
		files = append(files, filepath.Join(a.Path, "adapter_config.json"), filepath.Join(a.Path, "adapter_model.safetensors"))
		if a.Calibration != "" && s.DataAware() {
			files = append(files, a.Calibration)
		}
	}
	for _, f := range files {
		h, err := sha256Of(ctx, f)
		if err != nil {
			return err
		}
		out[f] = h
	}
	return nil
}

// SHA256File returns the hex sha256 of the file at path.
func SHA256File(path string) (string, error) { return sha256Of(context.Background(), path) }

func sha256Of(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
