//go:build unix

package model_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

// The layer backward benchmarks time one distillation step's model work for one task: layer 0's
// forward pass with its tape (ForwardLayer) and the backward pass to the LoRA factors of its seven
// sites (LayerTape.Backward), every site carrying a rank-32 LoRA of scale 1, on 1024 rows of
// equal-length sequences. Two blocks: tiny-skills' layer 0 (hidden 128, MLP 344, 4 heads, 2 key/value
// heads of 32; 64 sequences of 16 tokens, the size of one task's calibration set) and layer 0 of
// the 155.7M benchmark model (hidden 1024, MLP 2816, 16 heads, 4 key/value heads of 64; 8
// sequences of 128 tokens). Sub-benchmarks "fwd" time ForwardLayer alone and "fwd+bwd" both.
// bench/backward.sh runs them next to bench/backward_torch.py, which times PyTorch's autograd on
// the same blocks and checks its gradients against the ones written here (backward_case.safetensors
// in each case directory under ITERIS_BENCH_BACKWARD_DIR).

// backwardRank is the LoRA rank of every site in the backward benchmarks (the output rank of
// merge4).
const backwardRank = 32

// specBlock1024 is one layer of spec100M (same per-tensor seeds, so the same layer-0 weights) with
// a small vocabulary.
var specBlock1024 = synthSpec{Hidden: 1024, Layers: 1, Intermediate: 2816, Heads: 16, KVHeads: 4, HeadDim: 64, Vocab: 1000, Seed: 1, Std: 0.02}

// backwardCase is one benchmarked block with its LoRAs, input and output gradient.
type backwardCase struct {
	name     string
	modelDir string
	m        *model.Model // with the LoRAs
	loras    map[string][]model.LoRA
	seqs     [][]int
	st       *model.State
	dOut     []float32
}

