package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/linalg"
)

// TestMain lets a test run this binary as the iteris command (ITERIS_TEST_MAIN=1), for the tests
// that send it signals.
func TestMain(m *testing.M) {
	if os.Getenv("ITERIS_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// tree is a private copy of the fixture's inputs: root/model, root/adapters/{rev,upc},
// root/data/{rev,upc}/calib.jsonl, so that a test can check they stay untouched.
type tree struct{ root, model, rev, upc, data string }

func newTree(t *testing.T) tree {
	t.Helper()
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr := tree{root: root, model: filepath.Join(root, "model"), rev: filepath.Join(root, "adapters", "rev"),
		upc: filepath.Join(root, "adapters", "upc"), data: filepath.Join(root, "data")}
	copyDir(t, filepath.Join(fixture, "model"), tr.model)
	copyDir(t, filepath.Join(fixture, "adapters", "rev"), tr.rev)
	copyDir(t, filepath.Join(fixture, "adapters", "upc"), tr.upc)
	for _, n := range []string{"rev", "upc"} {
		copyDir(t, filepath.Join(fixture, "data", n), filepath.Join(tr.data, n))
	}
	return tr
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// config writes root/merge.yaml over the copied inputs and returns its path.
func (tr tree) config(t *testing.T, method, extra string) string {
	t.Helper()
	y := fmt.Sprintf("base_model: %s\nmethod: %s\nadapters:\n", tr.model, method)
	for _, a := range []struct{ name, dir string }{{"rev", tr.rev}, {"upc", tr.upc}} {
		y += fmt.Sprintf("  - {name: %s, path: %s, calibration: %s}\n", a.name, a.dir, filepath.Join(tr.data, a.name, "calib.jsonl"))
	}
	y += extra
	p := filepath.Join(tr.root, "merge.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapshot maps every entry under root to its kind and content hash.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[p] = "link " + l
		case d.IsDir():
			out[p] = "dir"
		default:
			out[p], err = fileDigest(p)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fileDigest is a file's size, modification time and sha256 (of its first and last MiB when
// larger than 64 MiB: the sparse files of these tests declare up to 99 GB).
func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if fi.Size() <= 64<<20 {
		_, err = io.Copy(h, f)
	} else {
		_, err = io.Copy(h, io.NewSectionReader(f, 0, 1<<20))
		if err == nil {
			_, err = io.Copy(h, io.NewSectionReader(f, fi.Size()-1<<20, 1<<20))
		}
	}
	return fmt.Sprintf("%d %d %s", fi.Size(), fi.ModTime().UnixNano(), hex.EncodeToString(h.Sum(nil))), err
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if after[p] != v {
			t.Errorf("%s: %s changed (%q -> %q)", what, p, v, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

// events parses --progress json output; every line must be a JSON object.
func events(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("--progress json printed a non-JSON line %q", line)
		}
		evs = append(evs, ev)
	}
	return evs
}

// lastError returns the final event, which must be an error event, and checks that no phase of
// heavy work started before it.
func lastError(t *testing.T, evs []map[string]any) map[string]any {
	t.Helper()
	last := evs[len(evs)-1]
	if last["event"] != "error" {
		t.Fatalf("last event %v, want an error event", last)
	}
	for _, ev := range evs {
		if ev["event"] == "phase_start" {
			t.Errorf("heavy work started before the refusal: %v", ev)
		}
	}
	return last
}

// TestMergeNeverDestroysInputs runs merges with --force whose OUT_DIR would replace an input:
// each is refused before any work with exit code 1, naming the input, and nothing changes.
func TestMergeNeverDestroysInputs(t *testing.T) {
	tr := newTree(t)
	cfg := tr.config(t, "iteris", "parameters: {samples: 2}\n")
	link := filepath.Join(tr.root, "link-to-rev")
	if err := os.Symlink(tr.rev, link); err != nil {
		t.Fatal(err)
	}
	ro := t.TempDir()
	os.Chmod(ro, 0o555)
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	if f, err := os.CreateTemp(ro, "w"); err == nil { // root ignores the mode bits: use sysfs
		f.Close()
		os.Remove(f.Name())
		ro = "/sys"
	}
	tests := []struct {
		name string
		out  string
		want []string
	}{
		{"an adapter's folder", tr.rev, []string{tr.rev, "is adapters[0].path"}},
		{"the base model's folder", tr.model, []string{tr.model, "is base_model"}},
		{"a calibration file's folder", filepath.Join(tr.data, "upc"), []string{"contains adapters[1].calibration", filepath.Join(tr.data, "upc", "calib.jsonl")}},
		{"a folder that contains the base model", tr.root, []string{tr.root, "contains", "the merge would overwrite its own input"}},
		{"a folder inside an adapter", filepath.Join(tr.upc, "merged"), []string{"lies inside adapters[1].path", tr.upc}},
		{"a symbolic link to an adapter", link, []string{link, "is adapters[0].path", tr.rev}},
		{"an unwritable parent", filepath.Join(ro, "merged"), []string{"cannot create entries in " + ro}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, tr.root)
			var stdout, stderr bytes.Buffer
			code := run([]string{"merge", cfg, tc.out, "--force", "--progress", "json"}, &stdout, &stderr)
			if code != exitFailed {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
			}
			ev := lastError(t, events(t, stderr.String()))
			for _, w := range tc.want {
				if !strings.Contains(ev["message"].(string), w) {
					t.Errorf("error %q does not name %q", ev["message"], w)
				}
			}
			sameSnapshot(t, "inputs", before, snapshot(t, tr.root))
		})
	}
}

// TestMergeRefusesWorkingDirectory: OUT_DIR = . with --force is refused before any work (a
// rename cannot replace the working directory).
func TestMergeRefusesWorkingDirectory(t *testing.T) {
	tr := newTree(t)
	cfg := tr.config(t, "cat", "")
	wd := filepath.Join(tr.root, "work")
	os.Mkdir(wd, 0o755)
	os.WriteFile(filepath.Join(wd, "notes.txt"), []byte("keep"), 0o644)
	t.Chdir(wd)
	before := snapshot(t, tr.root)
	var stdout, stderr bytes.Buffer
	code := run([]string{"merge", cfg, ".", "--force", "--progress", "json"}, &stdout, &stderr)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1: %s", code, stderr.String())
	}
	ev := lastError(t, events(t, stderr.String()))
	if msg := ev["message"].(string); !strings.Contains(msg, "working directory") || !strings.Contains(msg, wd) {
		t.Errorf("error %q does not name the working directory %s", msg, wd)
	}
	sameSnapshot(t, "inputs and working directory", before, snapshot(t, tr.root))
}

// TestMergeRemovesStaleStaging: a staging directory left by a killed merge (its lock released)
// is removed by the next merge into the same OUT_DIR, which says so.
func TestMergeRemovesStaleStaging(t *testing.T) {
	tr := newTree(t)
	cfg := tr.config(t, "cat", "")
	out := filepath.Join(tr.root, "merged")
	stale := filepath.Join(tr.root, ".merged.tmp-12345")
	if err := os.MkdirAll(filepath.Join(stale, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stale, "lock"), nil, 0o600)
	os.WriteFile(filepath.Join(stale, "out", "adapter_model.safetensors"), []byte("half-written"), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"merge", cfg, out, "--progress", "json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	said := false
	for _, ev := range events(t, stderr.String()) {
		if ev["event"] == "warning" && strings.Contains(ev["message"].(string), "removed "+stale) {
			said = true
		}
	}
	if !said {
		t.Errorf("no warning names the removed %s:\n%s", stale, stderr.String())
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale staging directory still there: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(tr.root, ".merged.*")); len(left) > 0 {
		t.Errorf("left next to OUT_DIR: %v", left)
	}
}

// TestMergeInterrupt sends SIGINT to a running merge: it exits with 130 at once, reports an error
// event, and leaves neither OUT_DIR nor a staging directory.
func TestMergeInterrupt(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT on windows")
	}
	tr := newTree(t)
	cfg := tr.config(t, "iteris", "parameters: {samples: 16, objective: full, schedule: jacobi, iterations: 8}\n")
	out := filepath.Join(tr.root, "merged")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "merge", cfg, out, "--progress", "json")
	cmd.Env = append(os.Environ(), "ITERIS_TEST_MAIN=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(pipe)
	signalled := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if !signalled && strings.Contains(sc.Text(), `"phase_start"`) {
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			signalled = true
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted || !signalled {
		t.Fatalf("exit %v (signalled %v), want %d; stderr:\n%s", err, signalled, exitInterrupted, strings.Join(lines, "\n"))
	}
	last := events(t, strings.Join(lines, "\n"))
	if ev := last[len(last)-1]; ev["event"] != "error" || !strings.Contains(ev["message"].(string), "interrupted") {
		t.Errorf("last event %v, want an interrupted error", ev)
	}
	if left, _ := filepath.Glob(filepath.Join(tr.root, "*merged*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestMergeProgressJSONErrors(t *testing.T) {
	tr := newTree(t)
	bad := tr.config(t, "cat", "parameters: {densty: 0.5}\n")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"merge", bad, filepath.Join(tr.root, "out")}, exitFailed, "unknown key"},
		{[]string{"merge", bad}, exitUsage, "CONFIG.yaml OUT_DIR"},
		{[]string{"merge", bad, filepath.Join(tr.root, "out"), "--blas", "fast"}, exitUsage, "--blas"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := run(append(tc.args, "--progress", "json"), &stdout, &stderr)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.args, code, tc.code)
		}
		evs := events(t, stderr.String())
		ev := lastError(t, evs)
		if !strings.Contains(ev["message"].(string), tc.want) || ev["exit_code"] != float64(tc.code) {
			t.Errorf("%v: error event %v, want %q and exit_code %d", tc.args, ev, tc.want, tc.code)
		}
	}
}

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"merge", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("merge --help: exit %d", code)
	}
	for _, want := range []string{"iteris merge CONFIG.yaml OUT_DIR", "relative to the working directory", "examples/merge4.yaml",
		"base_model:", "adapters:", "-force", "-progress", "-blas", "Exit codes", "130"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("merge --help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"help"}, &out, &errb); code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	for _, c := range commands {
		if c.flags == nil {
			continue
		}
		c.flags().VisitAll(func(f *flag.Flag) {
			if !strings.Contains(out.String(), "-"+f.Name) {
				t.Errorf("top-level help lacks %s's flag -%s", c.name, f.Name)
			}
		})
	}
	if code := run([]string{"merge", "--bogus"}, io.Discard, &errb); code != exitUsage {
		t.Errorf("merge --bogus: exit %d, want 2", code)
	}
}

