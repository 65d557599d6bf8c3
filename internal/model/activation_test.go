package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// expEdges are float32 values around the places math.Exp changes path or its reduction changes
// exponent: the kernel's limit 708, math.Exp's overflow and denormal thresholds, the rounding
// boundaries of x*log2(e) at half-integers, zeros, infinities and NaN.
func expEdges() []float32 {
	var out []float32
	near := func(x float64) {
		f := float32(x)
		out = append(out, f, math.Nextafter32(f, float32(math.Inf(1))), math.Nextafter32(f, float32(math.Inf(-1))))
	}
	for _, x := range []float64{0, 708, 708.3, 708.4, 709.78, 710, 745.1, 746, 1e4} {
		near(x)
		near(-x)
	}
	for k := -40; k <= 40; k++ {
		near((float64(k) + 0.5) * math.Ln2) // x*log2(e) at a half-integer: the exponent's rounding
		near(float64(k) * math.Ln2)
	}
	out = append(out, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32, 1e-30, -1e-30)
	return out
}

// TestSiluMulMatchesScalar holds siluMul (the vector kernel where the CPU has it) to the scalar
// formula bit for bit: random gate values of every scale, every edge of math.Exp's paths, groups
// of four with one out-of-range value in each position, and every length and offset around the
// kernel's four-wide step.
func TestSiluMulMatchesScalar(t *testing.T) {
	t.Logf("vector exp kernel in use: %v", useFMAExp)
	r := rand.New(rand.NewPCG(7, 8))
	var g []float32
	for range 1 << 16 {
		g = append(g, float32(r.NormFloat64()*math.Pow(10, float64(r.IntN(7)-3))))
	}
	edges := expEdges()
	g = append(g, edges...)
	for _, e := range edges { // each edge in each lane of a group
		for lane := range 4 {
			grp := []float32{0.5, -1.5, 3, -7}
			grp[lane] = e
			g = append(g, grp...)
		}
	}
	u := make([]float32, len(g))
	for i := range u {
		u[i] = float32(r.NormFloat64())
	}
	u[3] = float32(math.NaN())
	u[100] = float32(math.Inf(-1))
	check := func(name string, g, u []float32) {
		t.Helper()
		got := make([]float32, len(g))
		want := make([]float32, len(g))
		siluMul(got, g, u)
		siluMulScalar(want, g, u)
		for j := range got {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Fatalf("%s: element %d (g %v, u %v): %v (%#08x), scalar %v (%#08x)", name, j, g[j], u[j],
					got[j], math.Float32bits(got[j]), want[j], math.Float32bits(want[j]))
			}
		}
	}
	for range 1 << 18 { // the whole range the kernel takes, and past it
		g = append(g, float32(r.Float64()*1440-720))
	}
	u = append(u, make([]float32, 1<<18)...)
	for i := len(u) - 1<<18; i < len(u); i++ {
		u[i] = float32(r.NormFloat64())
	}
	check("all", g, u)
	for off := range 5 {
		for n := range 13 {
			check(fmt.Sprintf("offset %d length %d", off, n), g[len(g)-100+off:][:n], u[off:][:n])
		}
	}
}

// TestExpShiftedMatchesScalar holds expShifted (a softmax's exponentials and their float64 sum,
// the vector kernel where the CPU has it) to the scalar loop bit for bit: the rows' values and
// the sum, for scores of every scale, every edge of math.Exp's paths, a NaN or an infinity in
// each lane, and every length around the kernel's four-wide step.
func TestExpShiftedMatchesScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	check := func(name string, row []float32, mx float32) {
		t.Helper()
		got, want := append([]float32(nil), row...), append([]float32(nil), row...)
		gs, ws := expShifted(got, mx), expShiftedScalar(want, mx, 0)
		if math.Float64bits(gs) != math.Float64bits(ws) && !(math.IsNaN(gs) && math.IsNaN(ws)) {
			t.Fatalf("%s: sum %v (%#016x), scalar %v (%#016x)", name, gs, math.Float64bits(gs), ws, math.Float64bits(ws))
		}
		for j := range got {
			if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
				t.Fatalf("%s: element %d (score %v, max %v): %v, scalar %v", name, j, row[j], mx, got[j], want[j])
			}
		}
	}
	for _, scale := range []float64{1e-3, 1, 10, 100, 400} {
		for _, n := range []int{1, 3, 4, 5, 8, 127, 128, 129, 1000} {
			row := make([]float32, n)
			mx := float32(math.Inf(-1))
			for j := range row {
				row[j] = float32(r.NormFloat64() * scale)
				mx = max(mx, row[j])
			}
			check(fmt.Sprintf("scale %g length %d", scale, n), row, mx)
		}
	}
	for _, e := range expEdges() {
		for lane := range 4 {
			row := []float32{0.5, -1.5, 3, -7, 1, 2}
			row[lane] = e
			check(fmt.Sprintf("edge %v in lane %d", e, lane), row, 3)
			check(fmt.Sprintf("edge %v in lane %d, max 0", e, lane), row, 0)
		}
	}
}

// BenchmarkSiluMul times one layer's SiLU product of the 155.7M benchmark model (1024 tokens x
// 2816), the kernel against the scalar loop.
func BenchmarkSiluMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 1024 * 2816
	g, u, a := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range g {
		g[i], u[i] = float32(r.NormFloat64()*2), float32(r.NormFloat64())
	}
	for _, bc := range []struct {
		name string
		f    func(a, g, u []float32)
	}{{"kernel", siluMul}, {"scalar", siluMulScalar}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(12 * n))
			for b.Loop() {
				bc.f(a, g, u)
			}
		})
	}
}
