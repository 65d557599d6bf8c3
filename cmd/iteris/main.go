// Command iteris merges LoRA adapters of one base model into a single adapter with IterIS and the
// baseline merges, and evaluates models and adapters.
//
// Usage:
//
//	iteris merge CONFIG.yaml OUT_DIR [--force] [--progress auto|bar|json|none]
//	iteris plan CONFIG.yaml --workers N --memory SIZE [--json]
//	iteris eval --base DIR [--adapter DIR] --data FILE.jsonl [--data FILE ...] [--json]
//	iteris version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line mistake (exit code 2).
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "merge":
		err = cmdMerge(args[1:], stdout, stderr)
	case "plan":
		err = cmdPlan(args[1:], stdout, stderr)
	case "eval":
		err = cmdEval(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "iteris", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "iteris: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "iteris:", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `iteris merges LoRA adapters of one base model into one adapter (IterIS, RegMean, task arithmetic, TIES, ...).

Commands:
  merge CONFIG.yaml OUT_DIR [--force] [--progress auto|bar|json|none]
        run a merge on the embedded (single-process) cluster and write a PEFT adapter to OUT_DIR
  plan CONFIG.yaml --workers N --memory SIZE [--json]
        dry run: cut the merge into layer shards for N workers of SIZE (512MiB, 8GiB, 1.5TiB, ...) and
        print each worker's estimated peak memory, the steps and the bytes they move
  eval --base DIR [--adapter DIR] --data FILE.jsonl [--data FILE ...] [--json]
        exact-match accuracy of the base model (with an adapter) on prompt/answer JSONL files
  version
        print the version
`)
}

// parseInterspersed parses flags that may come before, between or after positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint(*m) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
