// Command mergemem runs a merge of random adapters on a Llama checkpoint in one process, the
// unit a worker runs (internal/shard, every layer) with the paper's schedule (jacobi, delta
// objective, adaptive weights), and prints the process's peak resident set: the memory figures
// of docs/benchmarks.md, measured before and after weights kept their stored width.
//
//	go run ./bench/mergemem -model DIR [-tasks 2] [-seqs 16] [-len 64] [-rank 8] [-solves 2]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
)

func main() {
	dir := flag.String("model", "", "a Llama checkpoint directory")
	tasks := flag.Int("tasks", 2, "random tasks")
	seqs := flag.Int("seqs", 16, "random sequences per task")
	length := flag.Int("len", 64, "tokens per sequence")
	rank := flag.Int("rank", 8, "rank of the random LoRAs on all seven modules of every layer")
	solves := flag.Int("solves", 2, "jacobi solves")
	blas := flag.String("blas", "auto", "BLAS backend")
	flag.Parse()
	if *dir == "" {
		log.Fatal("give -model DIR")
	}
	be, err := linalg.Init(*blas)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(be)
	t0 := time.Now()
	base, err := model.Load(*dir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("loaded %s in %.2f s, peak RSS %.0f MB\n", *dir, time.Since(t0).Seconds(), peakMB())
	rng := rand.New(rand.NewPCG(7, 8))
	var ts []shard.Task
	var batches []shard.Batch
	for t := range *tasks {
		ts = append(ts, shard.Task{Name: fmt.Sprintf("t%d", t), Adapter: randomAdapter(base, *rank, rng), Weight: 1})
		ss := make([][]int, *seqs)
		for i := range ss {
			ss[i] = make([]int, *length)
			for j := range ss[i] {
				ss[i][j] = rng.IntN(base.Config.Vocab)
			}
		}
		batches = append(batches, shard.MakeBatches(append(make([][][]int, t), ss), 16)...)
	}
	u, err := shard.New(base, 0, base.Config.Layers, ts, shard.Settings{Method: shard.MethodIterIS, Objective: merge.Delta,
		Schedule: shard.Jacobi, Iterations: *solves, Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true})
	if err != nil {
		log.Fatal(err)
	}
	var prev shard.Updates
	for k := 1; k <= *solves; k++ {
		out, err := u.Jacobi(context.Background(), k, shard.StepInput{Batches: batches, Prev: prev})
		if err != nil {
			log.Fatal(err)
		}
		prev = out.Updates
		fmt.Printf("solve %d: capture %.2f s, solve %.2f s, peak RSS %.0f MB\n", k, out.CaptureSeconds, out.SolveSeconds, peakMB())
	}
	fmt.Printf("RESULT peak-RSS-MB %.0f\n", peakMB())
}

// randomAdapter returns rank-r LoRAs (scale 2) on every linear module of m.
func randomAdapter(m *model.Model, r int, rng *rand.Rand) *adapter.Adapter {
	a := &adapter.Adapter{Modules: map[string]*adapter.Module{}}
	for _, l := range m.Layers {
		for _, lin := range l.Linears() {
			md := &adapter.Module{Name: lin.Name, R: r, In: lin.In, Out: lin.Out, Alpha: 2 * float64(r), Scale: 2,
				A: make([]float32, r*lin.In), B: make([]float32, lin.Out*r)}
			for i := range md.A {
				md.A[i] = float32(0.02 * rng.NormFloat64())
			}
			for i := range md.B {
				md.B[i] = float32(0.02 * rng.NormFloat64())
			}
			a.Modules[lin.Name] = md
		}
	}
	return a
}

// peakMB is the process's maximum resident set so far, in MiB.
func peakMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return float64(ru.Maxrss) / 1024
}
