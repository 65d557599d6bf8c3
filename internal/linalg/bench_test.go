package linalg

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// Benchmarks run every operation on both backends (sub-benchmarks gonum
// and openblas) and report GFLOP/s:
//
//	go test -run '^$' -bench . ./internal/linalg/
//
// bench/linalg_numpy.py does the same operations in NumPy.

// benchBackends runs f as sub-benchmarks gonum and openblas; the openblas
// one is skipped only when the library is absent.
func benchBackends(b *testing.B, flops float64, f func(b *testing.B)) {
	for _, mode := range []string{ModeGonum, ModeOpenBLAS} {
		b.Run(mode, func(b *testing.B) {
			b.Setenv(EnvBLAS, "")
			be, err := Init(mode)
			if errors.Is(err, ErrOpenBLASUnavailable) {
				b.Skipf("OpenBLAS half skipped: %v", err)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _, _ = Init(ModeGonum) })
			b.Logf("%s", be)
			f(b)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func benchSlice32(n int) []float32 {
	rng := newRNG(uint64(n))
	return randSlice32(rng, n)
}

func BenchmarkSgemm(b *testing.B) {
	for _, n := range []int{1024, 4096} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			x, y, z := benchSlice32(n*n), benchSlice32(n*n), make([]float32, n*n)
			benchBackends(b, 2*float64(n)*float64(n)*float64(n), func(b *testing.B) {
				impl := blas32.Implementation()
				for b.Loop() {
					impl.Sgemm(blas.NoTrans, blas.NoTrans, n, n, n, 1, x, n, y, n, 0, z, n)
				}
			})
		})
	}
}

func BenchmarkDgemm(b *testing.B) {
	n := 1024
	b.Run(fmt.Sprint(n), func(b *testing.B) {
		rng := newRNG(1)
		x, y, z := randSlice(rng, n*n), randSlice(rng, n*n), make([]float64, n*n)
		benchBackends(b, 2*float64(n)*float64(n)*float64(n), func(b *testing.B) {
			impl := blas64.Implementation()
			for b.Loop() {
				impl.Dgemm(blas.NoTrans, blas.NoTrans, n, n, n, 1, x, n, y, n, 0, z, n)
			}
		})
	})
}

// BenchmarkDsyrk: C = A Aᵀ, A n×k; n²k flops (one triangle, 2 flops per
// multiply-add).
func BenchmarkDsyrk(b *testing.B) {
	n, k := 4096, 2048
	b.Run(fmt.Sprintf("n%d_k%d", n, k), func(b *testing.B) {
		rng := newRNG(2)
		a, c := randSlice(rng, n*k), make([]float64, n*n)
		benchBackends(b, float64(n)*float64(n)*float64(k), func(b *testing.B) {
			impl := blas64.Implementation()
			for b.Loop() {
				impl.Dsyrk(blas.Upper, blas.NoTrans, n, k, 1, a, k, 0, c, n)
			}
		})
	})
}

var (
	spdOnce sync.Once
	spd4096 *mat.SymDense
)

// benchSPD is A Aᵀ/n + I for a random 4096×4096 A, built once.
func benchSPD() *mat.SymDense {
	spdOnce.Do(func() {
		n := 4096
		rng := newRNG(3)
		a := randSlice(rng, n*n)
		h := mat.NewSymDense(n, nil)
		raw := h.RawSymmetric()
		blas64.Implementation().Dsyrk(blas.Upper, blas.NoTrans, n, n, 1/float64(n), a, n, 0, raw.Data, raw.Stride)
		for i := 0; i < n; i++ {
			raw.Data[i*raw.Stride+i]++
		}
		spd4096 = h
	})
	return spd4096
}

// BenchmarkCholeskySolve: choleskySolve (copy, potrf, condition estimate,
// potrs) of an SPD n=4096 system with 64 right-hand sides; n³/3 + 2n²·64
// flops.
func BenchmarkCholeskySolve(b *testing.B) {
	n, nrhs := 4096, 64
	b.Run(fmt.Sprintf("n%d_rhs%d", n, nrhs), func(b *testing.B) {
		rhs := randDense(newRNG(4), n, nrhs)
		fn := float64(n)
		benchBackends(b, fn*fn*fn/3+2*fn*fn*float64(nrhs), func(b *testing.B) {
			h := benchSPD()
			for b.Loop() {
				if _, err := choleskySolve(h, rhs); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
