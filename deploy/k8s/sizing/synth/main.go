// Command synth writes the sizing stand-in of the gpu overlay (package sizing) and its merge
// config: go run ./sizing/synth DIR, then iteris plan DIR/merge.yaml --workers 4 --memory SIZE.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/iteris-dev/iteris/deploy/k8s/sizing"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: synth DIR (run in deploy/k8s)")
		os.Exit(2)
	}
	dir, err := filepath.Abs(os.Args[1])
	if err == nil {
		err = sizing.Write(dir, filepath.Join("..", "..", "testdata", "tiny-skills", "model"))
	}
	if err == nil {
		var cfg []byte
		if cfg, err = os.ReadFile(filepath.Join("overlays", "gpu", "merge.yaml")); err == nil {
			cfg = []byte(strings.ReplaceAll(string(cfg), "/models/", dir+"/"))
			err = os.WriteFile(filepath.Join(dir, "merge.yaml"), cfg, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "synth:", err)
		os.Exit(1)
	}
}
