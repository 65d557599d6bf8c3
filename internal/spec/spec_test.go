package spec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Minimal valid heads: four lines each, so a key appended after them starts
// on line 5.
const (
	headCat    = "base_model: m\nmethod: cat\nadapters:\n  - {path: a}\n"
	headIterIS = "base_model: m\nmethod: iteris\nadapters:\n  - {path: a, calibration: c}\n"
)

// parse parses src as "cfg.yaml" and fails the test on error.
func parse(t *testing.T, src string) *Spec {
	t.Helper()
	s, err := Parse([]byte(src), "cfg.yaml")
	if err != nil {
		t.Fatalf("Parse: %v\n--- config:\n%s", err, src)
	}
	return s
}

// exported returns the exported settings of s, for comparison.
func exported(s *Spec) Spec {
	return Spec{BaseModel: s.BaseModel, Method: s.Method, Adapters: s.Adapters,
		Parameters: s.Parameters, Output: s.Output, Cluster: s.Cluster}
}

func TestDefaults(t *testing.T) {
	want := Parameters{
		Samples: 16, Objective: "full", Schedule: "sweep", Iterations: 5, Tolerance: 0,
		Alpha1: 1e-4, Alpha2: 1e-4, AdaptiveWeights: true, CompletionTokens: 0, MaxNewTokens: 64,
		BatchSize: 16, Reduce: 1, Density: 0.5, MajoritySign: "total", SVDRank: 0, Seed: 0,
		Truncation: "svd", Refine: Refine{Steps: 0, LR: 1e-3},
	}
	if got := defaultParameters("iteris"); got != want {
		t.Errorf("defaultParameters(iteris) = %+v, want %+v", got, want)
	}
	want.Objective = "delta"
	if got := defaultParameters("regmean"); got != want {
		t.Errorf("defaultParameters(regmean) = %+v, want %+v", got, want)
	}
	if got := defaultOutput(); got != (Output{Rank: 0, DType: "float32"}) {
		t.Errorf("defaultOutput() = %+v", got)
	}
	if got := defaultCluster(); got != (Cluster{Mode: "embedded", URL: "", Workers: 1}) {
		t.Errorf("defaultCluster() = %+v", got)
	}
	if got := methods; len(got) != 11 || got[0] != "iteris" || got[10] != "dare_ties" {
		t.Errorf("methods = %v", got)
	}
}

