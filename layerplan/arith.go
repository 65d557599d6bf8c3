package layerplan

import "math/bits"

// Unbounded is where byte and FLOP counts saturate: 2^62 (4 EiB). A count that reaches it fits
// no worker, so saturation can only turn an absurd input into a refusal, never into a plan.
const Unbounded int64 = 1 << 62

// mul returns the product of non-negative factors, saturated at Unbounded.
func mul(xs ...int64) int64 {
	p := int64(1)
	for _, x := range xs {
		hi, lo := bits.Mul64(uint64(p), uint64(x))
		if hi != 0 || lo >= uint64(Unbounded) {
			return Unbounded
		}
		p = int64(lo)
	}
	return p
}

// add returns the sum of non-negative terms, saturated at Unbounded.
func add(xs ...int64) int64 {
	var s int64
	for _, x := range xs {
		s += x // s < 2^62 and x <= 2^62: no int64 overflow
		if s >= Unbounded {
			return Unbounded
		}
	}
	return s
}

// div returns x/d rounded down, keeping Unbounded saturated.
func div(x, d int64) int64 {
	if x >= Unbounded {
		return Unbounded
	}
	return x / d
}
