// Command rcphases times the phases of the recommended method's sweep inside one per-shard unit
// (internal/shard), the code a cluster worker runs: the task and merged streams' forward passes
// with the Gram and cross-term capture, the closed-form solves, and the layer-wise refinement. It
// also times one forward pass of one layer over every calibration batch, and reports the
// refinement of a layer in those forward-equivalents.
//
// Adapters and calibration are the tiny-skills fixture's (-fixture) or random (-model: any
// Llama checkpoint directory, with -tasks random rank -rank LoRAs on all seven modules of every
// layer and -seqs random sequences of -len tokens per task).
//
//	go run ./bench/rcphases -fixture testdata/tiny-skills [-steps 30] [-blas auto]
//	go run ./bench/rcphases -model DIR [-layers 2] [-tasks 4] [-seqs 16] [-len 64] [-rank 8] [-steps 30]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/iteris-dev/iteris/internal/adapter"
	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/merge"
	"github.com/iteris-dev/iteris/internal/model"
	"github.com/iteris-dev/iteris/internal/shard"
)

type options struct {
	fixture, model, blas              string
	layers, tasks, seqs, length, rank int
	steps, batch                      int
}

func main() {
	var o options
	flag.StringVar(&o.fixture, "fixture", "", "tiny-skills fixture directory (its merge4 adapters and reference-rc/calib64.json)")
	flag.StringVar(&o.model, "model", "", "a Llama checkpoint directory, merged with random adapters and sequences")
	flag.StringVar(&o.blas, "blas", "auto", "BLAS backend")
	flag.IntVar(&o.layers, "layers", 0, "layers [0, layers) form the unit (0: every layer)")
	flag.IntVar(&o.tasks, "tasks", 4, "random tasks (-model)")
	flag.IntVar(&o.seqs, "seqs", 16, "random sequences per task (-model)")
	flag.IntVar(&o.length, "len", 64, "tokens per random sequence (-model)")
	flag.IntVar(&o.rank, "rank", 8, "rank of the random LoRAs (-model)")
	flag.IntVar(&o.steps, "steps", 30, "refinement steps per layer")
	flag.IntVar(&o.batch, "batch", 16, "sequences per batch")
	flag.Parse()
	if (o.fixture == "") == (o.model == "") {
		log.Fatal("give one of -fixture or -model")
	}
	b, err := linalg.Init(o.blas)
	if err != nil {
		log.Fatal(err)
	}
	if err := run(o, b.String()); err != nil {
		log.Fatal(err)
	}
}

func run(o options, backend string) error {
	dir := o.model
	if o.fixture != "" {
		dir = filepath.Join(o.fixture, "model")
	}
	cfg, err := model.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	hi := cfg.Layers
	if o.layers > 0 {
		hi = min(o.layers, cfg.Layers)
	}
	base, err := model.LoadRange(dir, model.ShardRange(cfg, 0, hi))
	if err != nil {
		return err
	}
	var tasks []shard.Task
	var seqs [][][]int
	if o.fixture != "" {
		tasks, seqs, err = fixtureTasks(o.fixture)
	} else {
		tasks, seqs = randomTasks(base, o)
	}
	if err != nil {
		return err
	}
	batches := shard.MakeBatches(seqs, o.batch)
	rows := 0
	for _, ss := range seqs {
		for _, q := range ss {
			rows += len(q)
		}
	}
	fmt.Printf("model %s: hidden %d, MLP %d, layers [0, %d) of %d; %d tasks, %d sequences, %d positions in %d batches; BLAS %s\n\n",
		dir, cfg.Hidden, cfg.Intermediate, hi, cfg.Layers, len(tasks), len(seqs)*len(seqs[0]), rows, len(batches), backend)
	fwd, err := layerForward(base, batches)
	if err != nil {
		return err
	}
	fmt.Printf("one forward pass of layer 0 over every batch: %.3f s\n\n", fwd)
	fmt.Println("| refine steps | sweep (s) | capture (s) | solve (s) | refine (s) | refine per layer (s) | refine per layer (layer forwards) |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, steps := range []int{0, o.steps} {
		set := shard.Settings{Method: shard.MethodIterIS, Objective: merge.Residual, Schedule: shard.Sweep, Alpha1: 1e-4, Alpha2: 1e-4,
			Adaptive: true, Truncation: merge.TruncData, RefineSteps: steps, RefineLR: 1e-3, BatchSize: o.batch}
		u, err := shard.New(base, 0, hi, tasks, set)
		if err != nil {
			return err
		}
		t0 := time.Now()
		out, err := u.Sweep(context.Background(), shard.StepInput{Batches: batches})
		if err != nil {
			return err
		}
		total := time.Since(t0).Seconds()
		per := out.RefineSeconds / float64(hi)
		fmt.Printf("| %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f |\n", steps, total, out.CaptureSeconds, out.SolveSeconds, out.RefineSeconds, per, per/fwd)
	}
	return nil
}

