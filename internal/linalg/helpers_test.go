package linalg

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// useBackend installs mode for the rest of the test and gonum afterwards.
// ITERIS_BLAS is cleared so the environment cannot redirect the test.
func useBackend(t *testing.T, mode string) Backend {
	t.Helper()
	t.Setenv(EnvBLAS, "")
	b, err := Init(mode)
	if err != nil {
		t.Fatalf("Init(%q): %v", mode, err)
	}
	t.Cleanup(func() {
		if _, err := Init(ModeGonum); err != nil {
			t.Errorf("restoring gonum: %v", err)
		}
	})
	return b
}

// openBLASOrSkip loads OpenBLAS or skips the test when the library is
// genuinely absent; the skip message names every path tried. It returns
// the implementation without installing it.
func openBLASOrSkip(t *testing.T) OpenBLAS {
	t.Helper()
	t.Setenv(EnvBLAS, "")
	lib, err := loadOpenBLAS(candidatePaths())
	if errors.Is(err, ErrOpenBLASUnavailable) {
		t.Skipf("OpenBLAS half skipped: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return OpenBLAS{lib: lib}
}

// bothBackends runs f once on gonum and once on OpenBLAS (skipping the
// OpenBLAS half only when the library is absent) and returns both results.
func bothBackends[T any](t *testing.T, f func() T) (gonumRes, openblasRes T) {
	t.Helper()
	useBackend(t, ModeGonum)
	gonumRes = f()
	openBLASOrSkip(t)
	useBackend(t, ModeOpenBLAS)
	openblasRes = f()
	return gonumRes, openblasRes
}

func newRNG(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 99)) }

func randDense(rng *rand.Rand, m, n int) *mat.Dense {
	d := mat.NewDense(m, n, nil)
	raw := d.RawMatrix()
	for i := range raw.Data {
		raw.Data[i] = rng.NormFloat64()
	}
	return d
}

func randSlice(rng *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = rng.NormFloat64()
	}
	return s
}

func randSlice32(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// gram returns XᵀX + shift·I for a random X (rows×n): positive definite
// when rows >= n or shift > 0, of rank rows otherwise.
func gram(rng *rand.Rand, rows, n int, shift float64) *mat.SymDense {
	x := randDense(rng, rows, n)
	h := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			var s float64
			for r := 0; r < rows; r++ {
				s += x.At(r, i) * x.At(r, j)
			}
			if i == j {
				s += shift
			}
			h.SetSym(i, j, s)
		}
	}
	return h
}

// symFromEig returns Q diag(eig) Qᵀ and Q for a random orthogonal Q.
func symFromEig(rng *rand.Rand, eig []float64) (*mat.SymDense, *mat.Dense) {
	n := len(eig)
	q := naiveOrthonormal(randDense(rng, n, n))
	h := mat.NewSymDense(n, nil)
	for i := 0; i < n; i++ {
		for j := i; j < n; j++ {
			var s float64
			for l := 0; l < n; l++ {
				s += q.At(i, l) * eig[l] * q.At(j, l)
			}
			h.SetSym(i, j, s)
		}
	}
	return h, q
}

// relErr is ||got - want||_F / ||want||_F (the absolute error when want is 0).
func relErr(t *testing.T, got, want mat.Matrix) float64 {
	t.Helper()
	gr, gc := got.Dims()
	wr, wc := want.Dims()
	if gr != wr || gc != wc {
		t.Fatalf("shape %d×%d, want %d×%d", gr, gc, wr, wc)
	}
	var diff, ref float64
	for i := 0; i < wr; i++ {
		for j := 0; j < wc; j++ {
			d := got.At(i, j) - want.At(i, j)
			diff += d * d
			ref += want.At(i, j) * want.At(i, j)
		}
	}
	if ref == 0 {
		return math.Sqrt(diff)
	}
	return math.Sqrt(diff / ref)
}

func relErrSlice(got, want []float64) float64 {
	var diff, ref float64
	for i := range want {
		d := got[i] - want[i]
		diff += d * d
		ref += want[i] * want[i]
	}
	if ref == 0 {
		return math.Sqrt(diff)
	}
	return math.Sqrt(diff / ref)
}

func relErrSlice32(got, want []float32) float64 {
	var diff, ref float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		diff += d * d
		ref += float64(want[i]) * float64(want[i])
	}
	if ref == 0 {
		return math.Sqrt(diff)
	}
	return math.Sqrt(diff / ref)
}
