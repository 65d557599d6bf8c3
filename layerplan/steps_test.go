package layerplan

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// stageGrid returns stage[k-1][s] of the merge steps.
func stageGrid(steps []Step, solves, shards int) [][]int {
	g := make([][]int, solves)
	for k := range g {
		g[k] = repeat(-1, shards)
	}
	for _, s := range steps {
		if s.Kind == StepJacobi || s.Kind == StepSweep {
			g[s.Solve-1][s.Shard] = s.Stage
		}
	}
	return g
}

func buildPlan(t *testing.T, in Input, ws []Worker) *Plan {
	t.Helper()
	p, err := Build(in, ws)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Jacobi is a wavefront: step (k, s) runs at stage 1 + (k-1) + s after calibration and depends
// on (k, s-1) and (k-1, s). tiny-skills, 3 solves on 4 shards.
func TestJacobiWavefront(t *testing.T) {
	p := buildPlan(t, tinyInput(jacobi(3, Full, true, 2)), workersOf(4, 64*miB))
	if len(p.Steps) != 4+12 || p.Stages != 7 {
		t.Fatalf("%d steps in %d stages, want 16 in 7 (calibration + K+S-1 = 6)", len(p.Steps), p.Stages)
	}
	want := [][]int{{1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 6}}
	if got := stageGrid(p.Steps, 3, 4); !reflect.DeepEqual(got, want) {
		t.Errorf("stages %v, want %v", got, want)
	}
	at := map[[2]int]int{}
	for i, s := range p.Steps {
		if i > 0 && (s.Stage < p.Steps[i-1].Stage || (s.Stage == p.Steps[i-1].Stage && s.Shard <= p.Steps[i-1].Shard)) {
			t.Errorf("step %d (%s, stage %d) is out of stage/shard order", i, s.Name(), s.Stage)
		}
		if s.Kind == StepJacobi {
			at[[2]int{s.Solve, s.Shard}] = i
		}
	}
	// Bytes, by hand: rows 176·128·4 = 90112 per stream; factors of one layer 32·2312·8 =
	// 591872; calibration ring Σ(len-1) = 4·40 rows = 160·128·4 = 81920, 96 new token ids back
	// (384 bytes), the sequences artifact 176·4 = 704.
	for k := 1; k <= 3; k++ {
		for s := 0; s < 4; s++ {
			st := p.Steps[at[[2]int{k, s}]]
			var deps []int
			switch {
			case s > 0:
				deps = append(deps, at[[2]int{k, s - 1}])
			case k == 1:
				deps = []int{0, 1, 2, 3}
			}
			if k > 1 {
				deps = append(deps, at[[2]int{k - 1, s}])
			}
			if !reflect.DeepEqual(st.After, deps) {
				t.Errorf("%s depends on %v, want %v", st.Name(), st.After, deps)
			}
			var sends []Transfer
			if s < 3 {
				stream := StreamMerged
				if k == 1 {
					stream = StreamTask
				}
				sends = append(sends, Transfer{Artifact: ArtifactRows, Stream: stream, To: s + 1, Bytes: 90112})
			}
			sends = append(sends, Transfer{Artifact: ArtifactFactors, To: Coordinator, Bytes: 591872})
			if !reflect.DeepEqual(st.Sends, sends) || st.Bytes != int64(len(sends)-1)*90112+591872 {
				t.Errorf("%s sends %+v (%d bytes), want %+v", st.Name(), st.Sends, st.Bytes, sends)
			}
		}
	}
	calib := []Step{
		{Kind: StepCalibrate, Shard: 0, Sends: []Transfer{{Artifact: ArtifactRing, To: 1, Bytes: 81920}}, Bytes: 81920},
		{Kind: StepCalibrate, Shard: 1, Sends: []Transfer{{Artifact: ArtifactRing, To: 2, Bytes: 81920}}, Bytes: 81920},
		{Kind: StepCalibrate, Shard: 2, Sends: []Transfer{{Artifact: ArtifactRing, To: 3, Bytes: 81920}}, Bytes: 81920},
		{Kind: StepCalibrate, Shard: 3, Sends: []Transfer{{Artifact: ArtifactRing, To: 0, Bytes: 384},
			{Artifact: ArtifactSequences, To: Coordinator, Bytes: 704}}, Bytes: 1088},
	}
	if !reflect.DeepEqual(p.Steps[:4], calib) {
		t.Errorf("calibration steps %+v, want %+v", p.Steps[:4], calib)
	}
	if want := int64(3*81920 + 1088 + 9*90112 + 12*591872); p.BytesMoved != want {
		t.Errorf("bytes moved %d, want %d", p.BytesMoved, want)
	}
}

// Llama-3-8B, 5 jacobi solves on 4 shards with the sequences given as token ids (no
// calibration): 5 + 4 - 1 = 8 stages, 20 steps; rows 8192·4096·4 = 134217728 per send; each
// shard's factors 8 layers·64·81920·8 = 335544320.
func TestLlamaSteps(t *testing.T) {
	in := llamaInput(llama8B, jacobi(5, Full, true, 16))
	for i := range in.Tasks {
		in.Tasks[i].Completions = nil
	}
	p := buildPlan(t, in, workersOf(4, 72*giB))
	if len(p.Steps) != 20 || p.Stages != 8 {
		t.Fatalf("%d steps in %d stages, want 20 in 8", len(p.Steps), p.Stages)
	}
	want := [][]int{{0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 6}, {4, 5, 6, 7}}
	if got := stageGrid(p.Steps, 5, 4); !reflect.DeepEqual(got, want) {
		t.Errorf("stages %v, want %v", got, want)
	}
	if want := int64(15*134217728 + 20*335544320); p.BytesMoved != want {
		t.Errorf("bytes moved %d, want %d", p.BytesMoved, want)
	}
	// The sweep: one step per shard in order, both streams to the next shard.
	in.Merge = sweep(Full, true, 16)
	p = buildPlan(t, in, workersOf(4, 72*giB))
	if len(p.Steps) != 4 || p.Stages != 4 {
		t.Fatalf("sweep: %d steps in %d stages, want 4 in 4", len(p.Steps), p.Stages)
	}
	for s, st := range p.Steps {
		var after []int
		if s > 0 {
			after = []int{s - 1}
		}
		if st.Kind != StepSweep || st.Solve != 1 || st.Shard != s || st.Stage != s || !reflect.DeepEqual(st.After, after) {
			t.Errorf("sweep step %d: %+v", s, st)
		}
		if want := int64(2*134217728 + 335544320); s < 3 && st.Bytes != want {
			t.Errorf("sweep step %d moves %d bytes, want %d", s, st.Bytes, want)
		}
	}
	if last := p.Steps[3]; len(last.Sends) != 1 || last.Sends[0].Artifact != ArtifactFactors {
		t.Errorf("last sweep step sends %+v, want the factors only", last.Sends)
	}
}

// Weight-only merges: one step per shard with sites, all in stage 0, factors only (rank max: 8).
func TestWeightOnlySteps(t *testing.T) {
	in := tinyInput(Merge{Method: WeightOnly, Rank: RankMax})
	in.Tasks = tasksOf(4, nil, nil)
	p := buildPlan(t, in, workersOf(2, 64*miB))
	want := []Step{
		{Kind: StepWeightOnly, Shard: 0, Sends: []Transfer{{Artifact: ArtifactFactors, To: Coordinator, Bytes: 2 * 8 * 2312 * 8}}, Bytes: 2 * 8 * 2312 * 8},
		{Kind: StepWeightOnly, Shard: 1, Sends: []Transfer{{Artifact: ArtifactFactors, To: Coordinator, Bytes: 2 * 8 * 2312 * 8}}, Bytes: 2 * 8 * 2312 * 8},
	}
	if !reflect.DeepEqual(p.Steps, want) || p.Stages != 1 {
		t.Errorf("steps %+v (%d stages), want %+v", p.Steps, p.Stages, want)
	}
}

// Shards after the last site's layer run no merge step, and the last merge shard sends no rows.
func TestStepsStopAtLastSite(t *testing.T) {
	in := tinyInput(jacobi(2, Delta, false, 2))
	in.Sites = in.Sites[:14] // layers 0 and 1
	p := buildPlan(t, in, workersOf(4, 64*miB))
	var merge []string
	for _, s := range p.Steps {
		if s.Kind == StepJacobi {
			merge = append(merge, s.Name())
			if s.Shard == 1 && len(s.Sends) != 1 {
				t.Errorf("%s sends %+v, want only its factors", s.Name(), s.Sends)
			}
		}
	}
	want := []string{"jacobi k=1 shard 0", "jacobi k=2 shard 0", "jacobi k=1 shard 1", "jacobi k=2 shard 1"} // by stage
	if !reflect.DeepEqual(merge, want) {
		t.Errorf("merge steps %v, want %v", merge, want)
	}
}

func TestStepsLimit(t *testing.T) {
	m := llama8B
	m.Layers = 80
	in := llamaInput(m, jacobi(MaxSolves, Delta, false, 16))
	in.Sites = sitesOf(m, []int{1, 1, 1, 1}, "self_attn.q_proj")
	_, err := Build(in, workersOf(80, 1<<40))
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "80 shards and 1000 solves make 80080 steps") {
		t.Errorf("80 shards x 1000 solves (and calibration): %v", err)
	}
}
