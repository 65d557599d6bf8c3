package safetensors

import (
	"math"
	"testing"
)

func TestHalfKnownPatterns(t *testing.T) {
	inf := float32(math.Inf(1))
	tests := []struct {
		f    float32
		bits uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{0.333251953125, 0x3555},
		{65504, 0x7bff},                          // largest finite
		{float32(math.Ldexp(1, -14)), 0x0400},    // smallest normal
		{float32(math.Ldexp(1, -24)), 0x0001},    // smallest subnormal
		{float32(math.Ldexp(1023, -24)), 0x03ff}, // largest subnormal
		{inf, 0x7c00},
		{-inf, 0xfc00},
	}
	for _, tc := range tests {
		if got := Float32ToFloat16(tc.f); got != tc.bits {
			t.Errorf("Float32ToFloat16(%g) = %#04x, want %#04x", tc.f, got, tc.bits)
		}
		if got := Float16ToFloat32(tc.bits); math.Float32bits(got) != math.Float32bits(tc.f) {
			t.Errorf("Float16ToFloat32(%#04x) = %g, want %g", tc.bits, got, tc.f)
		}
	}
	rounding := []struct {
		f    float32
		bits uint16
	}{
		{65519, 0x7bff},                       // below the midpoint to infinity
		{65520, 0x7c00},                       // midpoint: ties to even (infinity)
		{1e6, 0x7c00},                         // overflow
		{float32(math.Ldexp(1, -25)), 0x0000}, // half the smallest subnormal: ties to even zero
		{float32(math.Ldexp(3, -26)), 0x0001}, // 0.75 of it rounds up
		{float32(math.Ldexp(3, -25)), 0x0002}, // 1.5 subnormal units: ties to even 2
		{1e-10, 0x0000},
		{-1e-10, 0x8000},
		{math.Float32frombits(1), 0x0000}, // float32 subnormal
		{1 + 1.0/2048, 0x3c00},            // tie to even down
		{1 + 3.0/2048, 0x3c02},            // tie to even up
		{3.14159265, 0x4248},
	}
	for _, tc := range rounding {
		if got := Float32ToFloat16(tc.f); got != tc.bits {
			t.Errorf("Float32ToFloat16(%g) = %#04x, want %#04x", tc.f, got, tc.bits)
		}
	}
	nan := float32(math.NaN())
	if h := Float32ToFloat16(nan); h&0x7c00 != 0x7c00 || h&0x03ff == 0 {
		t.Errorf("Float32ToFloat16(NaN) = %#04x, not a NaN", h)
	}
	if h := Float32ToFloat16(math.Float32frombits(0x7f800001)); h != 0x7e00 { // signalling NaN, low payload
		t.Errorf("Float32ToFloat16(sNaN) = %#04x, want quiet NaN 0x7e00", h)
	}
}

// halfValue is an independent float64 formula for a finite half.
func halfValue(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	v := math.Ldexp(mant, -24)
	if exp != 0 {
		v = math.Ldexp(1+mant/1024, exp-15)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

func TestHalfExhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := Float16ToFloat32(h)
		if h&0x7c00 == 0x7c00 {
			isNaN := h&0x03ff != 0
			if math.IsNaN(float64(f)) != isNaN || (!isNaN && !math.IsInf(float64(f), 0)) {
				t.Fatalf("Float16ToFloat32(%#04x) = %g", h, f)
			}
			if isNaN {
				if back := Float32ToFloat16(f); back != h|0x0200 {
					t.Fatalf("NaN %#04x came back as %#04x, want %#04x", h, back, h|0x0200)
				}
				continue
			}
		} else if float64(f) != halfValue(h) {
			t.Fatalf("Float16ToFloat32(%#04x) = %g, want %g", h, f, halfValue(h))
		}
		if back := Float32ToFloat16(f); back != h {
			t.Fatalf("round trip %#04x -> %g -> %#04x", h, f, back)
		}
	}
}