func TestVersion(t *testing.T) {
	info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/iteris-dev/iteris", Version: "v0.3.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.time", Value: "2026-12-01T08:51:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	want := "iteris v0.3.0 (revision 0123456789abcdef, 2026-12-01T08:51:00Z, modified) " + runtime.Version()
	if got := formatVersion("dev", info); !strings.HasPrefix(got, want) {
		t.Errorf("version %q, want prefix %q", got, want)
	}
	if got := formatVersion("v9", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}); !strings.HasPrefix(got, "iteris v9 (no VCS information) ") {
		t.Errorf("version with -ldflags and no VCS stamp: %q", got)
	}
	out := runCLI(t, "version")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "iteris ") || !strings.Contains(lines[0], runtime.Version()) {
		t.Fatalf("iteris version printed %q", out)
	}
	// The second line is the BLAS backend with the OpenBLAS kernel in use.
	b := linalg.Current()
	if want := "blas: " + b.String(); lines[1] != want {
		t.Errorf("iteris version's BLAS line %q, want %q", lines[1], want)
	}
	if b.Name() == linalg.ModeOpenBLAS && (b.Core() == "" || !strings.Contains(lines[1], "core "+b.Core()+": ")) {
		t.Errorf("BLAS line %q does not name the core (%q)", lines[1], b.Core())
	}
}