// benchBackwardDir is where the cases are written: ITERIS_BENCH_BACKWARD_DIR, or a directory under
// os.TempDir.
func benchBackwardDir() string {
	if d := os.Getenv("ITERIS_BENCH_BACKWARD_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "iteris-bench-backward")
}

func newBackwardCase(b *testing.B, name, modelDir string, nseq, seqLen int, seed uint64) *backwardCase {
	b.Helper()
	base := loadBenchModel(b, modelDir)
	rng := rand.New(rand.NewPCG(seed, 0xbac))
	c := &backwardCase{name: name, modelDir: modelDir, loras: map[string][]model.LoRA{}}
	for _, l := range base.Layers[0].Linears() {
		u := model.LoRA{R: backwardRank, A: make([]float32, backwardRank*l.In), B: make([]float32, l.Out*backwardRank), Scale: 1}
		for _, x := range [][]float32{u.A, u.B} {
			for i := range x {
				x[i] = float32(0.02 * rng.NormFloat64())
			}
		}
		c.loras[l.Name] = []model.LoRA{u}
	}
	var err error
	if c.m, err = base.WithLoRA(c.loras, false); err != nil {
		b.Fatal(err)
	}
	c.seqs = randomSeqs(nseq, []int{seqLen}, base.Config.Vocab, seed)
	if c.st, err = c.m.Start(c.seqs); err != nil {
		b.Fatal(err)
	}
	c.dOut = make([]float32, len(c.st.H))
	for i := range c.dOut {
		c.dOut[i] = float32(rng.NormFloat64() / float64(len(c.dOut)))
	}
	return c
}

// BenchmarkLayerBackward times ForwardLayer ("fwd") and ForwardLayer + Backward ("fwd+bwd") on
// each case and BLAS setup; see the comment at the top of this file.
func BenchmarkLayerBackward(b *testing.B) {
	root := benchBackwardDir()
	blockDir := filepath.Join(root, "block1024")
	if _, err := writeSynth(blockDir, specBlock1024); err != nil {
		b.Fatal(err)
	}
	cases := []*backwardCase{
		newBackwardCase(b, "tiny", filepath.Join(fixture, "model"), 64, 16, 1),
		newBackwardCase(b, "block1024", blockDir, 8, 128, 2),
	}
	for _, c := range cases {
		if err := writeBackwardCase(b, filepath.Join(root, c.name), c); err != nil {
			b.Fatal(err)
		}
		for _, s := range blasSetups {
			for _, withBackward := range []bool{false, true} {
				what := "fwd"
				if withBackward {
					what = "fwd+bwd"
				}
				b.Run(c.name+"/"+what+"/"+s.name, func(b *testing.B) {
					useBLAS(b, s)
					benchLayerStep(b, c, withBackward)
				})
			}
		}
	}
}

// benchLayerStep times one forward (and backward) pass of layer 0 after an untimed warm-up,
// reporting tok/s (rows of the batch per second over the timed wall time), med-ms/op and
// cpu-s/op.
func benchLayerStep(b *testing.B, c *backwardCase, withBackward bool) {
	b.Helper()
	step := func() {
		tp, err := c.m.ForwardLayer(0, c.st)
		if err != nil {
			b.Fatal(err)
		}
		if withBackward {
			if _, err := tp.Backward(c.dOut); err != nil {
				b.Fatal(err)
			}
		}
	}
	step()
	var times []time.Duration
	cpu0 := cpuTime(b)
	pprof.Do(context.Background(), pprof.Labels("bench", b.Name()), func(context.Context) {
		for b.Loop() {
			t0 := time.Now()
			step()
			times = append(times, time.Since(t0))
		}
	})
	cpu := cpuTime(b) - cpu0
	slices.Sort(times)
	b.ReportMetric(float64(c.st.Rows*b.N)/b.Elapsed().Seconds(), "tok/s")
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1e3, "med-ms/op")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// writeBackwardCase writes dir/backward_case.safetensors for bench/backward_torch.py: the input
// rows "x" (rows x hidden), the output gradient "dout", every site's "<module>.lora_A" and
// "<module>.lora_B", and Go's gradients "<module>.grad_A.<backend>" / "grad_B.<backend>" for each
// available BLAS backend; metadata: "model_dir" (absolute), "seqs" (number of sequences) and
// "seq_len".
func writeBackwardCase(b *testing.B, dir string, c *backwardCase) error {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hidden := c.m.Config.Hidden
	tensors := []safetensors.Tensor{
		{Name: "x", DType: safetensors.F32, Shape: []int{c.st.Rows, hidden}, Data: c.st.H},
		{Name: "dout", DType: safetensors.F32, Shape: []int{c.st.Rows, hidden}, Data: c.dOut},
	}
	lins := c.m.Layers[0].Linears()
	for _, l := range lins {
		u := c.loras[l.Name][0]
		tensors = append(tensors,
			safetensors.Tensor{Name: l.Name + ".lora_A", DType: safetensors.F32, Shape: []int{u.R, l.In}, Data: u.A},
			safetensors.Tensor{Name: l.Name + ".lora_B", DType: safetensors.F32, Shape: []int{l.Out, u.R}, Data: u.B})
	}
	for _, mode := range []string{linalg.ModeGonum, linalg.ModeOpenBLAS} {
		be, err := linalg.Init(mode)
		if err != nil || be.Name() != mode {
			continue
		}
		tp, err := c.m.ForwardLayer(0, c.st)
		if err != nil {
			return err
		}
		g, err := tp.Backward(c.dOut)
		if err != nil {
			return err
		}
		for i, l := range lins {
			u := c.loras[l.Name][0]
			tensors = append(tensors,
				safetensors.Tensor{Name: l.Name + ".grad_A." + mode, DType: safetensors.F32, Shape: []int{u.R, l.In}, Data: g[i][0].A},
				safetensors.Tensor{Name: l.Name + ".grad_B." + mode, DType: safetensors.F32, Shape: []int{l.Out, u.R}, Data: g[i][0].B})
		}
	}
	if _, err := linalg.Init(linalg.ModeGonum); err != nil {
		return err
	}
	abs, err := filepath.Abs(c.modelDir)
	if err != nil {
		return err
	}
	seqs, err := json.Marshal(len(c.seqs))
	if err != nil {
		return err
	}
	meta := map[string]string{"model_dir": abs, "seqs": string(seqs), "seq_len": fmt.Sprint(len(c.seqs[0]))}
	path := filepath.Join(dir, "backward_case.safetensors")
	if err := safetensors.WriteFile(path, tensors, meta); err != nil {
		return fmt.Errorf("backward case: %w", err)
	}
	b.Logf("wrote %s (%d rows)", path, c.st.Rows)
	return nil
}
