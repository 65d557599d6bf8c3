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

// plainExp is math.Exp's amd64 path without FMA (math/exp_amd64.s before its avxfma label),
// every product rounded on its own: what package math runs on a CPU without FMA.
func plainExp(x float64) float64 {
	const (
		log2e = 1.4426950408889634073599246810018920
		ln2u  = 0.69314718055966295651160180568695068359375
		ln2l  = 0.28235290563031577122588448175013436025525412068e-12
	)
	k := math.RoundToEven(float64(log2e * x))
	r := x - float64(k*ln2u)
	r = r - float64(k*ln2l)
	r *= 0.0625
	p := 2.4801587301587301587e-5
	for _, c := range []float64{1.9841269841269841270e-4, 1.3888888888888888889e-3, 8.3333333333333333333e-3,
		4.1666666666666666667e-2, 1.6666666666666666667e-1, 0.5, 1.0} {
		p = float64(p*r) + c
	}
	r = float64(r * p)
	for range 4 {
		r = float64(r * float64(r+2))
	}
	r += 1
	return math.Ldexp(r, int(k))
}

// TestExpKernelMatchesMathExp holds the kernels' exp to math.Exp bit for bit on a million values
// spread over the range it takes and on the edges of its reduction, and checks the guard that
// enables it: it accepts math.Exp here, and it refuses math.Exp's plain (no FMA) path and a
// function one ulp off, so a CPU or GODEBUG on which package math does not take the FMA path
// keeps the scalar loops.
func TestExpKernelMatchesMathExp(t *testing.T) {
	if !useFMAExp {
		t.Skip("no vector exp kernel on this CPU (or it disagreed with math.Exp): the scalar loops run")
	}
	r := rand.New(rand.NewPCG(11, 12))
	xs := make([]float64, 0, 1<<20+400)
	for range 1 << 20 {
		xs = append(xs, r.Float64()*1416-708)
	}
	for k := -1021; k <= 1021; k += 7 {
		m := (float64(k) + 0.5) * math.Ln2
		xs = append(xs, m, math.Nextafter(m, 0), math.Nextafter(m, math.Inf(1)), -0.0, 0)
	}
	xs = append(xs, 708, -708, math.Nextafter(708, 0), math.Nextafter(-708, 0), 1e-300, -1e-300)
	var x, e [4]float64
	for i := 0; i+4 <= len(xs); i += 4 {
		copy(x[:], xs[i:i+4])
		exp4FMA(&x, &e)
		for j := range x {
			if math.Float64bits(e[j]) != math.Float64bits(math.Exp(x[j])) {
				t.Fatalf("exp(%v): kernel %v (%#016x), math.Exp %v (%#016x)", x[j], e[j], math.Float64bits(e[j]), math.Exp(x[j]), math.Float64bits(math.Exp(x[j])))
			}
		}
	}
	if !expKernelAgrees(math.Exp) {
		t.Error("the guard refuses math.Exp")
	}
	if expKernelAgrees(plainExp) {
		t.Error("the guard accepts math.Exp's plain path: its values do not tell the two paths apart")
	}
	if expKernelAgrees(func(x float64) float64 { return math.Nextafter(math.Exp(x), 0) }) {
		t.Error("the guard accepts a function one ulp below math.Exp")
	}
	var differ int
	for _, x := range xs[:1<<16] {
		if plainExp(x) != math.Exp(x) {
			differ++
		}
	}
	t.Logf("math.Exp's plain and FMA paths differ on %d of 65536 values", differ)
}