// TestVersionWarnsOnGenericKernel runs iteris version with OPENBLAS_CORETYPE=Prescott: the
// user's core is kept and named, and on a CPU with AVX2+FMA (or AVX-512) a warning says it is
// generic.
func TestVersionWarnsOnGenericKernel(t *testing.T) {
	t.Setenv("ITERIS_BLAS", "")
	b, err := linalg.Init(linalg.ModeAuto)
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != linalg.ModeOpenBLAS {
		t.Skipf("OpenBLAS is not installed: %s", b.Fallback())
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "version")
	cmd.Env = append(os.Environ(), "ITERIS_TEST_MAIN=1", "OPENBLAS_CORETYPE=Prescott")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("iteris version: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if want := `core Prescott: OPENBLAS_CORETYPE="Prescott" is set in the environment; iteris never overrides it`; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout %q lacks %q", stdout.String(), want)
	}
	fast := strings.Contains(b.Kernel().CPU, "avx2 fma")
	warned := strings.Contains(stderr.String(), `warning: linalg: OpenBLAS runs its generic Prescott kernel because OPENBLAS_CORETYPE="Prescott" is set`)
	if fast != warned {
		t.Errorf("CPU %s: warning printed %v, want %v; stderr %q", b.Kernel().CPU, warned, fast, stderr.String())
	}
}

