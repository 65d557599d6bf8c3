//go:build unix

package model_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

// The forward benchmarks time Model.Forward with the logits of every token (what a PyTorch
// LlamaForCausalLM forward computes) on each configuration of blasSetups. They report tok/s
// (tokens of the batch times iterations over the timed wall time), med-tok/s (tokens over the
// median iteration) and cpu-s/op (user+system CPU seconds of the process per iteration, which
// stays meaningful when other processes compete for the cores). bench/forward.sh runs them next
// to bench/forward_torch.py, which reads the same generated model from ITERIS_BENCH_DIR and
// checks its logits against the go_logits.safetensors file BenchmarkForward100M writes there.

// Batches of the benchmarks.
var (
	// bench100MLens: 8 sequences of 128 tokens.
	bench100MLens = []int{128, 128, 128, 128, 128, 128, 128, 128}
	// checkLens: the packed batch of different lengths whose logits are dumped for the PyTorch
	// comparison.
	checkLens = []int{7, 33, 128}
	// benchTinyLens: 16 sequences of 12 to 20 tokens (256 tokens).
	benchTinyLens = []int{12, 20, 13, 19, 14, 18, 15, 17, 16, 16, 17, 15, 18, 14, 19, 13}
)

// checkLogitsFile is written into the benchmark model directory.
const checkLogitsFile = "go_logits.safetensors"

var (
	benchMu     sync.Mutex
	benchLoaded = map[string]*model.Model{}
)

// loadBenchModel loads dir once per test binary.
func loadBenchModel(b *testing.B, dir string) *model.Model {
	b.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if m, ok := benchLoaded[dir]; ok {
		return m
	}
	m, err := model.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	benchLoaded[dir] = m
	return m
}

// blasSetup is one BLAS configuration the forward benchmarks run on.
type blasSetup struct {
	name    string // sub-benchmark name
	mode    string // linalg.Init mode
	threads int    // OpenBLAS threads; 0 means GOMAXPROCS
}

// blasSetups: gonum's pure Go BLAS, OpenBLAS on GOMAXPROCS threads, and OpenBLAS on one thread
// (the Go engine still runs attention heads on GOMAXPROCS goroutines).
var blasSetups = []blasSetup{
	{"gonum", linalg.ModeGonum, 0},
	{"openblas", linalg.ModeOpenBLAS, 0},
	{"openblas_1thread", linalg.ModeOpenBLAS, 1},
}

// useBLAS installs s for the rest of b and restores gonum afterwards. It skips b when OpenBLAS is
// not installed, and fails it when ITERIS_BLAS overrides the requested mode.
func useBLAS(b *testing.B, s blasSetup) linalg.Backend {
	b.Helper()
	be, err := linalg.Init(s.mode)
	if err != nil {
		b.Skipf("backend %s unavailable: %v", s.mode, err)
	}
	b.Cleanup(func() {
		be.SetThreads(runtime.GOMAXPROCS(0))
		if _, err := linalg.Init(linalg.ModeGonum); err != nil {
			b.Errorf("restoring the gonum backend: %v", err)
		}
	})
	if be.Name() != s.mode {
		b.Fatalf("asked for BLAS backend %s, got %s (unset %s to compare backends)", s.mode, be.Name(), linalg.EnvBLAS)
	}
	threads := s.threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	be.SetThreads(threads)
	return be
}

