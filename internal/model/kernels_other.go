//go:build !amd64

package model

// useAVX is false where the AVX kernels do not exist; attention uses gonum's kernels.
const useAVX = false

func dotsAVX(q, k *float32, ld, n int, out *float32, cnt int)  { panic("model: no AVX kernels") }
func axpysAVX(out *float32, n int, p, v *float32, ld, cnt int) { panic("model: no AVX kernels") }
