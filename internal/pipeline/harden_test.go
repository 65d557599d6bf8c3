package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/inputs"
)

// TestReportNullsNonFinite reproduces a finished merge that crashed writing merge_report.json:
// at one site every adapter's B is zero, objective full, two jacobi solves. Solve 1 leaves that
// site at zero; solve 2 sees the features shifted by the other sites and corrects the base's
// response there, so its relative change divides by a zero update (+Inf). The merge succeeds and
// the report holds null there.
func TestReportNullsNonFinite(t *testing.T) {
	const site = "model.layers.3.mlp.down_proj"
	zeroB := func(m *adapter.Module) {
		if m.Name == site {
			clear(m.B)
		}
	}
	rev := subset(t, "rev", func(string) bool { return true }, zeroB)
	upc := subset(t, "upc", func(string) bool { return true }, zeroB)
	s := specOf(t, "iteris", "samples: 2, objective: full, schedule: jacobi, iterations: 2",
		adapterEntry{"rev", rev, fixtureEntry("rev").calib}, adapterEntry{"upc", upc, fixtureEntry("upc").calib})
	out, rep := runSpec(t, s)
	nonFinite := 0
	for _, rec := range rep.Solves[1].Sites {
		if rec.RelChange != nil && (math.IsNaN(*rec.RelChange) || math.IsInf(*rec.RelChange, 0)) {
			nonFinite++
		}
	}
	if mx := rep.Solves[1].MaxRelChange; mx == nil || !math.IsInf(*mx, 1) {
		t.Errorf("max_rel_change %v, want +Inf in the report in memory", mx)
	}
	if nonFinite == 0 {
		t.Fatal("no site has a non-finite relative change: the test no longer reproduces the case")
	}
	b, err := os.ReadFile(filepath.Join(out, "merge_report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Solves []struct {
			Sites map[string]struct {
				RelChange *float64 `json:"rel_change"`
			} `json:"sites"`
		} `json:"solves"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	nulls := 0
	for _, rec := range back.Solves[1].Sites {
		if rec.RelChange == nil {
			nulls++
		}
	}
	if !strings.Contains(string(b), `"max_rel_change": null`) {
		t.Error("merge_report.json does not hold max_rel_change: null")
	}
	if nulls != nonFinite {
		t.Errorf("%d sites have a null rel_change in merge_report.json, %d had a non-finite one", nulls, nonFinite)
	}
}

// withBaseName copies a fixture adapter with base_model_name_or_path set to name.
func withBaseName(t *testing.T, adapterName, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), adapterName)
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(fixture, "adapters", adapterName))); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, adapter.ConfigFile)
	b, _ := os.ReadFile(p)
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["base_model_name_or_path"] = name
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBaseModelName: the merged adapter keeps the adapters' base_model_name_or_path when they
// agree (null stays null), and otherwise names the config's base model, with a warning.
func TestBaseModelName(t *testing.T) {
	named := func(n string) adapterEntry {
		return adapterEntry{n, withBaseName(t, n, "org/tiny"), fixtureEntry(n).calib}
	}
	tests := []struct {
		name    string
		entries []adapterEntry
		want    any
		warn    bool
	}{
		{"all null", []adapterEntry{fixtureEntry("rev"), fixtureEntry("upc")}, nil, false},
		{"all agree", []adapterEntry{named("rev"), named("upc")}, "org/tiny", false},
		{"disagree", []adapterEntry{named("rev"), fixtureEntry("upc")}, fixture + "/model", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, rep := runSpec(t, specOf(t, "cat", "", tc.entries...))
			b, _ := os.ReadFile(filepath.Join(out, adapter.ConfigFile))
			var cfg map[string]any
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			if got := cfg["base_model_name_or_path"]; got != tc.want {
				t.Errorf("base_model_name_or_path %v, want %v", got, tc.want)
			}
			if got := hasWarning(rep, "name different base models", "null", "base_model_name_or_path"); got != tc.warn {
				t.Errorf("warning present %v, want %v: %q", got, tc.warn, rep.Warnings)
			}
		})
	}
}

func TestOneAdapterWarns(t *testing.T) {
	_, rep := runSpec(t, specOf(t, "cat", "", fixtureEntry("rev")))
	if !hasWarning(rep, "only one adapter (rev)", "returns that adapter") {
		t.Errorf("warnings %q lack the one-adapter warning", rep.Warnings)
	}
	_, rep = runSpec(t, specOf(t, "cat", "", fixtureEntry("rev"), fixtureEntry("upc")))
	if hasWarning(rep, "only one adapter") {
		t.Errorf("a two-adapter merge warns: %q", rep.Warnings)
	}
}

// TestRunRefusesMergeAboveMemory plugs an estimator into the memory hook: an estimate above the
// limit is refused before the base weights load, naming the estimate, what dominates it and the
// limit; OUT_DIR is not created.
func TestRunRefusesMergeAboveMemory(t *testing.T) {
	s := specOf(t, "iteris", "samples: 2", fixtureEntry("rev"), fixtureEntry("upc"))
	out := filepath.Join(t.TempDir(), "out")
	var seen *inputs.Inputs
	est := func(in *inputs.Inputs) (inputs.MemoryEstimate, error) {
		seen = in
		return inputs.MemoryEstimate{Bytes: 3 << 30, Dominant: "the Grams of layer 0 (2.5 GiB)"}, nil
	}
	_, err := Run(context.Background(), Options{Spec: s, Out: out, EstimateMemory: est, MemoryLimit: 1 << 30})
	if !errors.Is(err, inputs.ErrMemory) {
		t.Fatalf("error %v, want ErrMemory", err)
	}
	for _, w := range []string{"3.0 GiB", "the Grams of layer 0 (2.5 GiB)", "the configured limit is 1.0 GiB"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
	if seen == nil || len(seen.Tasks) != 2 || len(seen.Tasks[0].Items) != 2 {
		t.Errorf("the estimator did not see the checked inputs: %+v", seen)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Errorf("OUT_DIR was created: %v", serr)
	}
	if _, err := Run(context.Background(), Options{Spec: s, Out: out, EstimateMemory: est, MemoryLimit: 4 << 30}); err != nil {
		t.Errorf("an estimate below the limit: %v", err)
	}
}

// TestRunCancelled: a cancelled context stops Run before anything is written.
func TestRunCancelled(t *testing.T) {
	s := specOf(t, "iteris", "samples: 2", fixtureEntry("rev"), fixtureEntry("upc"))
	parent := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, Options{Spec: s, Out: filepath.Join(parent, "out")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("left in OUT_DIR's parent: %v", ents)
	}
}
