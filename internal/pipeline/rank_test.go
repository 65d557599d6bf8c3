package pipeline

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/spec"
)

// limits are min(out, in) of the fixture's modules (hidden 128, 2 kv heads of 32, MLP 344).
var limits = map[string]int{"q_proj": 128, "k_proj": 64, "v_proj": 64, "o_proj": 128, "gate_proj": 128, "up_proj": 128, "down_proj": 128}

func leafOf(name string) string { return name[strings.LastIndex(name, ".")+1:] }

// twenty lists the four fixture adapters five times each: 20 adapters of rank 8.
func twenty(t *testing.T, method, params string) *spec.Spec {
	t.Helper()
	var entries []adapterEntry
	for i := 0; i < 5; i++ {
		for _, n := range merge4 {
			e := fixtureEntry(n)
			e.name = fmt.Sprintf("%s%d", n, i)
			entries = append(entries, e)
		}
	}
	return specOf(t, method, params, entries...)
}

func hasWarning(rep *Report, parts ...string) bool {
	for _, w := range rep.Warnings {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

// TestAutoRankNeverAboveModule merges 20 adapters of rank 8: rank auto (160) would exceed every
// module (64x128 k_proj and v_proj, 128 wide elsewhere). Each is written at rank min(out, in),
// and since no update of that shape has a higher rank, cat's output still equals the exact sum
// of the updates.
func TestAutoRankNeverAboveModule(t *testing.T) {
	s := twenty(t, "cat", "")
	out, rep := runSpec(t, s)
	got := effective(t, out)
	var updates []map[string]*mat.Dense
	for _, n := range merge4 {
		updates = append(updates, effective(t, filepath.Join(fixture, "adapters", n)))
	}
	a, err := adapter.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for name, m := range a.Modules {
		want := min(160, limits[leafOf(name)])
		if m.R != want {
			t.Errorf("%s: rank %d, want %d", name, m.R, want)
		}
		sum := taskSum(updates, name, 5)
		worst = math.Max(worst, relFrob(got[name], sum))
	}
	if worst > 1e-5 {
		t.Errorf("clamped cat differs from the exact sum of the updates by %.3g relative", worst)
	}
	if rep.Output.RankClamped != 28 || !hasWarning(rep, "output.rank auto", "160", "28 of 28 modules", "min(out, in)", "128 there") {
		t.Errorf("report: %d modules clamped, warnings %q; want 28 and a warning naming the limit", rep.Output.RankClamped, rep.Warnings)
	}
}

// TestHugeRankIsClamped asks for output.rank 100000 (which used to run out of memory): every
// module is written at min(out, in), and the report says so.
func TestHugeRankIsClamped(t *testing.T) {
	for _, method := range []string{"iteris", "cat"} {
		var entries []adapterEntry
		for _, n := range merge4[:2] {
			entries = append(entries, fixtureEntry(n))
		}
		s := specOf(t, method, "samples: 2", entries...)
		s.Output.Rank = 100000
		out, rep := runSpec(t, s)
		a, err := adapter.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		// cat never pads: a rank above the sum of the input ranks (16) keeps the sum.
		for name, m := range a.Modules {
			want := limits[leafOf(name)]
			if method == "cat" {
				want = 16
			}
			if m.R != want {
				t.Errorf("%s: %s rank %d, want %d", method, name, m.R, want)
			}
		}
		if method == "cat" {
			if rep.Output.RankClamped != 0 {
				t.Errorf("cat: %d modules clamped, want 0", rep.Output.RankClamped)
			}
			continue
		}
		if rep.Output.RankClamped != 28 || !hasWarning(rep, "output.rank 100000", "28 of 28 modules") {
			t.Errorf("%s: %d modules clamped, warnings %q", method, rep.Output.RankClamped, rep.Warnings)
		}
	}
}
