// Command iteris merges LoRA adapters of one base model into a single adapter with IterIS and the
// baseline merges, and evaluates models and adapters.
//
// Usage:
//
//	iteris merge CONFIG.yaml OUT_DIR [--force] [--progress auto|bar|json|none] [--blas auto|openblas|gonum]
//	iteris plan CONFIG.yaml --workers N --memory SIZE [--json]
//	iteris eval --base DIR [--adapter DIR] --data FILE.jsonl [--data FILE ...] [--json]
//	iteris coordinator --id ID --data-dir DIR --raft-addr HOST:PORT --peers ID=HOST:PORT,... --nats URL
//	iteris worker --id ID --nats URL --memory SIZE [--data-dir DIR]
//	iteris submit CONFIG.yaml OUT_DIR --nats URL [--wait] [--force]
//	iteris status [JOB] --nats URL [--json]
//	iteris version
//
// Exit codes: 0 success, 1 the merge or evaluation failed, 2 usage error, 130 interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/iteris-dev/iteris/internal/cli"
	"github.com/iteris-dev/iteris/internal/linalg"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the module version
// and VCS revision embedded by the go command are reported.
var version = "dev"

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130 // 128 + SIGINT, as shells report it
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks a command-line mistake (exit code 2).
var errUsage = errors.New("usage")

// reported wraps an error that the command already printed (as a JSON event).
type reported struct{ err error }

func (r reported) Error() string { return r.err.Error() }
func (r reported) Unwrap() error { return r.err }

func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext runs one command and returns its exit code.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "merge":
		err = cmdMerge(ctx, args[1:], stdout, stderr)
	case "plan":
		err = cmdPlan(args[1:], stdout, stderr)
	case "coordinator":
		err = cmdCoordinator(ctx, args[1:], stdout, stderr)
	case "worker":
		err = cmdWorker(ctx, args[1:], stdout, stderr)
	case "submit":
		err = cmdSubmit(ctx, args[1:], stdout, stderr)
	case "status":
		err = cmdStatus(ctx, args[1:], stdout, stderr)
	case "eval":
		err = cmdEval(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionString())
		err = printBLAS(stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "iteris: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return exitCode(err, stderr)
}

// exitCode prints err (unless already reported) and maps it to the exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var rep reported
	if !errors.As(err, &rep) {
		fmt.Fprintln(stderr, "iteris:", message(err))
	}
	switch {
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	}
	return exitFailed
}

// message is what the user reads for err.
func message(err error) string {
	if errors.Is(err, context.Canceled) {
		return "interrupted (Ctrl-C or SIGTERM): nothing was written; OUT_DIR, if any, is as it was"
	}
	return err.Error()
}

// command describes one subcommand for the help texts.
type command struct {
	name, synopsis, about string
	flags                 func() *flag.FlagSet
}

var commands = []command{
	{"merge", "merge CONFIG.yaml OUT_DIR [flags]", "run a merge on the embedded cluster (in this process, --workers shards) and write a PEFT adapter to OUT_DIR",
		func() *flag.FlagSet { fs, _ := mergeFlags(); return fs }},
	{"eval", "eval --base DIR [--adapter DIR] --data FILE.jsonl [--data FILE ...] [flags]", "exact-match accuracy of the base model (with an adapter) on prompt/answer JSONL files",
		func() *flag.FlagSet { fs, _ := evalFlags(); return fs }},
	{"plan", "plan CONFIG.yaml --workers N --memory SIZE [--json]", "dry run: cut the merge into layer shards for N workers of SIZE (512MiB, 8GiB, 1.5TiB, ...) and print each worker's estimated peak memory, the steps and the bytes they move", nil},
	{"coordinator", "coordinator --id ID --data-dir DIR --raft-addr HOST:PORT --peers ID=HOST:PORT,... --nats URL", "run one member of the raft coordinator group of a cluster",
		func() *flag.FlagSet { return cli.CoordinatorFlags(&cli.Coordinator{}) }},
	{"worker", "worker --id ID --nats URL --memory SIZE [--data-dir DIR]", "run one merge worker of a cluster (it holds one layer shard)",
		func() *flag.FlagSet { return cli.WorkerFlags(&cli.Worker{}) }},
	{"submit", "submit CONFIG.yaml OUT_DIR --nats URL [--wait] [--force]", "submit a merge to a running cluster; with --wait, show progress and write OUT_DIR",
		func() *flag.FlagSet { return cli.SubmitFlags(&cli.Submit{}) }},
	{"status", "status [JOB] --nats URL [--json]", "show a cluster's jobs, shards and workers",
		func() *flag.FlagSet { return cli.StatusFlags(&cli.Status{}) }},
	{"version", "version", "print the version, VCS revision and Go version", nil},
}

