package merge

import (
	"math/rand/v2"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/iteris-dev/iteris/internal/gram"
	"github.com/iteris-dev/iteris/internal/linalg"
)

var backendOnce sync.Once

// initBackend installs OpenBLAS when it loads (ITERIS_BLAS=gonum forces the
// pure Go backend) and logs which one runs.
func initBackend(b *testing.B) {
	b.Helper()
	backendOnce.Do(func() {
		if _, err := linalg.Init(linalg.ModeAuto); err != nil {
			b.Fatal(err)
		}
	})
	b.Logf("backend: %s", linalg.Current())
}

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
// rank-16 adapters (delta objective, ridges): building H, one
// factorisation, 64 right-hand sides and the residual. "adaptive" computes
// the c_i (one W0^T W0 product); "given-coefs" is a later IterIS step that
// reuses them.
func BenchmarkSolveIterISDelta4096(b *testing.B) {
	initBackend(b)
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
	b.Run("adaptive", func(b *testing.B) {
		for range b.N {
			if _, err := SolveIterIS(w0, f, g, opt); err != nil {
				b.Fatal(err)
			}
		}
	})
	coefs, err := adaptiveCoefs(w0, f, g)
	if err != nil {
		b.Fatal(err)
	}
	opt.Coefs = coefs
	b.Run("given-coefs", func(b *testing.B) {
		for range b.N {
			if _, err := SolveIterIS(w0, f, g, opt); err != nil {
				b.Fatal(err)
			}
		}
	})
}
