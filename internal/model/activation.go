package model

import "math"

// siluMul sets a[j] = silu(g[j]) * u[j] for every j, the SiLU taken in float64 and rounded to
// float32 before the product: float32(g / (1 + exp(-g))) * u. Where the CPU has the vector exp
// kernel it computes four at a time, bit for bit what the scalar loop gives (math.Exp's own FMA
// path replayed lane by lane); the groups of four the kernel leaves (|g| > 708 or a NaN among
// them) and the tail take the scalar loop.
func siluMul(a, g, u []float32) {
	n := len(g)
	a, u = a[:n], u[:n]
	i := 0
	for useFMAExp && n-i >= 4 {
		i += siluMulFMA(&a[i], &g[i], &u[i], n-i)
		end := min(i+4, n)
		siluMulScalar(a[i:end], g[i:end], u[i:end])
		i = end
	}
	siluMulScalar(a[i:], g[i:], u[i:])
}

// siluMulScalar is siluMul one element at a time.
func siluMulScalar(a, g, u []float32) {
	for j, gv := range g {
		a[j] = float32(float64(gv)/(1+math.Exp(-float64(gv)))) * u[j]
	}
}

// expShifted replaces row[j] by float32(math.Exp(float64(row[j] - mx))) and returns the float64
// sum of those exponentials taken in j order: the exponentials of a softmax. It uses the vector
// exp kernel where the CPU has it, bit for bit the scalar loop's result (as siluMul does).
func expShifted(row []float32, mx float32) float64 {
	var sum float64
	n, i := len(row), 0
	for useFMAExp && n-i >= 4 {
		i += expSumFMA(&row[i], n-i, mx, &sum)
		end := min(i+4, n)
		sum = expShiftedScalar(row[i:end], mx, sum)
		i = end
	}
	return expShiftedScalar(row[i:], mx, sum)
}

// expShiftedScalar is expShifted one element at a time, adding to sum.
func expShiftedScalar(row []float32, mx float32, sum float64) float64 {
	for j, x := range row {
		e := math.Exp(float64(x - mx))
		row[j] = float32(e)
		sum += e
	}
	return sum
}