func usage(w io.Writer) {
	fmt.Fprint(w, "iteris merges LoRA adapters of one base model into one adapter (IterIS, RegMean, task arithmetic, TIES, ...).\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "\n  iteris %s\n        %s\n", c.synopsis, c.about)
		if c.flags != nil {
			fmt.Fprint(w, indent(flagDefaults(c.flags()), "    "))
		}
	}
	fmt.Fprint(w, "\n"+exitCodes+"\nRun 'iteris merge --help' for the config format; docs/operations.md describes limits and outputs.\n")
}

const exitCodes = `Exit codes: 0 success; 1 the merge or evaluation failed (the message names the file and the key
or tensor; OUT_DIR and every input are left as they were); 2 usage error; 130 interrupted (Ctrl-C
or SIGTERM; temporary files are removed, OUT_DIR is left as it was).
`

// flagDefaults returns fs.PrintDefaults' text.
func flagDefaults(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

// versionString reports the version set at build time, or the module version and VCS revision
// the go command embedded (go install of a tagged version; go build in a git clone).
func versionString() string {
	info, _ := debug.ReadBuildInfo()
	return formatVersion(version, info)
}

func formatVersion(v string, info *debug.BuildInfo) string {
	var vcs []string
	if info != nil {
		if v == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		s := map[string]string{}
		for _, kv := range info.Settings {
			s[kv.Key] = kv.Value
		}
		if r := s["vcs.revision"]; r != "" {
			vcs = append(vcs, "revision "+r)
			if t := s["vcs.time"]; t != "" {
				vcs = append(vcs, t)
			}
			if s["vcs.modified"] == "true" {
				vcs = append(vcs, "modified")
			}
		}
	}
	if len(vcs) == 0 {
		vcs = append(vcs, "no VCS information")
	}
	return fmt.Sprintf("iteris %s (%s) %s %s/%s", v, strings.Join(vcs, ", "), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// printBLAS loads the BLAS backend as merge and eval do (ITERIS_BLAS, ITERIS_OPENBLAS and
// OPENBLAS_CORETYPE apply) and prints it with its kernel on one line, and a warning when the
// kernel is slower than the CPU allows.
func printBLAS(stdout, stderr io.Writer) error {
	b, err := linalg.Init(linalg.ModeAuto)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "blas:", b)
	warnKernel(stderr, b)
	return nil
}

// warnKernel prints the backend's kernel warning, if any, as a "warning:" line.
func warnKernel(w io.Writer, b linalg.Backend) {
	if msg := b.Kernel().Warning; msg != "" {
		fmt.Fprintln(w, "warning:", msg)
	}
}

// untilDone runs f and returns its error, or ctx's error as soon as ctx is done (f then runs on
// until the process exits; it writes no files).
func untilDone(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wantsHelp reports whether args ask for a command's help.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

// parseInterspersed parses flags that may come before, between or after positional arguments.
// A flag error is a usage error.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, reported{fmt.Errorf("%w: %v", errUsage, err)} // the flag package printed it
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
