package merge

import (
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
)

// spdGram returns a random symmetric, diagonally dominant (so SPD) n x n
// matrix, cheap to build at n = 4096.
func spdGram(rng *rand.Rand, n int) *mat.Dense {
	g := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			v := rng.Float64()*2 - 1
			g.Set(i, j, v)
			g.Set(j, i, v)
		}
		g.Set(i, i, float64(n)+rng.Float64())
	}
	return g
}

// BenchmarkSolveIterISDelta4096 solves one 4096 x 4096 site with four
// rank-16 adapters (delta objective, adaptive weights, ridges): building H,
// one factorisation, 64 right-hand sides and the residual.
func BenchmarkSolveIterISDelta4096(b *testing.B) {
	const n, m, r, tasks = 4096, 4096, 16, 4
	rng := rand.New(rand.NewPCG(1, 2))
	w0 := randDense(rng, m, n, 0.02)
	var f []Factor
	var g []gram.Grams
	for i := 0; i < tasks; i++ {
		f = append(f, Factor{A: randDense(rng, r, n, 0.02), B: randDense(rng, m, r, 0.02), Scale: 2, Weight: 1})
		q := spdGram(rng, n)
		p := mat.DenseCopyOf(q)
		for j := 0; j < n; j++ {
			p.Set(j, (j+1)%n, p.At(j, (j+1)%n)+0.5)
		}
		g = append(g, gram.Grams{N: n, Tokens: 2048, G: q, P: p, Q: q})
	}
	opt := SolveOptions{Objective: Delta, Alpha1: 1e-4, Alpha2: 1e-4, Adaptive: true}
	b.ResetTimer()
	for range b.N {
		if _, err := SolveIterIS(w0, f, g, opt); err != nil {
			b.Fatal(err)
		}
	}
}
