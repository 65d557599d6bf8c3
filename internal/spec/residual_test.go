package spec

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestResidualDefaults: objective residual alone is the recommended method (every calibration
// prompt, data-aware truncation, 30 refinement steps at lr 1e-3); keys the file gives win over
// the objective's defaults; the other objectives keep today's defaults.
func TestResidualDefaults(t *testing.T) {
	tests := []struct {
		name   string
		params string
		want   func(p *Parameters)
	}{
		{"residual alone", "{objective: residual}", func(p *Parameters) {
			p.Objective, p.Samples, p.Truncation, p.Refine = "residual", SamplesAll, "data", Refine{Steps: 30, LR: 1e-3}
		}},
		{"residual, closed form, 16 prompts, svd", "{objective: residual, samples: 16, truncation: svd, refine: {steps: 0}}", func(p *Parameters) {
			p.Objective, p.Truncation = "residual", "svd"
		}},
		{"residual, 10 steps at 2e-3", "{objective: residual, refine: {steps: 10, lr: 2.0e-3}}", func(p *Parameters) {
			p.Objective, p.Samples, p.Truncation, p.Refine = "residual", SamplesAll, "data", Refine{Steps: 10, LR: 2e-3}
		}},
		{"residual, only lr given", "{objective: residual, refine: {lr: 5.0e-4}}", func(p *Parameters) {
			p.Objective, p.Samples, p.Truncation, p.Refine = "residual", SamplesAll, "data", Refine{Steps: 30, LR: 5e-4}
		}},
		{"full keeps today's defaults", "{objective: full}", func(p *Parameters) {}},
		{"full with data truncation, all prompts, refinement", "{truncation: data, samples: all, refine: {steps: 5}}", func(p *Parameters) {
			p.Truncation, p.Samples, p.Refine.Steps = "data", SamplesAll, 5
		}},
		{"delta", "{objective: delta, schedule: jacobi}", func(p *Parameters) { p.Objective, p.Schedule = "delta", "jacobi" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := defaultParameters(MethodIterIS)
			tc.want(&want)
			got := parse(t, headIterIS+"parameters: "+tc.params+"\n").Parameters
			if got != want {
				t.Errorf("parameters %s:\n got  %+v\n want %+v", tc.params, got, want)
			}
		})
	}
	if d := DefaultsFor(MethodIterIS, ""); d != defaultParameters(MethodIterIS) {
		t.Errorf("DefaultsFor(iteris, \"\") = %+v", d)
	}
	if d := DefaultsFor(MethodIterIS, ObjectiveResidual); d.Samples != SamplesAll || d.Truncation != TruncationData || d.Refine != (Refine{30, 1e-3}) {
		t.Errorf("DefaultsFor(iteris, residual) = %+v", d)
	}
}

func TestSampleCount(t *testing.T) {
	for _, tc := range []struct{ samples, n, want int }{{16, 64, 16}, {16, 10, 16}, {SamplesAll, 64, 64}, {SamplesAll, 3, 3}} {
		if got := (Parameters{Samples: tc.samples}).SampleCount(tc.n); got != tc.want {
			t.Errorf("samples %d of %d items: %d, want %d", tc.samples, tc.n, got, tc.want)
		}
	}
}

func TestResidualBad(t *testing.T) {
	tests := []struct {
		name string
		src  string
		key  string
		line int
		msg  string
	}{
		{"objective unknown lists residual", headIterIS + "parameters: {objective: resid}\n", "parameters.objective", 5, "expected one of delta, full, residual"},
		{"residual with jacobi", headIterIS + "parameters: {objective: residual, schedule: jacobi}\n", "parameters.objective", 5, "objective residual needs schedule sweep"},
		{"regmean with residual", "base_model: m\nmethod: regmean\nadapters: [{path: a, calibration: c}]\nparameters: {objective: residual}\n", "parameters.objective", 4, "method regmean supports only objective delta"},
		{"truncation unknown", headIterIS + "parameters: {truncation: frobenius}\n", "parameters.truncation", 5, "expected one of data, svd"},
		{"refine is a number", headIterIS + "parameters: {refine: 30}\n", "parameters.refine", 5, "expected a mapping with keys lr, steps"},
		{"refine unknown key", headIterIS + "parameters:\n  refine: {steps: 3, rate: 1}\n", "parameters.refine.rate", 6, "unknown key; allowed keys: lr, steps"},
		{"refine steps negative", headIterIS + "parameters: {refine: {steps: -1}}\n", "parameters.refine.steps", 5, "must be >= 0 (0: closed form only), got -1"},
		{"refine steps fractional", headIterIS + "parameters: {refine: {steps: 2.5}}\n", "parameters.refine.steps", 5, "expected an integer, got the number 2.5"},
		{"refine lr zero", headIterIS + "parameters: {refine: {steps: 3, lr: 0}}\n", "parameters.refine.lr", 5, "must be > 0, got 0"},
		{"refine lr infinite", headIterIS + "parameters: {refine: {lr: .inf}}\n", "parameters.refine.lr", 5, "must be a finite number, got +Inf"},
		{"refine lr word", headIterIS + "parameters: {refine: {lr: fast}}\n", "parameters.refine.lr", 5, `expected a number, got the string "fast"`},
		{"samples word", headIterIS + "parameters: {samples: every}\n", "parameters.samples", 5, `expected an integer, got the string "every"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "dir/bad.yaml")
			checkErr(t, err, "dir/bad.yaml", tc.key, tc.line, tc.msg)
		})
	}
	// A Spec built in code gets the same checks.
	s := parse(t, headIterIS)
	s.Parameters.Refine = Refine{Steps: -2, LR: -1}
	errs := s.check()
	if len(errs) != 2 || errs[0].Key != "parameters.refine.steps" || errs[1].Key != "parameters.refine.lr" {
		t.Errorf("check of refine {-2, -1}: %v", joinErrors(errs))
	}
}

func TestResidualWarnings(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"recommended", headIterIS + "parameters: {objective: residual, truncation: data, refine: {steps: 30}, seed: 1}\n", nil},
		{"truncation with delta", headIterIS + "parameters: {objective: delta, truncation: data}\n", []string{
			"cfg.yaml:5:44: parameters.truncation: only used with objective full or residual (the delta objective's update is exactly of rank sum r_i)",
		}},
		{"refine with jacobi", headIterIS + "parameters: {schedule: jacobi, refine: {steps: 3}}\n", []string{
			"cfg.yaml:5:40: parameters.refine: only used with schedule sweep (schedule is jacobi)",
		}},
		{"refine and truncation with cat", headCat + "parameters: {refine: {steps: 3}, truncation: svd}\n", []string{
			"cfg.yaml:5:22: parameters.refine: not used by method cat (only by iteris)",
			"cfg.yaml:5:46: parameters.truncation: not used by method cat (only by iteris)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := parse(t, tc.src).Warnings()
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Warnings()\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}

// TestResidualCanonical: samples reads "all", refine appears with its steps and lr when it
// refines, and truncation only where it applies.
func TestResidualCanonical(t *testing.T) {
	tests := []struct {
		name   string
		params string
		want   string // JSON of Canonical()["parameters"]
	}{
		{"recommended", "{objective: residual}",
			`{"adaptive_weights":true,"alpha1":0.0001,"alpha2":0.0001,"batch_size":16,"completion_tokens":"auto","max_new_tokens":64,` +
				`"objective":"residual","refine":{"lr":0.001,"steps":30},"samples":"all","schedule":"sweep","seed":0,"truncation":"data"}`},
		{"closed form", "{objective: residual, refine: {steps: 0, lr: 0.5}, samples: 16}",
			`{"adaptive_weights":true,"alpha1":0.0001,"alpha2":0.0001,"batch_size":16,"completion_tokens":"auto","max_new_tokens":64,` +
				`"objective":"residual","samples":16,"schedule":"sweep","seed":0,"truncation":"data"}`},
		{"delta jacobi drops truncation and refine", "{objective: delta, schedule: jacobi, refine: {steps: 4}, truncation: data}",
			`{"adaptive_weights":true,"alpha1":0.0001,"alpha2":0.0001,"batch_size":16,"completion_tokens":"auto","iterations":5,"max_new_tokens":64,` +
				`"objective":"delta","samples":16,"schedule":"jacobi","tolerance":0}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(parse(t, headIterIS+"parameters: "+tc.params+"\n").Canonical()["parameters"])
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("parameters\n got  %s\n want %s", got, tc.want)
			}
		})
	}
	// The package doc's example parameters are the recommended method, with no warning.
	s := parse(t, headIterIS+"parameters: {objective: residual, schedule: sweep, refine: {steps: 30, lr: 1.0e-3}, alpha1: 1.0e-4, alpha2: 1.0e-4}\n")
	if w := s.Warnings(); len(w) != 0 || s.Parameters != DefaultsFor(MethodIterIS, ObjectiveResidual) {
		t.Errorf("warnings %q, parameters %+v", w, s.Parameters)
	}
}
