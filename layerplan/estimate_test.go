package layerplan

import (
	"fmt"
	"reflect"
	"testing"
)

func TestLevels(t *testing.T) {
	e := mustEstimator(t, tinyInput(jacobi(5, Full, true, 2)))
	lv := e.Levels()
	if len(lv) != 16 {
		t.Fatalf("%d levels, want 16 (4 layers x 4 points)", len(lv))
	}
	for i, l := range lv {
		if l.Layer != i/4 || l.Point != Point(i%4) {
			t.Errorf("level %d is layers.%d.%s, want layers.%d.%s", i, l.Layer, l.Point, i/4, Point(i%4))
		}
	}
	if want := []string{"model.layers.2.self_attn.k_proj", "model.layers.2.self_attn.q_proj", "model.layers.2.self_attn.v_proj"}; !reflect.DeepEqual(lv[8].Sites, want) {
		t.Errorf("layers.2.attn_in sites %v, want %v", lv[8].Sites, want)
	}

	// Only points that carry sites count; sites given in any order.
	in := tinyInput(sweep(Delta, false, 2))
	in.Sites = []Site{
		{Name: "model.layers.3.self_attn.v_proj", In: 128, Out: 64, Ranks: []int{8, 0, 8, 8}},
		{Name: "model.layers.0.mlp.down_proj", In: 344, Out: 128, Ranks: []int{8, 8, 8, 8}},
		{Name: "model.layers.1.self_attn.q_proj", In: 128, Out: 128, Ranks: []int{8, 8, 8, 8}},
		{Name: "model.layers.3.self_attn.q_proj", In: 128, Out: 128, Ranks: []int{8, 8, 0, 8}},
	}
	got := mustEstimator(t, in).Levels()
	want := []Level{
		{Layer: 0, Point: DownIn, Sites: []string{"model.layers.0.mlp.down_proj"}},
		{Layer: 1, Point: AttnIn, Sites: []string{"model.layers.1.self_attn.q_proj"}},
		{Layer: 3, Point: AttnIn, Sites: []string{"model.layers.3.self_attn.q_proj", "model.layers.3.self_attn.v_proj"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("levels %+v, want %+v", got, want)
	}
}

// The tiny-skills footprints, every part written out. Per layer (h 128, I 344, qw 128, kw 64):
// weights 4·(2·128·128 + 2·64·128 + 3·344·128 + 2·128) = 726016; Σ(m+n) over the 7 modules is
// 2312, so lora = 4 tasks·8·2312·4 = 295936 and lora_f64 = 591872; merged (k = 32, jacobi K=5:
// two float64 copies and a float32 one) 32·2312·20 = 1479680. N = 4·44 = 176 rows, B = 22 (two
// sequences of 12+10 and 14+8), Lmax 14: streams 176·(128+32)·4 = 112640 per copy, transfer
// 176·128·4 = 90112; grams 4·3·8·(3·128² + 344²) = 16078848; gram buffers 4·8·(3·128+344)·22·2
// = 1025024 (and as much again for the dense copies the solves read); features 22·728·4 = 64064; layer work 22·2·(128+128+64+344)·4 = 116864; scores
// 4·14²·4 = 3136; solve (down_proj, full + adaptive) 6·344²·8 + 8·128·344·8 = 8498176.
// Calibration: G = 22, P = 10, 2 sequences per batch, longest prompt 8: kv 2·64·4·22 = 11264 per
// layer, logits 2·(259+128)·4 = 3096, layer work 10·1328·4 = 53120, scores 4·max(64, 14)·4 = 1024.
func TestFootprintTiny(t *testing.T) {
	e := mustEstimator(t, tinyInput(jacobi(5, Full, true, 2)))
	common := func(layers int64) map[PartName]int64 {
		return map[PartName]int64{PartLayerWeights: 726016 * layers, PartLoRA: 295936 * layers, PartLoRAFloat64: 591872 * layers,
			PartMerged: 1479680 * layers, PartGrams: 16078848, PartGramCopies: 16078848, PartGramBuffers: 1025024, PartFeatures: 64064,
			PartLayerWork: 116864, PartScores: 3136, PartSolve: 8498176}
	}
	calib := func(layers int64) map[PartName]int64 {
		return map[PartName]int64{PartLayerWeights: 726016 * layers, PartLoRA: 295936 * layers, PartKVCache: 11264 * layers,
			PartLayerWork: 53120, PartScores: 1024}
	}
	with := func(m map[PartName]int64, kv ...any) map[PartName]int64 {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(PartName)] = int64(kv[i+1].(int))
		}
		return m
	}
	tests := []struct {
		lo, hi     int
		merge, cal map[PartName]int64
		peak       int64
	}{
		{0, 4, with(common(4), PartEmbeddings, 132608, PartHead, 133120, PartStreams, 225280),
			with(calib(4), PartEmbeddings, 132608, PartHead, 133120, PartLogits, 3096), 54729984},
		{0, 2, with(common(2), PartEmbeddings, 132608, PartStreams, 225280, PartTransfer, 90112),
			with(calib(2), PartEmbeddings, 132608), 48499968},
		{2, 4, with(common(2), PartHead, 133120, PartStreams, 337920, PartTransfer, 90112),
			with(calib(2), PartHead, 133120, PartLogits, 3096), 48613120},
		{1, 3, with(common(2), PartStreams, 337920, PartTransfer, 90112), calib(2), 48480000},
		{3, 4, with(common(1), PartHead, 133120, PartStreams, 337920, PartTransfer, 90112),
			with(calib(1), PartHead, 133120, PartLogits, 3096), 45519616},
	}
	for _, tc := range tests {
		fp, err := e.Footprint(tc.lo, tc.hi)
		if err != nil {
			t.Fatal(err)
		}
		what := func(phase string) string { return fmt.Sprintf("%s [%d, %d)", phase, tc.lo, tc.hi) }
		checkUsage(t, what("merge"), fp.Merge, tc.merge)
		if fp.Calibrate == nil {
			t.Fatalf("%s: no calibration phase", what("calibrate"))
		}
		checkUsage(t, what("calibrate"), *fp.Calibrate, tc.cal)
		if fp.Peak != tc.peak || fp.Peak != fp.Merge.Total {
			t.Errorf("%s: peak %d, want %d (the merge phase's)", what("footprint"), fp.Peak, tc.peak)
		}
	}
	if sp := e.SingleProcess(); sp.Peak != 54729984 {
		t.Errorf("single process %d, want the [0, 4) footprint 54729984", sp.Peak)
	}
	for _, r := range [][2]int{{-1, 2}, {2, 2}, {3, 5}} {
		if _, err := e.Footprint(r[0], r[1]); err == nil {
			t.Errorf("Footprint(%d, %d) accepted", r[0], r[1])
		}
	}
}

