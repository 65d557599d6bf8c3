package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/inputs"
	"github.com/iteris-dev/iteris/internal/safetensors"
	"github.com/iteris-dev/iteris/internal/spec"
)

// yamlFor writes a merge config over the fixture adapters. adapters lines are "name weight".
func yamlFor(t *testing.T, method string, weight float64, params string, extra ...string) *spec.Spec {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "base_model: %s/model\nmethod: %s\nadapters:\n", fixture, method)
	for _, name := range merge4 {
		fmt.Fprintf(&b, "  - {name: %s, path: %s/adapters/%s, calibration: %s/data/%s/calib.jsonl, weight: %g}\n", name, fixture, name, fixture, name, weight)
	}
	if params != "" {
		fmt.Fprintf(&b, "parameters: {%s}\n", params)
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	s, err := spec.Parse([]byte(b.String()), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func runSpec(t *testing.T, s *spec.Spec) (string, *Report) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	rep, err := Run(context.Background(), Options{Spec: s, Out: out, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return out, rep
}

// effective returns scale * B A of every module of an adapter directory.
func effective(t *testing.T, dir string) map[string]*mat.Dense {
	t.Helper()
	a, err := adapter.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*mat.Dense{}
	for name := range a.Modules {
		m := a.Modules[name]
		out[name] = mat.NewDense(m.Out, m.In, f64(a.Delta(name)))
	}
	return out
}

func TestWeightOnlyMatchesPEFT(t *testing.T) {
	base := loadBase(t)
	cases := testCases(t)
	table := loadResults(t)
	tests := []struct {
		peft, method string
		weight       float64
		params       string
		tol          float64 // relative Frobenius tolerance of the effective update against PEFT's
	}{
		{"cat_sum", "cat", 1, "", 1e-5},
		{"cat_mean", "cat", 0.25, "", 1e-5},
		{"linear_mean", "linear", 0.25, "", 1e-5},
		// PEFT's svd outputs come from a single-precision SVD: their singular values are off the
		// exact ones by up to 3.5e-5 (the fixture README's 1e-5 is not reachable by an exact
		// truncation, which lands at 2.28e-5). Checked here: within 3e-5, and our truncation is at
		// least as close to the summed update as PEFT's (Eckart-Young optimal).
		{"svd_mean", "svd", 0.25, "svd_rank: 8", 3e-5},
		{"svd_sum", "svd", 1, "svd_rank: 8", 3e-5},
		{"ties", "ties", 1, "density: 0.5, majority_sign: total", 1e-5},
		{"magnitude_prune", "magnitude_prune", 1, "density: 0.5", 1e-5},
	}
	for _, tc := range tests {
		t.Run(tc.peft, func(t *testing.T) {
			out, _ := runSpec(t, yamlFor(t, tc.method, tc.weight, tc.params))
			got, want := effective(t, out), effective(t, filepath.Join(fixture, "merge4/peft", tc.peft))
			if len(got) != len(want) {
				t.Fatalf("%d modules, PEFT has %d", len(got), len(want))
			}
			var inputs []map[string]*mat.Dense
			if tc.method == "svd" {
				for _, task := range merge4 {
					inputs = append(inputs, effective(t, filepath.Join(fixture, "adapters", task)))
				}
			}
			worst := 0.0
			for name, w := range want {
				worst = math.Max(worst, relFrob(got[name], w))
				if tc.method == "svd" {
					sum := taskSum(inputs, name, tc.weight)
					var dg, dp mat.Dense
					dg.Sub(sum, got[name])
					dp.Sub(sum, w)
					if mat.Norm(&dg, 2) > mat.Norm(&dp, 2)*(1+1e-7) {
						t.Errorf("%s: our rank-8 truncation is farther from the summed update (%.9g) than PEFT's (%.9g)", name, mat.Norm(&dg, 2), mat.Norm(&dp, 2))
					}
				}
			}
			if worst > tc.tol {
				t.Errorf("effective updates differ from PEFT's by %.3g relative (tolerance %.0e)", worst, tc.tol)
			}
			t.Logf("%s: worst relative difference from PEFT %.3g", tc.peft, worst)
			if !testing.Short() {
				a, err := adapter.Load(out)
				if err != nil {
					t.Fatal(err)
				}
				within2(t, "peft_"+tc.peft, accuracy(t, base, modules(a), cases), table["peft_"+tc.peft])
			}
		})
	}
}

// taskSum returns sum_i weight * dW_i at one module.
func taskSum(inputs []map[string]*mat.Dense, name string, weight float64) *mat.Dense {
	sum := mat.NewDense(inputs[0][name].RawMatrix().Rows, inputs[0][name].RawMatrix().Cols, nil)
	for _, in := range inputs {
		var d mat.Dense
		d.Scale(weight, in[name])
		sum.Add(sum, &d)
	}
	return sum
}

func modules(a *adapter.Adapter) []*adapter.Module {
	var out []*adapter.Module
	for _, n := range a.Names() {
		out = append(out, a.Modules[n])
	}
	return out
}

func TestCatOfOneAdapterIsExact(t *testing.T) {
	s, err := spec.Parse([]byte(fmt.Sprintf("base_model: %s/model\nmethod: cat\nadapters:\n  - {name: rev, path: %s/adapters/rev, weight: 1}\n", fixture, fixture)), "one.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := runSpec(t, s)
	got, err := adapter.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	in, err := adapter.Load(filepath.Join(fixture, "adapters/rev"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Modules) != len(in.Modules) {
		t.Fatalf("%d modules, input has %d", len(got.Modules), len(in.Modules))
	}
	for name, m := range in.Modules {
		g := got.Modules[name]
		if g.R != m.R || g.Scale != 1 {
			t.Fatalf("%s: rank %d scale %v, want rank %d scale 1", name, g.R, g.Scale, m.R)
		}
		want, have := in.Delta(name), got.Delta(name)
		for i := range want {
			if want[i] != have[i] {
				t.Fatalf("%s: effective update entry %d is %v, input's is %v", name, i, have[i], want[i])
			}
		}
	}
}

func TestRunWritesEverything(t *testing.T) {
	s := yamlFor(t, "iteris", 1, "samples: 4, objective: delta, schedule: jacobi, iterations: 2")
	out, rep := runSpec(t, s)
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors", "README.md", "merge_report.json", "iteris_config.yaml"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("output lacks %s: %v", f, err)
		}
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(out, "adapter_config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["r"] != 32.0 || cfg["lora_alpha"] != 32.0 || cfg["use_rslora"] != false || cfg["use_dora"] != false || cfg["bias"] != "none" {
		t.Errorf("adapter_config.json: r %v lora_alpha %v rslora %v dora %v bias %v; want 32, 32, false, false, none",
			cfg["r"], cfg["lora_alpha"], cfg["use_rslora"], cfg["use_dora"], cfg["bias"])
	}
	f, err := safetensors.Open(filepath.Join(out, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range f.Names() {
		if !strings.HasPrefix(n, "base_model.model.model.layers.") || !(strings.HasSuffix(n, ".lora_A.weight") || strings.HasSuffix(n, ".lora_B.weight")) {
			t.Errorf("key %s is not a PEFT key without adapter name", n)
		}
	}
	if len(f.Names()) != 56 {
		t.Errorf("%d tensors, want 56 (28 modules x A, B)", len(f.Names()))
	}
	var r Report
	b, _ = os.ReadFile(filepath.Join(out, "merge_report.json"))
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Solves) != 2 || len(r.Solves[0].Sites) != 28 || r.Solves[1].MaxRelChange == nil || r.Converged == nil || *r.Converged {
		t.Errorf("report: %d solves, %d sites, converged %v; want 2 solves of 28 sites, a relative change, not converged", len(r.Solves), len(r.Solves[0].Sites), r.Converged)
	}
	if len(r.Inputs.Files) != 1+2+4*3 { // base config, tokenizer files and weights; per adapter config, weights, calibration
		t.Logf("hashed inputs: %v", r.Inputs.Files)
	}
	for path, h := range r.Inputs.Files {
		if want, _ := inputs.SHA256File(path); h != want || len(h) != 64 {
			t.Errorf("sha256 of %s recorded as %s", path, h)
		}
	}
	if rep.Tasks[0].Sequences != 4 || rep.Tasks[0].Tokens == 0 {
		t.Errorf("task report %+v: want 4 sequences", rep.Tasks[0])
	}
	card, _ := os.ReadFile(filepath.Join(out, "README.md"))
	for _, want := range []string{"base_model: " + fixture + "/model", "library_name: peft", "| rev |", "Not converged"} {
		if !strings.Contains(string(card), want) {
			t.Errorf("model card lacks %q", want)
		}
	}
}
