package clustertest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// refusal returns what a command printed besides warnings: its error.
func refusal(log string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if !strings.HasPrefix(l, "warning:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestClusterRefusesConfigsAsMergeDoes submits configs that parse but that iteris merge refuses
// (its single-process driver and its embedded cluster): a running cluster's leader refuses each
// before anything is dispatched, and iteris submit prints exactly the same message.
func TestClusterRefusesConfigsAsMergeDoes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster and 15 iteris processes")
	}
	adapters := func(extra string) string {
		return "  - {name: rev, path: testdata/tiny-skills/adapters/rev" + extra + "}\n" +
			"  - {name: upc, path: testdata/tiny-skills/adapters/upc, calibration: testdata/tiny-skills/data/upc/calib.jsonl}\n"
	}
	configs := []struct{ name, config, want string }{
		{"missing adapter", "base_model: testdata/tiny-skills/model\nmethod: cat\nadapters:\n  - {name: nope, path: testdata/tiny-skills/adapters/nope}\n" + adapters(""),
			"adapters[0].path: adapter directory testdata/tiny-skills/adapters/nope: does not exist"},
		{"base model without config.json", "base_model: testdata/tiny-skills/adapters/rev\nmethod: cat\nadapters:\n" + adapters(""),
			"base model directory testdata/tiny-skills/adapters/rev has no config.json"},
		{"no calibration", "base_model: testdata/tiny-skills/model\nmethod: iteris\nadapters:\n" + adapters(""),
			"adapters[0].calibration: is required by method iteris"},
		{"missing calibration file", "base_model: testdata/tiny-skills/model\nmethod: iteris\nadapters:\n" + adapters(", calibration: testdata/tiny-skills/data/rev/none.jsonl"),
			"calibration file testdata/tiny-skills/data/rev/none.jsonl: does not exist"},
		{"more samples than items", "base_model: testdata/tiny-skills/model\nmethod: iteris\nadapters:\n" + adapters(", calibration: testdata/tiny-skills/data/rev/calib.jsonl") + "parameters: {samples: 100000}\n",
			"parameters.samples is 100000 but testdata/tiny-skills/data/rev/calib.jsonl has only 64 items"},
	}
	c := StartCluster(t, Options{Coordinators: 1})
	dir := t.TempDir()
	for _, tc := range configs {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(path, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			code, single := runIteris(t, time.Minute, "merge", "--workers", "0", "--progress", "none", path, filepath.Join(dir, "out-single"))
			if code != 1 || !strings.Contains(single, tc.want) {
				t.Fatalf("iteris merge --workers 0: exit %d:\n%s\nwant %q", code, single, tc.want)
			}
			code, emb := runIteris(t, time.Minute, "merge", "--progress", "none", path, filepath.Join(dir, "out-embedded"))
			if code != 1 || refusal(emb) != refusal(single) {
				t.Fatalf("iteris merge (embedded cluster): exit %d:\n%s\nthe single process said:\n%s", code, emb, single)
			}
			code, sub := runIteris(t, time.Minute, "submit", path, filepath.Join(dir, "out-cluster"), "--nats", c.NATS.URL(), "--insecure")
			if code != 1 || refusal(sub) != refusal(single) {
				t.Fatalf("iteris submit: exit %d:\n%s\nthe single process said:\n%s", code, sub, single)
			}
		})
	}
	st, err := c.Client().Status(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Jobs) != 0 {
		t.Fatalf("the refused configs made jobs: %+v", st.Jobs)
	}
}
