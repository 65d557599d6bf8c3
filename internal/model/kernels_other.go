//go:build !amd64

package model

// useAVX is false where the AVX kernels do not exist; attention uses gonum's kernels.
const useAVX = false

func dotsAVX(q, k *float32, ld, n int, out *float32, cnt int)  { panic("model: no AVX kernels") }
func axpysAVX(out *float32, n int, p, v *float32, ld, cnt int) { panic("model: no AVX kernels") }

// useFMAExp is false where the vector exp kernels do not exist.
const useFMAExp = false

func siluMulFMA(a, x, y *float32, n int) int { panic("model: no FMA kernels") }

func expSumFMA(row *float32, n int, mx float32, sum *float64) int { panic("model: no FMA kernels") }

func exp4FMA(x, e *[4]float64) { panic("model: no FMA kernels") }

func expKernelAgrees(ref func(float64) float64) bool { return false }