func TestParseGood(t *testing.T) {
	base := func(method string, adapters ...AdapterSpec) Spec {
		return Spec{BaseModel: "m", Method: method, Adapters: adapters,
			Parameters: defaultParameters(method), Output: defaultOutput(), Cluster: defaultCluster()}
	}
	tests := []struct {
		name string
		src  string
		want func() Spec
	}{
		{"minimal iteris", headIterIS, func() Spec {
			return base("iteris", AdapterSpec{Name: "a", Path: "a", Calibration: "c", Weight: 1})
		}},
		{"minimal regmean: objective delta", "base_model: m\nmethod: regmean\nadapters: [{path: x/y/, calibration: c}]\n", func() Spec {
			s := base("regmean", AdapterSpec{Name: "y", Path: "x/y/", Calibration: "c", Weight: 1})
			if s.Parameters.Objective != "delta" {
				panic("regmean default")
			}
			return s
		}},
		{"one adapter by cat, no calibration", headCat, func() Spec {
			return base("cat", AdapterSpec{Name: "a", Path: "a", Weight: 1})
		}},
		{"brief example", `base_model: testdata/tiny-skills/model
method: iteris            # regmean, cat, ...
adapters:
  - {name: rev, path: testdata/tiny-skills/adapters/rev, calibration: testdata/tiny-skills/data/rev/calib.jsonl, weight: 1.0}
parameters: {samples: 16, objective: full, schedule: sweep, iterations: 5, alpha1: 1.0e-4, alpha2: 1.0e-4, adaptive_weights: true, completion_tokens: auto}
output: {rank: auto, dtype: float32}  # auto = sum of input ranks; an integer; or full
cluster: {mode: embedded}
`, func() Spec {
			s := base("iteris", AdapterSpec{Name: "rev", Path: "testdata/tiny-skills/adapters/rev",
				Calibration: "testdata/tiny-skills/data/rev/calib.jsonl", Weight: 1})
			s.BaseModel = "testdata/tiny-skills/model"
			return s
		}},
		{"every parameter set", headIterIS + `parameters:
  samples: 64
  objective: delta
  schedule: jacobi
  iterations: 16
  tolerance: 1e-6
  alpha1: 0
  alpha2: 2.5e-3
  adaptive_weights: false
  completion_tokens: 9
  max_new_tokens: 32
  batch_size: 4
  reduce: 0.9
  density: 0.25
  majority_sign: frequency
  svd_rank: 8
  seed: 18446744073709551615
output: {rank: full, dtype: bfloat16}
cluster: {mode: nats, url: "nats://a:4222,tls://b:4222", workers: 3}
`, func() Spec {
			s := base("iteris", AdapterSpec{Name: "a", Path: "a", Calibration: "c", Weight: 1})
			s.Parameters = Parameters{Samples: 64, Objective: "delta", Schedule: "jacobi", Iterations: 16,
				Tolerance: 1e-6, Alpha1: 0, Alpha2: 2.5e-3, AdaptiveWeights: false, CompletionTokens: 9,
				MaxNewTokens: 32, BatchSize: 4, Reduce: 0.9, Density: 0.25, MajoritySign: "frequency",
				SVDRank: 8, Seed: math.MaxUint64, Truncation: "svd", Refine: Refine{LR: 1e-3}}
			s.Output = Output{Rank: -1, DType: "bfloat16"}
			s.Cluster = Cluster{Mode: "nats", URL: "nats://a:4222,tls://b:4222", Workers: 3}
			return s
		}},
		{"number forms: integral float, hex, underscore, int weight, negative weight", headCat + `  - {path: b, weight: -2}
  - {path: c, weight: 0.5}
parameters: {samples: 16.0, batch_size: 1_000, seed: 0x10, density: 1}
output: {rank: 32, dtype: float16}
`, func() Spec {
			s := base("cat", AdapterSpec{Name: "a", Path: "a", Weight: 1}, AdapterSpec{Name: "b", Path: "b", Weight: -2},
				AdapterSpec{Name: "c", Path: "c", Weight: 0.5})
			s.Parameters.BatchSize = 1000
			s.Parameters.Seed = 16
			s.Parameters.Density = 1
			s.Output = Output{Rank: 32, DType: "float16"}
			return s
		}},
		{"anchors, aliases and merge keys", `base_model: m
method: linear
adapters:
  - &first {path: dir/rev, weight: 0.5}
  - <<: *first
    path: dir/upc
  - <<: [{name: x, weight: 3}, *first]
    path: dir/nxt
parameters: &p {density: 0.75}
output: {rank: 16}
`, func() Spec {
			s := base("linear", AdapterSpec{Name: "rev", Path: "dir/rev", Weight: 0.5},
				AdapterSpec{Name: "upc", Path: "dir/upc", Weight: 0.5},
				AdapterSpec{Name: "x", Path: "dir/nxt", Weight: 3})
			s.Parameters.Density = 0.75
			s.Output.Rank = 16
			return s
		}},
		{"document markers, null sections, names that look like numbers", "---\nbase_model: m\nmethod: ties\nadapters:\n  - {name: 2024, path: 7}\nparameters:\noutput: ~\ncluster: {}\n...\n", func() Spec {
			return base("ties", AdapterSpec{Name: "2024", Path: "7", Weight: 1})
		}},
		{"nats host:port without scheme", headCat + "cluster: {mode: nats, url: \"localhost:4222\"}\n", func() Spec {
			s := base("cat", AdapterSpec{Name: "a", Path: "a", Weight: 1})
			s.Cluster = Cluster{Mode: "nats", URL: "localhost:4222", Workers: 1}
			return s
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := parse(t, tc.src)
			if got, want := exported(s), tc.want(); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			if string(s.Raw) != tc.src || s.Path != "cfg.yaml" {
				t.Errorf("Raw/Path not kept: %q %q", s.Raw, s.Path)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		name string
		src  string
		key  string // key path the message names ("" for whole-file errors)
		line int    // line the message names (0: none)
		msg  string // further text the message contains
	}{
		{"empty file", "", "", 0, "empty"},
		{"comments only", "# nothing\n", "", 0, "empty"},
		{"document marker only", "---\n", "", 2, "empty"},
		{"two documents", headCat + "---\n" + headCat, "", 5, "more than one YAML document"},
		{"syntax error", "base_model: [m\n", "", 0, "not valid YAML"},
		{"top level is a list", "- base_model: m\n", "", 1, "expected a mapping with keys adapters, base_model, cluster, method, output, parameters"},
		{"unknown top-level key", headCat + "dtype: float16\n", "dtype", 5, "unknown key; allowed keys: adapters, base_model, cluster, method, output, parameters"},
		{"unknown parameter, suggestion", headIterIS + "parameters:\n  alpah1: 1\n", "parameters.alpah1", 6, `did you mean "alpha1"`},
		{"unknown adapter key", "base_model: m\nmethod: cat\nadapters:\n  - {path: a}\n  - {path: b, wieght: 2}\n", "adapters[1].wieght", 5, "allowed keys: calibration, name, path, weight"},
		{"unknown output key", headCat + "output: {rank: 8, type: float16}\n", "output.type", 5, "allowed keys: dtype, rank"},
		{"unknown cluster key", headCat + "cluster:\n  mode: nats\n  urls: nats://x\n", "cluster.urls", 7, "allowed keys: mode, url, workers"},
		{"duplicate key", headCat + "method: ties\n", "method", 5, "key given twice (first on line 2)"},
		{"missing base_model", "method: cat\nadapters: [{path: a}]\n", "base_model", 1, "required key is missing"},
		{"missing method", "base_model: m\nadapters: [{path: a}]\n", "method", 1, "required key is missing"},
		{"missing adapters", "base_model: m\nmethod: cat\n", "adapters", 1, "required key is missing"},
		{"null base_model", "base_model:\nmethod: cat\nadapters: [{path: a}]\n", "base_model", 1, "expected a string, got no value (null)"},
		{"empty adapters", "base_model: m\nmethod: cat\nadapters: []\n", "adapters", 3, "at least one adapter"},
		{"adapters is a mapping", "base_model: m\nmethod: cat\nadapters: {path: a}\n", "adapters", 3, "expected a list of adapters"},
		{"adapter is a string", "base_model: m\nmethod: cat\nadapters:\n  - a\n", "adapters[0]", 4, "expected a mapping with keys calibration, name, path, weight"},
		{"adapter without path", "base_model: m\nmethod: cat\nadapters:\n  - {path: a}\n  - {name: b}\n", "adapters[1].path", 5, "required key is missing"},
		{"calibration missing for iteris", "base_model: m\nmethod: iteris\nadapters:\n  - {path: a, calibration: c}\n  - {path: b}\n", "adapters[1].calibration", 5, "required by method iteris"},
		{"calibration missing for regmean", "base_model: m\nmethod: regmean\nadapters:\n  - {path: a}\n", "adapters[0].calibration", 4, "required by method regmean"},
		{"duplicate names", "base_model: m\nmethod: cat\nadapters:\n  - {path: x/rev}\n  - {path: y/rev}\n", "adapters[1].name", 5, `"rev" is already the name of adapters[0] (the base name of its path`},
		{"empty name", headCat + "  - {path: b, name: \"\"}\n", "adapters[1].name", 5, "must not be empty"},
		{"unknown method, suggestion", "base_model: m\nmethod: IterIS\nadapters: [{path: a}]\n", "method", 2, `"IterIS" is not allowed (did you mean "iteris"?); expected one of iteris, regmean, cat, linear, svd, ties, ties_svd, magnitude_prune, magnitude_prune_svd, dare_linear, dare_ties`},
		{"method is a list", "base_model: m\nmethod: [cat]\nadapters: [{path: a}]\n", "method", 2, "expected a string, got a list"},
		{"parameters is a list", headCat + "parameters: [1]\n", "parameters", 5, "expected a mapping with keys adaptive_weights"},
		{"samples is a string", headIterIS + "parameters:\n  samples: \"16\"\n", "parameters.samples", 6, `expected an integer, got the string "16"`},
		{"samples is fractional", headIterIS + "parameters: {samples: 1.5}\n", "parameters.samples", 5, "expected an integer, got the number 1.5"},
		{"samples zero", headIterIS + "parameters: {samples: 0}\n", "parameters.samples", 5, "must be a positive integer, got 0"},
		{"samples out of int range", headIterIS + "parameters: {samples: 99999999999999999999}\n", "parameters.samples", 5, "expected an integer"},
		{"alpha1 is a word", headIterIS + "parameters: {alpha1: abc}\n", "parameters.alpha1", 5, `expected a number, got the string "abc"`},
		{"alpha1 NaN", headIterIS + "parameters: {alpha1: .nan}\n", "parameters.alpha1", 5, "must be a finite number, got NaN"},
		{"alpha2 negative", headIterIS + "parameters: {alpha2: -1e-4}\n", "parameters.alpha2", 5, "must be >= 0, got -0.0001"},
		{"alpha1 overflows", headIterIS + "parameters: {alpha1: 1e400}\n", "parameters.alpha1", 5, "number 1e400 is out of range"},
		{"adaptive_weights yes", headIterIS + "parameters: {adaptive_weights: yes}\n", "parameters.adaptive_weights", 5, `expected true or false, got the string "yes"`},
		{"objective unknown", headIterIS + "parameters: {objective: output}\n", "parameters.objective", 5, "expected one of delta, full"},
		{"regmean with objective full", "base_model: m\nmethod: regmean\nadapters: [{path: a, calibration: c}]\nparameters: {objective: full}\n", "parameters.objective", 4, "method regmean supports only objective delta"},
		{"schedule unknown", headIterIS + "parameters: {schedule: gauss}\n", "parameters.schedule", 5, "expected one of jacobi, sweep"},
		{"iterations zero", headIterIS + "parameters: {schedule: jacobi, iterations: 0}\n", "parameters.iterations", 5, "must be >= 1, got 0"},
		{"tolerance negative", headIterIS + "parameters: {tolerance: -1}\n", "parameters.tolerance", 5, "must be >= 0, got -1"},
		{"completion_tokens zero", headIterIS + "parameters: {completion_tokens: 0}\n", "parameters.completion_tokens", 5, "expected auto or a positive integer, got the number 0"},
		{"completion_tokens word", headIterIS + "parameters: {completion_tokens: all}\n", "parameters.completion_tokens", 5, `expected auto or a positive integer, got the string "all"`},
		{"max_new_tokens zero", headIterIS + "parameters: {max_new_tokens: 0}\n", "parameters.max_new_tokens", 5, "must be a positive integer, got 0"},
		{"batch_size negative", headIterIS + "parameters: {batch_size: -2}\n", "parameters.batch_size", 5, "must be a positive integer, got -2"},
		{"reduce zero", "base_model: m\nmethod: regmean\nadapters: [{path: a, calibration: c}]\nparameters: {reduce: 0}\n", "parameters.reduce", 4, "must be in (0, 1], got 0"},
		{"density above 1", headCat + "parameters: {density: 1.5}\n", "parameters.density", 5, "must be in (0, 1], got 1.5"},
		{"majority_sign unknown", headCat + "parameters: {majority_sign: mean}\n", "parameters.majority_sign", 5, "expected one of total, frequency"},
		{"svd_rank negative", headCat + "parameters: {svd_rank: -1}\n", "parameters.svd_rank", 5, "must be a positive integer"},
		{"seed negative", headCat + "parameters: {seed: -1}\n", "parameters.seed", 5, "expected an integer in [0, 2^64), got the number -1"},
		{"weight infinite", headCat + "  - {path: b, weight: .inf}\n", "adapters[1].weight", 5, "must be a finite number, got +Inf"},
		{"weight is a list", headCat + "  - {path: b, weight: [1]}\n", "adapters[1].weight", 5, "expected a number, got a list"},
		{"no positive weight for iteris", "base_model: m\nmethod: iteris\nadapters:\n  - {path: a, calibration: c, weight: -1}\n  - {path: b, calibration: c, weight: 0}\n", "adapters", 4, "needs at least one adapter with a positive weight"},
		{"rank zero", headCat + "output: {rank: 0}\n", "output.rank", 5, "expected auto, full or a positive integer, got the number 0"},
		{"rank word", headCat + "output: {rank: half}\n", "output.rank", 5, `expected auto, full or a positive integer, got the string "half"`},
		{"dtype unknown", headCat + "output:\n  dtype: fp8\n", "output.dtype", 6, "expected one of float32, float16, bfloat16"},
		{"cluster mode unknown", headCat + "cluster: {mode: k8s}\n", "cluster.mode", 5, "expected one of embedded, nats"},
		{"nats without url", headCat + "cluster: {mode: nats}\n", "cluster.url", 5, "is required with mode nats"},
		{"nats url scheme", headCat + "cluster: {mode: nats, url: \"http://x:4222\"}\n", "cluster.url", 5, `scheme "http" is not one of nats, tls, ws, wss`},
		{"workers zero", headCat + "cluster: {workers: 0}\n", "cluster.workers", 5, "must be a positive integer, got 0"},
		{"non-string key", headCat + "parameters: {[a]: 1}\n", "parameters", 5, "mapping keys must be plain strings"},
		{"merge key of a scalar", headCat + "parameters: {<<: 5}\n", "parameters", 5, "a merge key (<<) takes a mapping or a list of mappings"},
		{"self-merging anchor", headCat + "parameters: &p {density: 0.5, <<: *p}\n", "parameters", 5, "merge keys (<<) nest deeper than 8 levels"},
		{"custom tag", headCat + "parameters: {samples: !big 16}\n", "parameters.samples", 5, "expected an integer, got a value tagged !big"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "dir/bad.yaml")
			checkErr(t, err, "dir/bad.yaml", tc.key, tc.line, tc.msg)
		})
	}
}

// checkErr asserts that err wraps ErrConfig, that one of its *Errors has
// key path key at line line, and that the message names the file, the key,
// the line and contains msg.
func checkErr(t *testing.T, err error, file, key string, line int, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %s: %s", key, msg)
	}
	if !errors.Is(err, ErrConfig) {
		t.Errorf("error does not wrap ErrConfig: %v", err)
	}
	text := err.Error()
	for _, want := range []string{file, key, msg} {
		if !strings.Contains(text, want) {
			t.Errorf("error %q does not contain %q", text, want)
		}
	}
	found := false
	for _, e := range flatten(err) {
		if e.Key == key && e.Line == line && e.File == file && strings.Contains(e.Msg, msg) {
			found = true
			if line > 0 && !strings.HasPrefix(e.Error(), fmt.Sprintf("%s:%d:", file, line)) {
				t.Errorf("error %q does not start with %s:%d:", e.Error(), file, line)
			}
		}
	}
	if !found {
		t.Errorf("no *Error with key %q on line %d containing %q in:\n%v", key, line, msg, text)
	}
}

