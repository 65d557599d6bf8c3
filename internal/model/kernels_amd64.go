package model

import "golang.org/x/sys/cpu"

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
