package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/iteris-dev/iteris/internal/linalg"
	"github.com/iteris-dev/iteris/internal/safetensors"
)

// backends runs f once per BLAS backend (OpenBLAS only where it loads), restoring gonum after.
func backends(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	for _, mode := range []string{linalg.ModeGonum, linalg.ModeOpenBLAS} {
		t.Run(mode, func(t *testing.T) {
			t.Setenv(linalg.EnvBLAS, "")
			be, err := linalg.Init(mode)
			if errors.Is(err, linalg.ErrOpenBLASUnavailable) {
				t.Skipf("OpenBLAS not installed: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if _, err := linalg.Init(linalg.ModeGonum); err != nil {
					t.Errorf("restoring gonum: %v", err)
				}
			})
			t.Log(be)
			f(t)
		})
	}
}

// smallTiles makes widened products use tiles of about bytes and at least minCols columns for
// the rest of t.
func smallTiles(t *testing.T, bytes, minCols int) {
	t.Helper()
	b, m := tileBytes, tileMin
	tileBytes, tileMin = bytes, minCols
	t.Cleanup(func() { tileBytes, tileMin = b, m })
}

// randBF16 returns n random bfloat16 weights as their bits and as float32 values.
func randBF16(r *rand.Rand, n int) ([]uint16, []float32) {
	bits, vals := make([]uint16, n), make([]float32, n)
	for i := range bits {
		bits[i] = safetensors.Float32ToBFloat16(float32(0.05 * r.NormFloat64()))
		vals[i] = safetensors.BFloat16ToFloat32(bits[i])
	}
	return bits, vals
}

func bf16Weight(rows, cols int, bits []uint16) Weight {
	return Weight{dtype: safetensors.BF16, rows: rows, cols: cols, u16: bits}
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: value %d is %v, want %v (bit for bit)", what, i, got[i], want[i])
		}
	}
}

// productShapes are (rows, n, k) of products the engine runs: the fixture's and the benchmark
// model's projections at capture and generation batch sizes, and shapes next to every threshold
// of bigProduct.
var productShapes = [][3]int{
	{1024, 256, 128}, {1024, 688, 128}, {1024, 128, 344}, {300, 259, 128},
	{256, 1536, 1024}, {1, 2816, 1024}, {1, 1024, 1024}, {3, 5632, 1024}, {8, 1024, 2816},
	{16, 3000, 1000}, {32, 700, 1200}, {64, 1500, 300}, {255, 600, 700}, {1, 5000, 64},
	{2, 1300, 40}, {37, 1201, 23}, {5, 241, 833}, {4, 301, 999},
}

// TestTiledProductsBitIdentical checks, on both backends, that a 16-bit weight widened in tiles
// gives the bits of one product over the whole float32 weight, and that three modules computed
// together (fused where mulT allows: 16-bit tiles spanning the parts, or contiguous float32
// parts) give the bits of one product per module.
func TestTiledProductsBitIdentical(t *testing.T) {
	smallTiles(t, 64<<10, 64)
	backends(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(5, 6))
		for _, sh := range productShapes {
			rows, n, k := sh[0], sh[1], sh[2]
			t.Run(fmt.Sprintf("%dx%dx%d", rows, n, k), func(t *testing.T) {
				x := randFloats(r, rows*k)
				bits, vals := randBF16(r, n*k)
				y0 := randFloats(r, rows*n)
				for _, beta := range []float32{0, 1} {
					want := append([]float32(nil), y0...)
					gemmNT(x, k, rows, k, vals, n, want, n, beta)
					got := append([]float32(nil), y0...)
					mulT(x, k, rows, []Weight{bf16Weight(n, k, bits)}, got, n, beta)
					sameBits(t, fmt.Sprintf("widened, beta %v", beta), got, want)

					// Three parts, fused where mulT allows, 16-bit and float32. The reference is one
					// product per part on a float32 copy of its own (as separately loaded tensors);
					// float32 parts lie in one array (as the loader lays out a group) when their
					// width is a multiple of 4 (as the loader requires for that).
					cut := []int{0, n / 2, n/2 + n/4, n}
					var p16, p32 []Weight
					sep := append([]float32(nil), y0...)
					group := append([]float32(nil), vals...)
					for i := 0; i < 3; i++ {
						lo, hi := cut[i], cut[i+1]
						own := append([]float32(nil), vals[lo*k:hi*k]...)
						p16 = append(p16, bf16Weight(hi-lo, k, bits[lo*k:hi*k]))
						if k%4 == 0 {
							p32 = append(p32, Float32Weight(hi-lo, k, group[lo*k:hi*k]))
						} else {
							p32 = append(p32, Float32Weight(hi-lo, k, own))
						}
						gemmNT(x, k, rows, k, own, hi-lo, sep[lo:], n, beta)
					}
					if f, ok := contiguous(p32); ok != (k%4 == 0) || ok && len(f) != n*k {
						t.Fatalf("contiguous(float32 parts) = %d values, %v", len(f), ok)
					}
					for name, ps := range map[string][]Weight{"bf16 parts": p16, "float32 parts": p32} {
						got := append([]float32(nil), y0...)
						mulT(x, k, rows, ps, got, n, beta)
						sameBits(t, fmt.Sprintf("%s vs one product per part, beta %v", name, beta), got, sep)
					}
				}
				// The backward product dx += dy W, W n x k, in tiles of W's columns.
				dy := randFloats(r, rows*n)
				want := randFloats(r, rows*k)
				got := append([]float32(nil), want...)
				mulN(dy, rows, Float32Weight(n, k, vals), want)
				mulN(dy, rows, bf16Weight(n, k, bits), got)
				sameBits(t, "mulN", got, want)
			})
		}
	})
}

func TestBigProductAndTiles(t *testing.T) {
	for _, tc := range []struct {
		m, n, k int
		big     bool
	}{
		{1024, 128, 128, true},
		{192, 128, 128, true}, // 3 x 2 blocks
		{64, 192, 128, false}, // 3 blocks: gonum's serial path
		{1, 1200, 1024, false},
		{1, 1201, 1024, true},
		{100, 100, 100, false}, // OpenBLAS's small kernels up to 100^3
		{100, 100, 101, true},
		{10, 1000, 101, true},
	} {
		if got := bigProduct(tc.m, tc.n, tc.k); got != tc.big {
			t.Errorf("bigProduct(%d, %d, %d) = %v, want %v", tc.m, tc.n, tc.k, got, tc.big)
		}
	}
	for _, sh := range productShapes {
		m, n, k := sh[0], sh[1], sh[2]
		w := tileCols(m, n, k)
		if !bigProduct(m, n, k) {
			if w != n {
				t.Errorf("tileCols(%d, %d, %d) = %d for a product that is not big, want %d", m, n, k, w, n)
			}
			continue
		}
		if w < tileMin && w < n || !bigProduct(m, w, k) {
			t.Errorf("tileCols(%d, %d, %d) = %d: below %d columns or not big", m, n, k, w, tileMin)
		}
	}
}
