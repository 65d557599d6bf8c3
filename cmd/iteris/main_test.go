package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/eval"
)

const fixture = "../../testdata/tiny-skills"

var merge4 = []string{"rev", "upc", "nxt", "srt"}

// results is results-merge4.json.
type results struct {
	BaseAccuracy map[string]float64            `json:"base_accuracy"`
	Merge4       map[string]map[string]float64 `json:"merge4"`
}

func loadResults(t *testing.T) results {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture, "results-merge4.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// runCLI runs the command in process and returns stdout; it fails the test on a non-zero exit.
func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("iteris %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

func evalJSON(t *testing.T, args ...string) eval.Result {
	t.Helper()
	out := runCLI(t, append([]string{"eval", "--json", "--progress", "none", "--base", filepath.Join(fixture, "model")}, args...)...)
	var r eval.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("eval --json printed %q: %v", out, err)
	}
	return r
}

// assertAccuracy checks every task against the reference within 2 of its 120 items.
func assertAccuracy(t *testing.T, what string, got eval.Result, want map[string]float64) {
	t.Helper()
	for task, acc := range want {
		if task == "mean" {
			continue
		}
		tr, ok := got.Tasks[task]
		if !ok {
			t.Errorf("%s: no result for task %s", what, task)
			continue
		}
		ref := int(math.Round(acc * float64(tr.N)))
		if d := tr.Correct - ref; d < -2 || d > 2 {
			t.Errorf("%s on %s: %d/%d correct, reference %d (accuracy %.4f)", what, task, tr.Correct, tr.N, ref, acc)
		}
	}
}

func dataArgs(tasks ...string) []string {
	var args []string
	for _, t := range tasks {
		args = append(args, "--data", filepath.Join(fixture, "data", t, "test.jsonl"))
	}
	return args
}

func TestEvalSingleAdapters(t *testing.T) {
	if testing.Short() {
		t.Skip("accuracy over 480 test items per adapter: run without -short")
	}
	ref := loadResults(t)
	for _, name := range merge4 {
		got := evalJSON(t, append([]string{"--adapter", filepath.Join(fixture, "adapters", name)}, dataArgs(merge4...)...)...)
		assertAccuracy(t, "single:"+name, got, ref.Merge4["single:"+name])
	}
	base := evalJSON(t, dataArgs(append([]string{"cpy"}, merge4...)...)...)
	assertAccuracy(t, "base", base, ref.Merge4["base"])
	if tr := base.Tasks["cpy"]; tr.N != 120 || float64(tr.Correct) != ref.BaseAccuracy["skill:cpy"]*120 {
		t.Errorf("base on cpy: %d/%d, reference accuracy %v", tr.Correct, tr.N, ref.BaseAccuracy["skill:cpy"])
	}
}

func TestEvalTextOutput(t *testing.T) {
	out := runCLI(t, append([]string{"eval", "--progress", "none", "--base", filepath.Join(fixture, "model"),
		"--adapter", filepath.Join(fixture, "adapters", "rev")}, dataArgs("rev")...)...)
	// The rev adapter answers all 120 rev items (results-merge4.json: single:rev rev = 1.0).
	if !strings.Contains(out, "rev             1.0000   120/120") || !strings.Contains(out, "mean            1.0000") {
		t.Errorf("eval table:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Commands"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"eval", "--base", "x"}, 2, "--data"},
		{[]string{"merge", "only-one-arg"}, 2, "CONFIG.yaml OUT_DIR"},
		{[]string{"eval", "--base", filepath.Join(fixture, "model"), "--data", "/nonexistent.jsonl"}, 1, "/nonexistent.jsonl"},
		{[]string{"eval", "--base", fixture + "/nope", "--data", filepath.Join(fixture, "data/rev/test.jsonl")}, 1, "nope"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("iteris %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errb.String(), tc.code, tc.want)
		}
	}
}

func TestMergeCommand(t *testing.T) {
	cfg := "base_model: " + fixture + "/model\nmethod: iteris\nadapters:\n"
	for _, n := range merge4 {
		cfg += "  - {name: " + n + ", path: " + fixture + "/adapters/" + n + ", calibration: " + fixture + "/data/" + n + "/calib.jsonl}\n"
	}
	cfg += "parameters: {samples: 4, objective: full, schedule: jacobi, iterations: 2}\n"
	dir := t.TempDir()
	path := filepath.Join(dir, "merge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"merge", path, out, "--progress", "json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr.String())
	}
	kinds := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("--progress json printed a non-JSON line %q", line)
		}
		kinds[ev["event"].(string)]++
	}
	// Two phases per solve plus calibration; the 2-solve jacobi with objective full warns.
	if kinds["phase_start"] != 3 || kinds["phase_end"] != 3 || kinds["warning"] != 1 || kinds["done"] != 1 {
		t.Errorf("events %v: want 3 phases (calibration, solve 1/2, solve 2/2), 1 warning, done", kinds)
	}
	// The merged adapter evaluates like any adapter.
	r := evalJSON(t, append([]string{"--adapter", out}, dataArgs("rev")...)...)
	if r.Tasks["rev"].N != 120 {
		t.Errorf("eval of the merged adapter: %+v", r)
	}
	// A second merge into the same directory needs --force.
	stderr.Reset()
	if code := run([]string{"merge", path, out, "--progress", "none"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "--force") {
		t.Errorf("merge into a non-empty OUT_DIR: exit %d, %q", code, stderr.String())
	}
	if code := run([]string{"merge", path, out, "--force", "--progress", "none"}, &stdout, &stderr); code != 0 {
		t.Errorf("merge --force: exit %d: %s", code, stderr.String())
	}
}