// flatten returns the *Errors in err (one, or several joined).
func flatten(err error) []*Error {
	var out []*Error
	if e, ok := err.(*Error); ok {
		return []*Error{e}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
	}
	return out
}

func TestParseReportsAllErrors(t *testing.T) {
	src := "base_model: m\nmethod: iteris\nadapters:\n  - {path: a}\nparameters:\n  samples: x\n  alpha1: -1\n  bogus: 1\noutput: {dtype: int8}\n"
	_, err := Parse([]byte(src), "all.yaml")
	errs := flatten(err)
	want := []struct {
		key  string
		line int
	}{
		{"adapters[0].calibration", 4}, {"parameters.samples", 6}, {"parameters.alpha1", 7},
		{"parameters.bogus", 8}, {"output.dtype", 9},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want { // sorted by line
		if errs[i].Key != w.key || errs[i].Line != w.line {
			t.Errorf("error %d = %s line %d, want %s line %d", i, errs[i].Key, errs[i].Line, w.key, w.line)
		}
	}
	if !errors.Is(err, ErrConfig) {
		t.Error("joined error does not wrap ErrConfig")
	}
	var e *Error
	if !errors.As(err, &e) || e.Key != "adapters[0].calibration" {
		t.Errorf("errors.As gave %v", e)
	}
}

func TestParseCapsErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString(headCat + "parameters:\n")
	for i := range 30 {
		fmt.Fprintf(&b, "  bad%d: 1\n", i)
	}
	errs := flatten(func() error { _, err := Parse([]byte(b.String()), "many.yaml"); return err }())
	if len(errs) != maxErrors+1 || errs[maxErrors].Msg != "10 more errors not shown" {
		t.Fatalf("got %d errors, last %v", len(errs), errs[len(errs)-1])
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"none", headIterIS + "parameters: {samples: 8, alpha1: 0, seed: 3}\n", nil},
		{"iteris parameter with cat", headCat + "parameters:\n  alpha1: 1e-3\n  samples: 4\n  density: 0.3\n", []string{
			"cfg.yaml:6:11: parameters.alpha1: not used by method cat (only by iteris)",
			"cfg.yaml:7:12: parameters.samples: not used by method cat (only by iteris, regmean)",
			"cfg.yaml:8:12: parameters.density: not used by method cat (only by ties, ties_svd, magnitude_prune, magnitude_prune_svd, dare_linear, dare_ties)",
		}},
		{"iterations with sweep", headIterIS + "parameters: {iterations: 10, tolerance: 1e-3}\n", []string{
			"cfg.yaml:5:26: parameters.iterations: only used with schedule jacobi (schedule is sweep)",
			"cfg.yaml:5:41: parameters.tolerance: only used with schedule jacobi (schedule is sweep)",
		}},
		{"iterations with jacobi", headIterIS + "parameters: {schedule: jacobi, iterations: 10, tolerance: 1e-3}\n", nil},
		{"max_new_tokens with fixed completion", headIterIS + "parameters: {completion_tokens: 5, max_new_tokens: 9}\n", []string{
			"cfg.yaml:5:52: parameters.max_new_tokens: only used with completion_tokens: auto (completion_tokens is 5)",
		}},
		{"seed with delta", headIterIS + "parameters: {objective: delta, seed: 1}\n", []string{
			"cfg.yaml:5:38: parameters.seed: only used by iteris with objective full or residual (randomized SVD of the updates)",
		}},
		{"calibration with linear, url with embedded", "base_model: m\nmethod: linear\nadapters:\n  - {path: a, calibration: c}\ncluster: {url: nats://x:4222}\n", []string{
			"cfg.yaml:4:28: adapters[0].calibration: not used by method linear (only by iteris, regmean)",
			"cfg.yaml:5:16: cluster.url: only used with mode nats (mode is embedded)",
		}},
		{"weights and repeated path", headIterIS + "  - {path: b, calibration: c, weight: 0}\n  - {path: a, name: a2, calibration: c, weight: -0.5}\n", []string{
			"cfg.yaml:5:39: adapters[1].weight: is 0: the adapter contributes nothing",
			"cfg.yaml:6:12: adapters[2].path: a is also adapters[0]",
			"cfg.yaml:6:49: adapters[2].weight: is negative (-0.5): the solve's matrix may not be positive definite",
		}},
		{"svd_rank with ties_svd", "base_model: m\nmethod: ties_svd\nadapters: [{path: a}]\nparameters: {svd_rank: 4, majority_sign: frequency, seed: 2}\n", nil},
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

func TestCanonical(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // JSON of Canonical()
	}{
		{"iteris defaults", headIterIS,
			`{"adapters":[{"calibration":"c","name":"a","path":"a","weight":1}],"base_model":"m",` +
				`"cluster":{"mode":"embedded","workers":1},"method":"iteris","output":{"dtype":"float32","rank":"auto"},` +
				`"parameters":{"adaptive_weights":true,"alpha1":0.0001,"alpha2":0.0001,"batch_size":16,"completion_tokens":"auto",` +
				`"max_new_tokens":64,"objective":"full","samples":16,"schedule":"sweep","seed":0,"truncation":"svd"}}`},
		{"iteris jacobi delta, fixed completion", headIterIS + "parameters: {schedule: jacobi, objective: delta, completion_tokens: 7, density: 0.1}\noutput: {rank: full}\n",
			`{"adapters":[{"calibration":"c","name":"a","path":"a","weight":1}],"base_model":"m",` +
				`"cluster":{"mode":"embedded","workers":1},"method":"iteris","output":{"dtype":"float32","rank":"full"},` +
				`"parameters":{"adaptive_weights":true,"alpha1":0.0001,"alpha2":0.0001,"batch_size":16,"completion_tokens":7,` +
				`"iterations":5,"objective":"delta","samples":16,"schedule":"jacobi","tolerance":0}}`},
		{"regmean", "base_model: m\nmethod: regmean\nadapters: [{path: a, calibration: c}]\nparameters: {reduce: 0.9, alpha1: 1}\n",
			`{"adapters":[{"calibration":"c","name":"a","path":"a","weight":1}],"base_model":"m",` +
				`"cluster":{"mode":"embedded","workers":1},"method":"regmean","output":{"dtype":"float32","rank":"auto"},` +
				`"parameters":{"batch_size":16,"completion_tokens":"auto","max_new_tokens":64,"objective":"delta","reduce":0.9,"samples":16}}`},
		{"cat, nats", headCat + "cluster: {mode: nats, url: nats://h:4222, workers: 2}\n",
			`{"adapters":[{"name":"a","path":"a","weight":1}],"base_model":"m",` +
				`"cluster":{"mode":"nats","url":"nats://h:4222","workers":2},"method":"cat","output":{"dtype":"float32","rank":"auto"},"parameters":{}}`},
		{"svd without svd_rank", "base_model: m\nmethod: svd\nadapters: [{path: a, weight: 0.25}]\noutput: {rank: 8}\n",
			`{"adapters":[{"name":"a","path":"a","weight":0.25}],"base_model":"m",` +
				`"cluster":{"mode":"embedded","workers":1},"method":"svd","output":{"dtype":"float32","rank":8},"parameters":{"seed":0}}`},
		{"dare_ties", "base_model: m\nmethod: dare_ties\nadapters: [{path: a}]\nparameters: {svd_rank: 4, density: 0.3, seed: 7}\n",
			`{"adapters":[{"name":"a","path":"a","weight":1}],"base_model":"m",` +
				`"cluster":{"mode":"embedded","workers":1},"method":"dare_ties","output":{"dtype":"float32","rank":"auto"},` +
				`"parameters":{"density":0.3,"majority_sign":"total","seed":7}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(parse(t, tc.src).Canonical())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Canonical()\n got  %s\n want %s", got, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	s, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Raw) != string(raw) || s.Path != "testdata/good.yaml" {
		t.Errorf("Raw or Path not kept")
	}
	names := []string{}
	for _, a := range s.Adapters {
		names = append(names, a.Name)
	}
	if got := strings.Join(names, ","); got != "rev,upc,nxt,srt" || s.Method != "iteris" || len(s.Warnings()) != 0 {
		t.Errorf("names %s, method %s, warnings %q", got, s.Method, s.Warnings())
	}

	_, err = Load("testdata/missing.yaml")
	if !errors.Is(err, ErrConfig) || !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "testdata/missing.yaml: cannot read the config") {
		t.Errorf("Load(missing) = %v", err)
	}

	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}

func TestResolve(t *testing.T) {
	s := parse(t, "base_model: m\nmethod: iteris\nadapters:\n  - {path: a, calibration: /abs/c}\n  - {path: /abs/b, calibration: c}\n")
	r := s.Resolve("/root/dir")
	if r.BaseModel != "/root/dir/m" || r.Adapters[0].Path != "/root/dir/a" || r.Adapters[0].Calibration != "/abs/c" ||
		r.Adapters[1].Path != "/abs/b" || r.Adapters[1].Calibration != "/root/dir/c" {
		t.Errorf("Resolve = %+v", r)
	}
	if s.BaseModel != "m" || s.Adapters[0].Path != "a" || r.Adapters[0].Name != "a" {
		t.Errorf("Resolve changed the original or the names: %+v", s)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "f.yaml", Line: 3, Column: 5, Key: "output.rank", Msg: "m"}, "f.yaml:3:5: output.rank: m"},
		{Error{File: "f.yaml", Line: 3, Key: "k", Msg: "m"}, "f.yaml:3: k: m"},
		{Error{File: "f.yaml", Msg: "m"}, "f.yaml: m"},
		{Error{Key: "k", Msg: "m"}, "k: m"},
		{Error{Msg: "m"}, "m"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}