// benchForward times Forward with all logits on seqs, after one untimed warm-up pass.
func benchForward(b *testing.B, m *model.Model, seqs [][]int) {
	b.Helper()
	tokens := 0
	for _, s := range seqs {
		tokens += len(s)
	}
	want := tokens * m.Config.Vocab
	forward := func() {
		out, err := m.Forward(seqs, model.ForwardOptions{Logits: true})
		if err != nil {
			b.Fatal(err)
		}
		if len(out.Logits) != want {
			b.Fatalf("Forward returned %d logits, want %d", len(out.Logits), want)
		}
	}
	forward()
	var times []time.Duration
	cpu0 := cpuTime(b)
	// The label marks the timed passes (and the goroutines they start) in a -cpuprofile with the
	// benchmark's name, so `go tool pprof -tagfocus=bench=BenchmarkForward100M/gonum` leaves out
	// generation, loading, warm-up and the other sub-benchmarks. (OpenBLAS's own threads are not
	// Go threads and carry no label.)
	pprof.Do(context.Background(), pprof.Labels("bench", b.Name()), func(context.Context) {
		for b.Loop() {
			t0 := time.Now()
			forward()
			times = append(times, time.Since(t0))
		}
	})
	cpu := cpuTime(b) - cpu0
	slices.Sort(times)
	b.ReportMetric(float64(tokens*b.N)/b.Elapsed().Seconds(), "tok/s")
	b.ReportMetric(float64(tokens)/times[len(times)/2].Seconds(), "med-tok/s")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// cpuTime returns the user+system CPU time of the process so far (all threads, OpenBLAS's too).
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkForward100M times the forward pass of a generated 155.7M-parameter Llama (hidden 1024,
// 8 layers, MLP 2816, 16 heads, 4 key/value heads of 64, vocabulary 32000, untied lm_head) on 8
// sequences of 128 tokens, with the logits of all 1024 tokens.
func BenchmarkForward100M(b *testing.B) {
	dir := synthDir(b, spec100M)
	m := loadBenchModel(b, dir)
	b.Logf("model %s: %d parameters", dir, spec100M.params())
	seqs := randomSeqs(len(bench100MLens), bench100MLens, spec100M.Vocab, 2)
	if err := writeCheckLogits(b, m, dir, seqs); err != nil {
		b.Fatal(err)
	}
	for _, s := range blasSetups {
		b.Run(s.name, func(b *testing.B) {
			b.Log(useBLAS(b, s))
			benchForward(b, m, seqs)
		})
	}
}

// BenchmarkForwardTiny times the tiny-skills fixture model (hidden 128, 4 layers, vocabulary 259)
// on 16 sequences of 12 to 20 tokens, with all logits.
func BenchmarkForwardTiny(b *testing.B) {
	m := loadBenchModel(b, filepath.Join(fixture, "model"))
	seqs := randomSeqs(len(benchTinyLens), benchTinyLens, m.Config.Vocab, 3)
	for _, s := range blasSetups {
		b.Run(s.name, func(b *testing.B) {
			useBLAS(b, s)
			benchForward(b, m, seqs)
		})
	}
}

// writeCheckLogits writes dir/go_logits.safetensors: tensors "logits.<backend>" (rows x vocab)
// with the logits of a packed batch of sequences of lengths checkLens, one per available BLAS
// backend, and metadata "check_sequences" (the token ids of that batch, JSON) and
// "bench_sequences" (the benchmark batch, so the PyTorch script times the same tokens).
func writeCheckLogits(b *testing.B, m *model.Model, dir string, bench [][]int) error {
	b.Helper()
	check := randomSeqs(len(checkLens), checkLens, m.Config.Vocab, 1)
	rows := 0
	for _, s := range check {
		rows += len(s)
	}
	var tensors []safetensors.Tensor
	for _, mode := range []string{linalg.ModeGonum, linalg.ModeOpenBLAS} {
		be, err := linalg.Init(mode)
		if err != nil || be.Name() != mode {
			continue
		}
		out, err := m.Forward(check, model.ForwardOptions{Logits: true})
		if err != nil {
			return err
		}
		tensors = append(tensors, safetensors.Tensor{Name: "logits." + mode, DType: safetensors.F32, Shape: []int{rows, m.Config.Vocab}, Data: out.Logits})
	}
	if _, err := linalg.Init(linalg.ModeGonum); err != nil {
		return err
	}
	cs, err := json.Marshal(check)
	if err != nil {
		return err
	}
	bs, err := json.Marshal(bench)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, checkLogitsFile)
	if err := safetensors.WriteFile(path, tensors, map[string]string{"check_sequences": string(cs), "bench_sequences": string(bs)}); err != nil {
		return fmt.Errorf("check logits: %w", err)
	}
	b.Logf("wrote %s (%d tensors, %d rows)", path, len(tensors), rows)
	return nil
}
