package output

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func fullReport(x func(i int) float64) *Report {
	f := func(i int) *float64 { v := x(i); return &v }
	conv := true
	return &Report{
		Version: "v", Method: "iteris",
		Settings:  map[string]any{"parameters": map[string]any{"alpha1": x(0)}, "list": []any{x(1), "s"}},
		Inputs:    Inputs{BaseModel: "b", Files: map[string]string{"f": "h"}},
		Tasks:     []TaskReport{{Name: "t", Path: "p", Weight: x(2), Modules: 1}},
		Levels:    4,
		Converged: &conv,
		Solves: []SolveRecord{{Solve: 1, Sites: map[string]SiteRecord{"m": {
			Residual: x(3), RelChange: f(4), Coefs: []float64{x(5)}, Weights: []float64{x(6)}, Method: "cholesky", Rank: 2, Tokens: []int{3},
		}}, MaxRelChange: f(7), CaptureSeconds: x(8), SolveSeconds: x(9)}},
		Output:   OutputReport{Dir: "o", Modules: 1, MaxRank: 2, DType: "float32"},
		Timings:  map[string]float64{"total": x(10)},
		Warnings: []string{"<w>"},
	}
}

// TestMarshalReportFinite checks that a report of finite values is written exactly as
// json.MarshalIndent writes it (field order, omitempty, HTML escaping).
func TestMarshalReportFinite(t *testing.T) {
	for _, r := range []*Report{fullReport(func(i int) float64 { return float64(i) + 0.5 }), {}, testReport()} {
		got, err := MarshalReport(r)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, append(want, '\n')) {
			t.Errorf("MarshalReport:\n%s\njson.MarshalIndent:\n%s", got, want)
		}
	}
}

// TestMarshalReportNonFinite puts NaN, +Inf and -Inf into every float of the report: each is
// written as null, and the rest as before.
func TestMarshalReportNonFinite(t *testing.T) {
	bad := []float64{math.NaN(), math.Inf(1), math.Inf(-1)}
	r := fullReport(func(i int) float64 { return bad[i%3] })
	if _, err := json.Marshal(r); err == nil {
		t.Fatal("the test report should not marshal with encoding/json")
	}
	b, err := MarshalReport(r)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "null"); n != 11 {
		t.Errorf("%d nulls, want 11 (one per non-finite value):\n%s", n, b)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	site := back.Solves[0].Sites["m"]
	if site.RelChange != nil || back.Solves[0].MaxRelChange != nil || site.Method != "cholesky" || site.Rank != 2 || back.Tasks[0].Name != "t" {
		t.Errorf("read back: %+v", back)
	}
}
