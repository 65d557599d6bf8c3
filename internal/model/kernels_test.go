package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAVXKernelsMatchGonum holds the AVX kernels to gonum's kernels bit for bit: dot products
// of every length they take against Sdot (f32.DotUnitary) on aligned key rows and queries at
// every offset, and the weighted sums of value rows against a loop of Saxpy calls that skips
// zero weights (zeros, negative zeros, a NaN and tiny and huge values among the weights).
func TestAVXKernelsMatchGonum(t *testing.T) {
	if !useAVX {
		t.Skip("no AVX on this CPU: attention runs gonum's kernels only")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{16, 32, 48, 64, 80, 128, 256} {
		for _, cnt := range []int{1, 2, 3, 4, 5, 8, 9, 31} {
			for _, pad := range []int{0, 4, 12} {
				ld := n + pad
				keys := randFloats(r, cnt*ld+16)
				// make([]float32) is 16-byte aligned; start the rows at an aligned offset.
				k := keys[:cnt*ld]
				for qoff := 0; qoff < 4; qoff++ {
					q := randFloats(r, n+qoff)[qoff:]
					got := make([]float32, cnt)
					dotsAVX(&q[0], &k[0], ld, n, &got[0], cnt)
					for j := range got {
						want := smallBLAS.Sdot(n, q, 1, k[j*ld:], 1)
						if math.Float32bits(got[j]) != math.Float32bits(want) {
							t.Fatalf("dots n=%d cnt=%d ld=%d q offset %d: key %d gives %v, Sdot %v", n, cnt, ld, qoff, j, got[j], want)
						}
					}
				}
			}
		}
	}
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-30, 3e4, -2.5, float32(math.NaN())}
	for _, n := range []int{8, 16, 24, 64, 72, 128, 200} {
		for _, cnt := range []int{1, 2, 7, 40} {
			t.Run(fmt.Sprintf("axpys n=%d cnt=%d", n, cnt), func(t *testing.T) {
				ld := n + 8
				v := randFloats(r, cnt*ld)
				p := randFloats(r, cnt)
				for j := range p {
					if r.IntN(3) == 0 {
						p[j] = special[r.IntN(len(special)-1)] // no NaN but in the last case
					}
				}
				if cnt == 40 {
					p[17] = special[len(special)-1]
				}
				got := randFloats(r, n)
				want := append([]float32(nil), got...)
				axpysAVX(&got[0], n, &p[0], &v[0], ld, cnt)
				for j, pj := range p {
					if pj != 0 {
						smallBLAS.Saxpy(n, pj, v[j*ld:], 1, want, 1)
					}
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("element %d: %v, gonum %v", i, got[i], want[i])
					}
				}
			})
		}
	}
}