// The schedules change the streams, Grams, features and merged factors (tiny-skills, one shard).
func TestFootprintSchedules(t *testing.T) {
	tests := []struct {
		name string
		g    Merge
		want map[PartName]int64
	}{
		// RegMean: G only (4·8·167488 = 5359616), its buffers unpaired (4·8·728·22 = 512512), the
		// task streams only, one float64 copy of the merged factors, solve 3·344²·8.
		{"regmean", regmean(2), map[PartName]int64{PartStreams: 112640, PartGrams: 5359616, PartGramBuffers: 512512,
			PartMerged: 32 * 2312 * 8 * 4, PartSolve: 3 * 344 * 344 * 8}},
		// Sweep: one level's Grams (down_in: 4·3·8·344² = 11360256), its buffers (4·8·344·22·2),
		// a whole layer's task features (176·728·4), float64 + float32 merged factors; delta
		// without adaptive weights solves in 3n².
		{"sweep delta", sweep(Delta, false, 2), map[PartName]int64{PartStreams: 225280, PartGrams: 11360256, PartGramBuffers: 484352,
			PartFeatures: 512512, PartMerged: 32 * 2312 * 12 * 4, PartSolve: 3 * 344 * 344 * 8}},
		// Jacobi with 2 solves, delta + adaptive: W0 and W0ᵀW0 join the solve (4·344²·8 + 128·344·8).
		{"jacobi 2 delta adaptive", jacobi(2, Delta, true, 2), map[PartName]int64{PartStreams: 225280, PartGrams: 16078848,
			PartGramBuffers: 1025024, PartFeatures: 64064, PartMerged: 1479680 * 4, PartSolve: 4*344*344*8 + 128*344*8}},
	}
	for _, tc := range tests {
		fp := mustEstimator(t, tinyInput(tc.g)).SingleProcess()
		got := partsMap(fp.Merge)
		for name, b := range tc.want {
			if got[name] != b {
				t.Errorf("%s: %s = %d, want %d", tc.name, name, got[name], b)
			}
		}
		if tc.g.Schedule == Jacobi && tc.g.Solves == 1 && got[PartFeatures] != 0 {
			t.Errorf("%s: features %d, want none (G is accumulated from the rows directly)", tc.name, got[PartFeatures])
		}
	}
}

