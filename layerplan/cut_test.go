package layerplan

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const (
	miB = int64(1) << 20
	giB = int64(1) << 30
)

// bounds returns the shards' layer boundaries, e.g. [0 8 16 24 32].
func bounds(shards []Shard) []int {
	var b []int
	for _, s := range shards {
		b = append(b, s.Lo)
	}
	if len(shards) > 0 {
		b = append(b, shards[len(shards)-1].Hi)
	}
	return b
}

func peaks(shards []Shard) []int64 {
	var p []int64
	for _, s := range shards {
		p = append(p, s.Footprint.Peak)
	}
	return p
}

// The expected cuts come from an independent exhaustive search over every composition of the
// layers (tiny-skills, 8B) or a two-pass dynamic program (70B), both written from the package
// documentation's formulas, not from this package.
func TestCut(t *testing.T) {
	tiny := tinyInput(jacobi(5, Full, true, 2))
	j8 := llamaInput(llama8B, jacobi(5, Full, true, 16))
	s70 := llamaInput(llama70B, sweep(Full, true, 16))
	r70 := llamaInput(llama70B, regmean(16))
	tests := []struct {
		name    string
		in      Input
		workers []Worker
		bounds  []int
		peaks   []int64
		workerI []int // each shard's worker, when not 0, 1, 2, ...
	}{
		{"tiny 1", tiny, workersOf(1, 64*miB), []int{0, 4}, []int64{54729984}, nil},
		{"tiny 2", tiny, workersOf(2, 64*miB), []int{0, 2, 4}, []int64{48499968, 48613120}, nil},
		// Three shards: the two-layer shard goes in the middle, where neither the embeddings
		// nor lm_head are.
		{"tiny 3", tiny, workersOf(3, 64*miB), []int{0, 1, 3, 4}, []int64{45406464, 48480000, 45519616}, nil},
		{"tiny 4", tiny, workersOf(4, 64*miB), []int{0, 1, 2, 3, 4}, []int64{45406464, 45386496, 45386496, 45519616}, nil},
		{"tiny 6", tiny, workersOf(6, 64*miB), []int{0, 1, 2, 3, 4}, nil, nil},
		{"8B 1x128GiB", j8, workersOf(1, 128*giB), []int{0, 32}, []int64{102192660480}, nil},
		{"8B 2x96GiB", j8, workersOf(2, 96*giB), []int{0, 16, 32}, []int64{83581992960, 83720421376}, nil},
		{"8B 3x80GiB", j8, workersOf(3, 80*giB), []int{0, 11, 22, 32}, []int64{78380892160, 76417957888, 77479100416}, nil},
		{"8B 4x72GiB", j8, workersOf(4, 72*giB), []int{0, 8, 16, 24, 32}, []int64{75260231680, 73297297408, 73297297408, 75398660096}, nil},
		{"8B 5x72GiB", j8, workersOf(5, 72*giB), []int{0, 6, 13, 20, 27, 32},
			[]int64{73179791360, 72257077248, 72257077248, 72257077248, 72277999616}, nil},
		// Different budgets: the 72 GiB worker first can hold 9 layers only.
		{"8B 72+96GiB", j8, []Worker{{"small", 72 * giB}, {"big", 96 * giB}}, []int{0, 9, 32}, []int64{76300451840, 91001962496}, nil},
		{"8B 96+72GiB", j8, []Worker{{"big", 96 * giB}, {"small", 72 * giB}}, []int{0, 23, 32}, []int64{90863534080, 76438880256}, nil},
		// A worker too small for any layer is left out.
		{"8B 1+96+96GiB", j8, []Worker{{"tiny", giB}, {"a", 96 * giB}, {"b", 96 * giB}}, []int{0, 16, 32}, nil, []int{1, 2}},
		{"70B sweep 8x256GiB", s70, workersOf(8, 256*giB), []int{0, 10, 20, 30, 40, 50, 60, 70, 80},
			[]int64{256832569344, 252629876736, 252629876736, 252629876736, 252629876736, 252629876736, 252629876736, 256832602112}, nil},
		{"70B sweep 6x256GiB", s70, workersOf(6, 256*giB), []int{0, 12, 26, 40, 54, 68, 80},
			[]int64{264174829568, 267314397184, 267314397184, 267314397184, 267314397184, 264174862336}, nil},
		{"70B regmean 5x160GiB", r70, workersOf(5, 160*giB), []int{0, 16, 32, 48, 64, 80},
			[]int64{149343174656, 145140482048, 145140482048, 145140482048, 149343207424}, nil},
	}
	for _, tc := range tests {
		e := mustEstimator(t, tc.in)
		shards, notes, err := e.Cut(tc.workers)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := bounds(shards); !reflect.DeepEqual(got, tc.bounds) {
			t.Errorf("%s: cut %v, want %v (peaks %v, notes %q)", tc.name, got, tc.bounds, peaks(shards), notes)
			continue
		}
		if tc.peaks != nil && !reflect.DeepEqual(peaks(shards), tc.peaks) {
			t.Errorf("%s: peaks %v, want %v", tc.name, peaks(shards), tc.peaks)
		}
		for i, s := range shards {
			wi := i
			if tc.workerI != nil {
				wi = tc.workerI[i]
			}
			fp, _ := e.Footprint(s.Lo, s.Hi)
			w, _ := e.Work(s.Lo, s.Hi)
			if s.Index != i || s.Worker != wi || s.Footprint.Peak > tc.workers[wi].Memory || s.Footprint.Peak != fp.Peak || s.Work != w {
				t.Errorf("%s: shard %+v (worker %d with %d bytes; footprint %d, work %d)", tc.name, s, wi, tc.workers[wi].Memory, fp.Peak, w)
			}
		}
	}
}