// TestHalfMidpoints checks round-to-nearest-even at every rounding boundary:
// the midpoint between consecutive halves goes to the even one, and the
// float32 values just either side go to the nearer one.
func TestHalfMidpoints(t *testing.T) {
	for h := uint16(0); h <= 0x7bff; h++ {
		lo := halfValue(h)
		hi := math.Ldexp(1, 16) // the next step above 65504
		if h < 0x7bff {
			hi = halfValue(h + 1)
		}
		mid := float32((lo + hi) / 2)
		if float64(mid) != (lo+hi)/2 {
			t.Fatalf("midpoint after %#04x not exact in float32", h)
		}
		even := h
		if h&1 == 1 {
			even = h + 1
		}
		for _, sign := range []uint16{0, 0x8000} {
			s := float32(1)
			if sign != 0 {
				s = -1
			}
			cases := []struct {
				f    float32
				want uint16
			}{
				{s * mid, even | sign},
				{s * math.Nextafter32(mid, float32(math.Inf(1))), (h + 1) | sign},
				{s * math.Nextafter32(mid, 0), h | sign},
			}
			for _, c := range cases {
				if got := Float32ToFloat16(c.f); got != c.want {
					t.Fatalf("Float32ToFloat16(%g) = %#04x, want %#04x", c.f, got, c.want)
				}
			}
		}
	}
}

func TestBFloat16(t *testing.T) {
	known := []struct {
		f    float32
		bits uint16
	}{
		{0, 0x0000},
		{1, 0x3f80},
		{-2, 0xc000},
		{3.14159265, 0x4049},
		{1 + 1.0/256, 0x3f80}, // tie to even down
		{1 + 3.0/256, 0x3f82}, // tie to even up
		{math.MaxFloat32, 0x7f80},
		{float32(math.Inf(-1)), 0xff80},
		{math.Float32frombits(1), 0x0000},
		{math.Float32frombits(0x00008000), 0x0000}, // subnormal tie to even
		{math.Float32frombits(0x00018000), 0x0002},
	}
	for _, tc := range known {
		if got := Float32ToBFloat16(tc.f); got != tc.bits {
			t.Errorf("Float32ToBFloat16(%g) = %#04x, want %#04x", tc.f, got, tc.bits)
		}
	}
	for i := 0; i < 1<<16; i++ {
		b := uint16(i)
		f := BFloat16ToFloat32(b)
		if math.Float32bits(f) != uint32(b)<<16 {
			t.Fatalf("BFloat16ToFloat32(%#04x) = %#08x", b, math.Float32bits(f))
		}
		if math.IsNaN(float64(f)) {
			if back := Float32ToBFloat16(f); back != b|0x0040 {
				t.Fatalf("NaN %#04x came back as %#04x", b, back)
			}
			continue
		}
		if back := Float32ToBFloat16(f); back != b {
			t.Fatalf("round trip %#04x -> %#04x", b, back)
		}
		if b&0x7fff >= 0x7f80 { // infinities have no midpoint above
			continue
		}
		mid := uint32(b)<<16 | 0x8000
		even := b + uint16(b&1)
		for _, c := range []struct {
			bits uint32
			want uint16
		}{{mid, even}, {mid + 1, b + 1}, {mid - 1, b}} {
			if got := Float32ToBFloat16(math.Float32frombits(c.bits)); got != c.want {
				t.Fatalf("Float32ToBFloat16(%#08x) = %#04x, want %#04x", c.bits, got, c.want)
			}
		}
	}
	if got := Float32ToBFloat16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("Float32ToBFloat16(NaN) = %#04x, not a NaN", got)
	}
	if got := Float32ToBFloat16(math.Float32frombits(0x7f800001)); got != 0x7fc0 {
		t.Errorf("Float32ToBFloat16(sNaN with low payload) = %#04x, want 0x7fc0", got)
	}
}