// The residual objective with refinement against the full objective's sweep (tiny-skills, one
// shard, batches of 2: B = 22 rows, N = 176): the sweep's largest level, down_in, holds the drift
// cross terms besides its Grams (4·3·8·344² + 4·128·344·8 = 11360256 + 1409024); the task
// residuals h^l and h^{l,mid} join the features (2·176·128·4 = 180224); the refinement holds one
// batch's tape, 22·(7·128 + 4·128 + 4·64 + 6·344)·4 = 328064, and six float64 copies of a
// layer's rank-32 factors, 6·32·2312·8 = 3551232. Every other part is the full objective's.
func TestFootprintResidual(t *testing.T) {
	full := partsMap(mustEstimator(t, tinyInput(sweep(Full, true, 2))).SingleProcess().Merge)
	g := sweep(Residual, true, 2)
	g.RefineSteps = 30
	got := partsMap(mustEstimator(t, tinyInput(g)).SingleProcess().Merge)
	want := map[PartName]int64{}
	for k, v := range full {
		want[k] = v
	}
	want[PartGrams] = 11360256 + 1409024
	want[PartGramCopies] = want[PartGrams]
	want[PartFeatures] = full[PartFeatures] + 180224
	want[PartRefine] = 328064 + 3551232
	if full[PartFeatures] != 512512 || full[PartRefine] != 0 {
		t.Fatalf("full sweep: features %d, refine %d; want 512512 and none", full[PartFeatures], full[PartRefine])
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("residual + refine parts\n got  %v\n want %v", got, want)
	}
	// The refinement's work: 30 steps of about three forward passes of the layer per step.
	e0, e1 := mustEstimator(t, tinyInput(sweep(Residual, true, 2))), mustEstimator(t, tinyInput(g))
	if d, fwd := e1.layers[0].work-e0.layers[0].work, e0.forward(NumPoints); d != 30*3*fwd {
		t.Errorf("refinement work %d, want 90 forward passes of %d", d, fwd)
	}
}