func TestCutNotes(t *testing.T) {
	e := mustEstimator(t, tinyInput(jacobi(5, Full, true, 2)))
	_, notes, err := e.Cut(workersOf(6, 64*miB))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"6 workers for 4 layers: at most one shard per layer, so 2 workers are not used (w4, w5)"}; !reflect.DeepEqual(notes, want) {
		t.Errorf("notes %q, want %q", notes, want)
	}
	_, notes, err = mustEstimator(t, llamaInput(llama8B, jacobi(5, Full, true, 16))).Cut([]Worker{{"tiny", giB}, {"a", 96 * giB}, {"b", 96 * giB}})
	if err != nil || len(notes) != 1 || notes[0] != "not used: tiny (too small for any layer range where it stands in the order)" {
		t.Errorf("notes %q, %v", notes, err)
	}
	// Sites on layers 0 and 1 only: layers 2-3 do no merge work, so the busiest shard is a
	// layer with sites, and a shard past the last site only calibrates.
	in := tinyInput(sweep(Full, true, 2))
	in.Sites = in.Sites[:14]
	shards, notes, err := mustEstimator(t, in).Cut(workersOf(3, 64*miB))
	if err != nil {
		t.Fatal(err)
	}
	if got := bounds(shards); !reflect.DeepEqual(got, []int{0, 1, 2, 4}) {
		t.Errorf("cut %v, want [0 1 2 4]", got)
	}
	want := []string{"shard 2 (layers 2-3) holds no site: it takes part in calibration only",
		"the sweep runs the shards one after another: more shards add memory, not speed"}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("notes %q, want %q", notes, want)
	}
	if s := shards[2]; s.Work != 0 || s.Sites != 0 || partsMap(s.Footprint.Merge)[PartStreams] != 0 {
		t.Errorf("shard past the last site: %+v", s)
	}
}

