package safetensors

import "math"

// Float16ToFloat32 converts IEEE 754 binary16 bits to a float32 exactly,
// subnormals, infinities and NaN payloads included.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // inf or NaN, payload kept
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// Subnormal: mant * 2^-24, renormalised.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// Float32ToFloat16 converts a float32 to IEEE 754 binary16 bits with
// round-to-nearest-even. Values beyond the largest half (65504) round to
// infinity, tiny values to subnormals or signed zero; NaN stays NaN (quiet,
// top payload bits kept).
func Float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if e := exp - 127 + 15; e > 0 && e < 0x1f { // normal half: the common case
		half := uint32(e)<<10 | mant>>13
		rem := mant & 0x1fff
		if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
			half++ // may carry into the exponent, up to infinity, which is right
		}
		return sign | uint16(half)
	}
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	// e <= 0: a subnormal half or zero.
	if e < -10 {
		return sign // below half the smallest subnormal
	}
	m := mant | 0x800000
	shift := uint(14 - e)
	half := m >> shift
	rem := m & (1<<shift - 1)
	mid := uint32(1) << (shift - 1)
	if rem > mid || (rem == mid && half&1 == 1) {
		half++ // may carry into the smallest normal, which is right
	}
	return sign | uint16(half)
}

// BFloat16ToFloat32 converts bfloat16 bits to a float32 exactly.
func BFloat16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// Float32ToBFloat16 converts a float32 to bfloat16 bits with
// round-to-nearest-even, as PyTorch does; NaN stays NaN (quiet, top payload
// bits kept), overflow rounds to infinity.
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