// Llama-3-8B and -70B, every part of one shard checked against the formulas by hand:
// 8B per layer 4·(2·4096² + 2·1024·4096 + 3·14336·4096 + 2·4096) = 872448000 bytes.
func TestFootprintLlama(t *testing.T) {
	tests := []struct {
		name   string
		in     Input
		lo, hi int
		merge  map[PartName]int64
		cal    map[PartName]int64
	}{
		// 8B, jacobi 5 solves, full + adaptive, layers [0, 8): N = 4·16·128 = 8192 rows,
		// B = 16·128 = 2048. Grams 4·3·8·(3·4096² + 14336²) = 24561844224; buffers
		// 4·2·8·(3·4096·1024 + 14336·292) (chunk(14336) = 292); solve at down_proj
		// 6·14336²·8 + 8·4096·14336·8 = 13623099392.
		{"8B jacobi", llamaInput(llama8B, jacobi(5, Full, true, 16)), 0, 8,
			map[PartName]int64{PartLayerWeights: 6979584000, PartEmbeddings: 2101346304, PartLoRA: 167772160, PartLoRAFloat64: 335544320,
				PartMerged: 838860800, PartStreams: 276824064, PartTransfer: 134217728, PartGrams: 24561844224, PartGramCopies: 24561844224, PartGramBuffers: 1073217536,
				PartFeatures: 218103808, PartLayerWork: 385875968, PartScores: 2097152, PartSolve: 13623099392},
			map[PartName]int64{PartLayerWeights: 6979584000, PartEmbeddings: 2101346304, PartLoRA: 167772160, PartKVCache: 134217728,
				PartLayerWork: 192937984, PartScores: 524288}},
		// 8B, RegMean, the whole model on one shard.
		{"8B regmean", llamaInput(llama8B, regmean(16)), 0, 32,
			map[PartName]int64{PartLayerWeights: 27918336000, PartEmbeddings: 2101346304, PartHead: 2101362688, PartLoRA: 671088640,
				PartLoRAFloat64: 1342177280, PartMerged: 1342177280, PartStreams: 138412032, PartGrams: 8187281408, PartGramCopies: 8187281408,
				PartGramBuffers: 536608768, PartLayerWork: 385875968, PartScores: 2097152, PartSolve: 4932501504},
			map[PartName]int64{PartLayerWeights: 27918336000, PartEmbeddings: 2101346304, PartHead: 2101362688, PartLoRA: 671088640,
				PartKVCache: 536870912, PartLogits: 8470528, PartLayerWork: 192937984, PartScores: 524288}},
		// 70B, sweep, full + adaptive, layers [10, 20): one level's Grams at down_proj
		// 4·3·8·28672² = 78920024064; solve 6·28672²·8 + 8·8192·28672·8 = 54492397568;
		// kv cache 10·2·1024·4·2048 = 167772160.
		{"70B sweep", llamaInput(llama70B, sweep(Full, true, 16)), 10, 20,
			map[PartName]int64{PartLayerWeights: 34226176000, PartLoRA: 414187520, PartLoRAFloat64: 828375040, PartMerged: 1242562560,
				PartStreams: 545259520, PartTransfer: 268435456, PartGrams: 78920024064, PartGramCopies: 78920024064, PartGramBuffers: 268435456,
				PartFeatures: 1744830464, PartLayerWork: 754974720, PartScores: 4194304, PartSolve: 54492397568},
			map[PartName]int64{PartLayerWeights: 34226176000, PartLoRA: 414187520, PartKVCache: 167772160,
				PartLayerWork: 377487360, PartScores: 1048576}},
	}
	for _, tc := range tests {
		fp, err := mustEstimator(t, tc.in).Footprint(tc.lo, tc.hi)
		if err != nil {
			t.Fatal(err)
		}
		checkUsage(t, tc.name+" merge", fp.Merge, tc.merge)
		checkUsage(t, tc.name+" calibrate", *fp.Calibrate, tc.cal)
		if fp.Peak != fp.Merge.Total {
			t.Errorf("%s: peak %d is not the merge phase's %d", tc.name, fp.Peak, fp.Merge.Total)
		}
	}
}