// longLines writes a JSONL file: the first calibration items of task upc, with line 3 replaced.
func longLines(t *testing.T, tr tree, line3 string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tr.data, "upc", "calib.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")[:6]
	lines[2] = line3 + "\n"
	p := filepath.Join(tr.root, "long.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMergeRefusesTooLongSequences: calibration sequences longer than the base model's
// max_position_embeddings (64 for the fixture) are refused before the base weights load, naming
// the file, the line, the length and the limit.
func TestMergeRefusesTooLongSequences(t *testing.T) {
	tr := newTree(t)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = "65"
	}
	tests := []struct {
		name, line string
		want       []string
	}{
		{"16 KB prompt", `{"task": "upc", "prompt": "##` + strings.Repeat("a", 16<<10) + `="}`, []string{"the prompt is 16388 tokens (16387 bytes)", "64 positions", "max_position_embeddings"}},
		{"1 MB prompt", `{"task": "upc", "prompt": "##` + strings.Repeat("b", 1<<20) + `="}`, []string{"the prompt is 1048580 tokens", "64 positions"}},
		{"100 input_ids", `{"input_ids": [` + strings.Join(ids, ",") + `]}`, []string{"input_ids hold 100 tokens", "64 positions"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			long := longLines(t, tr, tc.line)
			cfg := tr.config(t, "iteris", "parameters: {samples: 4}\n")
			b, _ := os.ReadFile(cfg)
			os.WriteFile(cfg, []byte(strings.Replace(string(b), filepath.Join(tr.data, "upc", "calib.jsonl"), long, 1)), 0o644)
			out := filepath.Join(tr.root, "merged")
			before := snapshot(t, tr.root)
			var stdout, stderr bytes.Buffer
			if code := run([]string{"merge", cfg, out, "--progress", "json"}, &stdout, &stderr); code != exitFailed {
				t.Fatalf("exit %d, want 1: %s", code, stderr.String())
			}
			ev := lastError(t, events(t, stderr.String()))
			for _, w := range append(tc.want, long+":3") {
				if !strings.Contains(ev["message"].(string), w) {
					t.Errorf("error %.300q does not name %q", ev["message"], w)
				}
			}
			sameSnapshot(t, "inputs", before, snapshot(t, tr.root))
		})
	}
}

