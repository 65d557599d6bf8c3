// Command tobf16 writes a bfloat16 copy of a Hugging Face model directory: every tensor of its
// safetensors checkpoint (single file or sharded) rounded to BF16 (round to nearest even, as
// PyTorch's .to(torch.bfloat16)) into OUT/model.safetensors, and config.json with torch_dtype
// bfloat16. The memory figures of docs/benchmarks.md merge such a copy of the benchmark model.
//
//	go run ./bench/tobf16 DIR OUT
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/iteris-dev/iteris/internal/safetensors"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: tobf16 DIR OUT")
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		log.Fatal(err)
	}
}

func run(dir, out string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%s/config.json: %w", dir, err)
	}
	cfg["torch_dtype"] = "bfloat16"
	ck, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		return err
	}
	defer ck.Close()
	var ts []safetensors.Tensor
	for _, name := range ck.Names() {
		info, _ := ck.Info(name)
		v, err := ck.Float32(name)
		if err != nil {
			return err
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.BF16, Shape: info.Shape, Data: v})
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "config.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return safetensors.WriteFile(filepath.Join(out, safetensors.SingleFileName), ts, map[string]string{"format": "pt"})
}