// Output ranks: auto sums the present ranks, full is min(m, n) except for the delta objective,
// max takes the largest, and a task lacking the module has a rank-1 float64 placeholder.
func TestRanksAndPlaceholders(t *testing.T) {
	site := func(g Merge) Input {
		in := tinyInput(g)
		in.Sites = []Site{{Name: "model.layers.1.mlp.down_proj", In: 344, Out: 128, Ranks: []int{8, 0, 4, 16}}}
		return in
	}
	const mn = 344 + 128
	tests := []struct {
		name         string
		g            Merge
		merged, lf64 int64
	}{
		{"auto", regmean(2), 28 * mn * 8, (8 + 1 + 4 + 16) * mn * 8},
		{"full delta", func() Merge { g := regmean(2); g.Rank = RankFull; return g }(), 28 * mn * 8, 29 * mn * 8},
		{"full full", func() Merge { g := jacobi(1, Full, false, 2); g.Rank = RankFull; return g }(), 128 * mn * 8, 29 * mn * 8},
		{"max", func() Merge { g := regmean(2); g.Rank = RankMax; return g }(), 16 * mn * 8, 29 * mn * 8},
		{"k=5", func() Merge { g := regmean(2); g.Rank = 5; return g }(), 5 * mn * 8, 29 * mn * 8},
	}
	for _, tc := range tests {
		fp, err := mustEstimator(t, site(tc.g)).Footprint(1, 2)
		if err != nil {
			t.Fatal(err)
		}
		got := partsMap(fp.Merge)
		if got[PartMerged] != tc.merged || got[PartLoRAFloat64] != tc.lf64 || got[PartLoRA] != 28*mn*4 {
			t.Errorf("%s: merged %d lora_f64 %d lora %d, want %d %d %d", tc.name, got[PartMerged], got[PartLoRAFloat64], got[PartLoRA], tc.merged, tc.lf64, 28*mn*4)
		}
	}
}

// Weight-only merges hold no base weights and no streams: the factors and the largest site's
// working set only.
func TestFootprintWeightOnly(t *testing.T) {
	in := tinyInput(Merge{Method: WeightOnly, Rank: RankMax})
	in.Tasks = tasksOf(4, nil, nil)
	fp := mustEstimator(t, in).SingleProcess()
	// lora 4·295936; merged float32 at rank 8: 4 layers·8·2312·4; solve (gate_proj, 472 wide):
	// (32 + 16)·472·8 factor copies.
	checkUsage(t, "cat", fp.Merge, map[PartName]int64{PartLoRA: 1183744, PartMerged: 4 * 8 * 2312 * 4, PartSolve: 48 * 472 * 8})
	if fp.Calibrate != nil {
		t.Errorf("weight-only has a calibration phase: %+v", fp.Calibrate)
	}
	in.Merge.Dense = true
	fp = mustEstimator(t, in).SingleProcess()
	// down_proj (and gate/up: same mn = 44032): + (2·4 + 3)·44032·8.
	if got := partsMap(fp.Merge)[PartSolve]; got != 48*472*8+11*44032*8 {
		t.Errorf("dense solve %d, want %d", got, 48*472*8+11*44032*8)
	}
}

// Work of one step per layer, by hand (tiny-skills, N = 176 rows, Σ len² = 2016): a forward is
// 2·176·181248 + 4·2016·128 = 64831488; the Grams 4·176·(3·128² + 344²) = 117911552 with P and
// Q; the solves Σ n³/3 + 2n²·32 + 4mn² = 162471078 (full objective).
func TestWork(t *testing.T) {
	tests := []struct {
		name string
		g    Merge
		want int64
	}{
		{"jacobi 5 full", jacobi(5, Full, true, 2), 2*64831488 + 117911552 + 162471078},
		{"regmean", regmean(2), 125937830},
		{"sweep full", sweep(Full, true, 2), 490278054},
	}
	for _, tc := range tests {
		e := mustEstimator(t, tinyInput(tc.g))
		for l := 0; l < 4; l++ {
			if w, _ := e.Work(l, l+1); w != tc.want {
				t.Errorf("%s: layer %d work %d, want %d", tc.name, l, w, tc.want)
			}
		}
		if w, _ := e.Work(0, 4); w != 4*tc.want {
			t.Errorf("%s: work of the model %d, want %d", tc.name, w, 4*tc.want)
		}
	}
}
