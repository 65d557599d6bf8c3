package model

import (
	"math"

	"golang.org/x/sys/cpu"
)

// useAVX enables the AVX kernels of attention (kernels_amd64.s): the same arithmetic as gonum's
// SSE kernels, element for element, eight lanes at a time and four keys per pass.
var useAVX = cpu.X86.HasAVX && cpu.X86.HasOSXSAVE

// dotsAVX sets out[j] = gonum's f32.DotUnitary(q[:n], k[j*ld:j*ld+n]) for j < cnt, for keys rows
// that start on 16-byte boundaries and n a positive multiple of 16: the order of gonum's sums
// (two 4-lane partial sums, alternately over 4-element blocks, added lane by lane, then two
// horizontal adds) with every product rounded before it is added.
//
//go:noescape
func dotsAVX(q, k *float32, ld, n int, out *float32, cnt int)

// axpysAVX adds p[j] * v[j*ld : j*ld+n] to out[:n] for j < cnt in order, skipping the j whose
// p[j] is zero (as gonum's Sgemm skips them), each product rounded before it is added, as
// gonum's f32.AxpyUnitary does; n is a positive multiple of 8.
//
//go:noescape
func axpysAVX(out *float32, n int, p, v *float32, ld, cnt int)

// useFMAExp enables the vector exp kernels (exp_amd64.s), which replay math.Exp's FMA path: they
// are used where math.Exp takes that path (AVX and FMA, as package math decides) and the vector
// integer instructions they need exist (AVX2), and only when the kernel gives math.Exp's bits on
// a set of values where the FMA and plain paths differ (so a GODEBUG that turns FMA off for package
// math, or any other disagreement, leaves the scalar loops in use).
var useFMAExp = cpu.X86.HasAVX && cpu.X86.HasFMA && cpu.X86.HasAVX2 && cpu.X86.HasOSXSAVE &&
	expKernelAgrees(math.Exp)

// expKernelAgrees reports whether the kernel's exp gives ref's bits on 256 values spread over
// [-708, 708], among them values where math.Exp's FMA and plain paths differ.
func expKernelAgrees(ref func(float64) float64) bool {
	var x, e [4]float64
	for i := 0; i < 256; i += 4 {
		for j := range x {
			x[j] = float64(i+j)*5.53 - 707.9 + 1/float64(i+j+3)
		}
		exp4FMA(&x, &e)
		for j := range x {
			if math.Float64bits(e[j]) != math.Float64bits(ref(x[j])) {
				return false
			}
		}
	}
	return true
}

// exp4FMA sets e[i] = math.Exp(x[i]) for |x[i]| <= 708 with the kernels' exp (math.Exp's FMA
// path); other lanes are undefined.
//
//go:noescape
func exp4FMA(x, e *[4]float64)

// siluMulFMA sets a[j] = float32(float64(x[j])/(1+math.Exp(-float64(x[j])))) * y[j], bit for bit,
// for j below n rounded down to a multiple of 4, four at a time, and returns how many it set: it
// stops before the first group of four that holds an x with |x| > 708 or a NaN, where math.Exp
// leaves the path the kernel replays.
//
//go:noescape
func siluMulFMA(a, x, y *float32, n int) int

// expSumFMA sets row[j] = float32(e) with e = math.Exp(float64(row[j]-mx)), bit for bit, and adds
// e to *sum in j order, for j below n rounded down to a multiple of 4, four at a time; it returns
// how many it did, stopping before the first group of four whose differences hold one with
// |x| > 708 or a NaN.
//
//go:noescape
func expSumFMA(row *float32, n int, mx float32, sum *float64) int