// TestEvalReportsTooLongItems: an evaluation item longer than max_position_embeddings is not
// scored but reported (file, line, positions, limit); the others are scored.
func TestEvalReportsTooLongItems(t *testing.T) {
	tr := newTree(t)
	long := longLines(t, tr, `{"task": "upc", "prompt": "##`+strings.Repeat("a", 1<<20)+`=", "answer": "A"}`)
	var stdout, stderr bytes.Buffer
	code := run([]string{"eval", "--json", "--progress", "none", "--base", tr.model, "--adapter", tr.upc, "--data", long}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var res struct {
		Tasks   map[string]struct{ N int }
		Skipped []struct {
			Source           string
			Positions, Limit int
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Tasks["upc"].N != 5 || len(res.Skipped) != 1 || res.Skipped[0].Source != long+":3" || res.Skipped[0].Positions != 1048581 || res.Skipped[0].Limit != 64 {
		t.Errorf("result %+v: want 5 upc items scored and %s:3 (1048581 positions, limit 64) skipped", res, long)
	}
	if !strings.Contains(stderr.String(), long+":3: not scored") || !strings.Contains(stderr.String(), "max_position_embeddings of 64") {
		t.Errorf("stderr does not report the skipped item: %q", stderr.String())
	}
}

// TestMergeRefusesAliasBomb: a 4 MB config of one million aliases gets one error naming the
// budget, and exit code 1.
func TestMergeRefusesAliasBomb(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bomb.yaml")
	doc := "base_model: b\nmethod: cat\nadapters: [&r {path: p}, " + strings.Repeat("*r, ", 1_000_000) + "*r]\n"
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run([]string{"merge", cfg, filepath.Join(dir, "out"), "--progress", "none"}, &stdout, &stderr)
	if code != exitFailed || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "more than 100000 mapping entries and list items") {
		t.Errorf("exit %d, stderr %q; want exit 1 and one line naming the budget", code, stderr.String())
	}
}

// sparseFactors replaces an adapter's weights by a header declaring rank r for layer 0's
// q_proj (128x128) over a hole of the declared size (97 million: a 99 GB sparse file).
func sparseFactors(t *testing.T, dir string, r int) {
	t.Helper()
	editJSON(t, filepath.Join(dir, "adapter_config.json"), "r", r)
	key := "base_model.model.model.layers.0.self_attn.q_proj"
	n := int64(r) * 128 * 4
	h, _ := json.Marshal(map[string]any{
		key + ".lora_A.weight": map[string]any{"dtype": "F32", "shape": []int{r, 128}, "data_offsets": []int64{0, n}},
		key + ".lora_B.weight": map[string]any{"dtype": "F32", "shape": []int{128, r}, "data_offsets": []int64{n, 2 * n}},
	})
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	f, err := os.Create(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l := make([]byte, 8)
	l[0], l[1], l[2] = byte(len(h)), byte(len(h)>>8), byte(len(h)>>16)
	f.Write(append(l, h...))
	if err := f.Truncate(int64(8+len(h)) + 2*n); err != nil {
		t.Fatal(err)
	}
}

func editJSON(t *testing.T, path, field string, value any) {
	t.Helper()
	b, _ := os.ReadFile(path)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m[field] = value
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMergeRefusesAbsurdSizes: sizes that used to crash the process with an out-of-memory error
// are refused from headers before any data is read, with exit code 1, and nothing changes.
func TestMergeRefusesAbsurdSizes(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, tr tree)
		want []string
	}{
		{"adapter rank 97 million in a sparse 99 GB file", func(t *testing.T, tr tree) { sparseFactors(t, tr.upc, 97_000_000) },
			[]string{"adapter upc", "lora_A.weight", "rank 97000000", "min(out, in) = 128"}},
		{"config.json with a billion layers", func(t *testing.T, tr tree) {
			editJSON(t, filepath.Join(tr.model, "config.json"), "num_hidden_layers", 1_000_000_000)
		}, []string{"config.json gives num_hidden_layers = 1000000000", "holds only"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			tc.edit(t, tr)
			cfg := tr.config(t, "iteris", "parameters: {samples: 2}\n")
			before := snapshot(t, tr.root)
			var stdout, stderr bytes.Buffer
			if code := run([]string{"merge", cfg, filepath.Join(tr.root, "merged"), "--progress", "json"}, &stdout, &stderr); code != exitFailed {
				t.Fatalf("exit %d, want 1: %s", code, stderr.String())
			}
			ev := lastError(t, events(t, stderr.String()))
			for _, w := range tc.want {
				if !strings.Contains(ev["message"].(string), w) {
					t.Errorf("error %q does not name %q", ev["message"], w)
				}
			}
			sameSnapshot(t, "inputs", before, snapshot(t, tr.root))
		})
	}
}

// TestMergeClampsHugeRank: output.rank 100000 (which ran out of memory) is clamped to each
// module's min(out, in), with a warning event, and the merge succeeds.
func TestMergeClampsHugeRank(t *testing.T) {
	tr := newTree(t)
	cfg := tr.config(t, "iteris", "parameters: {samples: 2}\noutput: {rank: 100000}\n")
	out := filepath.Join(tr.root, "merged")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"merge", cfg, out, "--progress", "json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	warned := false
	for _, ev := range events(t, stderr.String()) {
		if ev["event"] == "warning" && strings.Contains(ev["message"].(string), "output.rank 100000 is above min(out, in) at 28 of 28 modules") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning about the clamped rank:\n%s", stderr.String())
	}
	b, _ := os.ReadFile(filepath.Join(out, "adapter_config.json"))
	var ac struct {
		R           int            `json:"r"`
		RankPattern map[string]int `json:"rank_pattern"`
	}
	json.Unmarshal(b, &ac)
	if ac.R != 128 || len(ac.RankPattern) != 8 { // k_proj and v_proj of 4 layers are 64x128
		t.Errorf("adapter_config.json r %d, %d rank_pattern entries; want 128 and 8 (the 64-wide k/v)", ac.R, len(ac.RankPattern))
	}
}