func TestCutRefusals(t *testing.T) {
	j8 := llamaInput(llama8B, jacobi(5, Full, true, 16))
	s70 := llamaInput(llama70B, sweep(Full, true, 16))
	tests := []struct {
		name    string
		in      Input
		workers []Worker
		want    string
		fe      FitError
	}{
		{"8B on 48 GiB", j8, workersOf(1, 48*giB),
			"layer 31 needs 63.4 GiB, the largest worker has 48 GiB (grams 22.9 GiB, gram copies 22.9 GiB, solve 12.7 GiB)",
			FitError{Layer: 31, Needs: 68117118976, Largest: 48 * giB, Workers: 1}},
		{"8B on 3x72 GiB", j8, workersOf(3, 72*giB),
			"3 workers (largest 72 GiB) hold layers 0-30 only: layer 31 needs 63.4 GiB on a further worker (grams 22.9 GiB, gram copies 22.9 GiB, solve 12.7 GiB); with workers of 72 GiB the model needs at least 4",
			FitError{Layer: 31, Needs: 68117118976, Largest: 72 * giB, Workers: 3, Placed: 31, MinWorkers: 4}},
		{"70B on 128 GiB", s70, workersOf(2, 128*giB),
			"layer 79 needs 208.4 GiB, the largest worker has 128 GiB (grams 73.5 GiB, gram copies 73.5 GiB, solve 50.8 GiB)",
			FitError{Layer: 79, Needs: 223792431104, Largest: 128 * giB, Workers: 2}},
		{"70B on 4x256 GiB", s70, workersOf(4, 256*giB),
			"4 workers (largest 256 GiB) hold layers 0-61 only: layer 62 needs 204.5 GiB on a further worker (grams 73.5 GiB, gram copies 73.5 GiB, solve 50.8 GiB); with workers of 256 GiB the model needs at least 6",
			FitError{Layer: 62, Needs: 219589705728, Largest: 256 * giB, Workers: 4, Placed: 62, MinWorkers: 6}},
	}
	for _, tc := range tests {
		_, _, err := mustEstimator(t, tc.in).Cut(tc.workers)
		var fe *FitError
		if !errors.As(err, &fe) || !errors.Is(err, ErrNoFit) {
			t.Errorf("%s: error %v, want a *FitError", tc.name, err)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%s:\n got  %s\n want %s", tc.name, err, tc.want)
		}
		fe.Usage = Usage{}
		if !reflect.DeepEqual(*fe, tc.fe) {
			t.Errorf("%s: %+v, want %+v", tc.name, *fe, tc.fe)
		}
	}
	// Bad worker lists.
	e := mustEstimator(t, tinyInput(regmean(2)))
	for _, ws := range [][]Worker{nil, {{"", 1}}, {{"a", 0}}, {{"a", 1 << 30}, {"a", 1 << 30}}, {{"a", Unbounded}}, workersOf(MaxWorkers+1, giB)} {
		if _, _, err := e.Cut(ws); !errors.Is(err, ErrInput) {
			t.Errorf("workers %v: error %v, want ErrInput", len(ws), err)
		}
	}
}

// The cut of the largest accepted problem stays fast (one table and two O(workers·layers²)
// passes); a benchmark measures it.
func BenchmarkCut70B(b *testing.B) {
	in := llamaInput(llama70B, sweep(Full, true, 16))
	e, err := NewEstimator(in)
	if err != nil {
		b.Fatal(err)
	}
	ws := workersOf(80, 1024*giB)
	for b.Loop() {
		if _, _, err := e.Cut(ws); err != nil {
			b.Fatal(err)
		}
	}
}

// The largest problem the bounds admit: MaxLayers layers on MaxWorkers workers (0.4 s here).
func BenchmarkCutLargest(b *testing.B) {
	m := llama8B
	m.Layers = MaxLayers
	in := llamaInput(m, jacobi(5, Full, true, 16))
	in.Sites = sitesOf(m, []int{16, 16, 16, 16}, "mlp.down_proj")
	e, err := NewEstimator(in)
	if err != nil {
		b.Fatal(err)
	}
	ws := workersOf(MaxWorkers, 1<<40)
	for b.Loop() {
		if _, _, err := e.Cut(ws); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleFitError() {
	in := llamaInput(llama8B, jacobi(5, Full, true, 16))
	_, err := Build(in, workersOf(1, 48*giB))
	fmt.Println(strings.SplitN(err.Error(), " (", 2)[0])
	// Output: layer 31 needs 63.4 GiB, the largest worker has 48 GiB
}