// layerForward times layer 0 of base on every batch (embedding excluded), the median of 3 runs.
func layerForward(base *model.Model, batches []shard.Batch) (float64, error) {
	var sts []*model.State
	for _, b := range batches {
		st, err := base.Start(b.Seqs)
		if err != nil {
			return 0, err
		}
		sts = append(sts, st)
	}
	var times []float64
	for range 3 {
		t0 := time.Now()
		for _, st := range sts {
			base.ObserveResiduals(0, st, nil)
		}
		times = append(times, time.Since(t0).Seconds())
	}
	a, b, c := times[0], times[1], times[2]
	return max(min(a, b), min(max(a, b), c)), nil
}

// fixtureTasks loads merge4's adapters and reference-rc's 64 calibration sequences per task.
func fixtureTasks(fx string) ([]shard.Task, [][][]int, error) {
	raw, err := os.ReadFile(filepath.Join(fx, "reference-rc/calib64.json"))
	if err != nil {
		return nil, nil, err
	}
	var calib struct {
		Tokens map[string][][]int `json:"calib_tokens"`
	}
	if err := json.Unmarshal(raw, &calib); err != nil {
		return nil, nil, err
	}
	var tasks []shard.Task
	var seqs [][][]int
	for _, name := range []string{"rev", "upc", "nxt", "srt"} {
		a, err := adapter.Load(filepath.Join(fx, "adapters", name))
		if err != nil {
			return nil, nil, err
		}
		tasks = append(tasks, shard.Task{Name: name, Adapter: a, Weight: 1})
		seqs = append(seqs, calib.Tokens[name])
	}
	return tasks, seqs, nil
}

// randomTasks returns o.tasks adapters with random rank-o.rank LoRAs (scale 2) on every linear
// module of base's loaded layers and o.seqs random sequences of o.length tokens per task.
func randomTasks(base *model.Model, o options) ([]shard.Task, [][][]int) {
	rng := rand.New(rand.NewPCG(7, 8))
	var tasks []shard.Task
	var seqs [][][]int
	for t := range o.tasks {
		a := &adapter.Adapter{Modules: map[string]*adapter.Module{}}
		for _, l := range base.Layers {
			if l == nil {
				continue
			}
			for _, lin := range l.Linears() {
				m := &adapter.Module{Name: lin.Name, R: o.rank, In: lin.In, Out: lin.Out, Alpha: 2 * float64(o.rank), Scale: 2,
					A: make([]float32, o.rank*lin.In), B: make([]float32, lin.Out*o.rank)}
				for i := range m.A {
					m.A[i] = float32(0.02 * rng.NormFloat64())
				}
				for i := range m.B {
					m.B[i] = float32(0.02 * rng.NormFloat64())
				}
				a.Modules[lin.Name] = m
			}
		}
		tasks = append(tasks, shard.Task{Name: fmt.Sprintf("t%d", t), Adapter: a, Weight: 1})
		ss := make([][]int, o.seqs)
		for i := range ss {
			ss[i] = make([]int, o.length)
			for j := range ss[i] {
				ss[i][j] = rng.IntN(base.Config.Vocab)
			}
		}
		seqs = append(seqs, ss)
	}
	return tasks, seqs
}
