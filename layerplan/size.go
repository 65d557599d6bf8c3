package layerplan

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// ErrSize is returned by ParseSize for a string that is not a memory size.
var ErrSize = errors.New("invalid memory size")

// units maps a lower-case unit suffix to its bytes. A bare letter (k, m, g, t, p) and the IEC
// forms (ki, kib, ...) are binary, as in docker's --memory and Java's -Xmx; kb, mb, gb, tb and pb
// are decimal.
var units = map[string]int64{"": 1, "b": 1}

func init() {
	for i, l := range []string{"k", "m", "g", "t", "p"} {
		bin := int64(1) << (10 * (i + 1))
		dec := int64(1)
		for range i + 1 {
			dec *= 1000
		}
		units[l], units[l+"i"], units[l+"ib"], units[l+"b"] = bin, bin, bin, dec
	}
}

// ParseSize parses a memory size such as "512MiB", "8GiB", "8G", "1.5TiB", "8 GB" or raw bytes
// ("8589934592"). Units are case-insensitive; fractional sizes round down to a byte. The size
// must be positive and below Unbounded.
func ParseSize(s string) (int64, error) {
	orig := s
	if len(s) > 64 {
		return 0, fmt.Errorf("%w: %.64q... is too long", ErrSize, s)
	}
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := units[unit]
	if !ok || !validNumber(num) {
		return 0, fmt.Errorf("%w: %q (want a number and an optional unit: B, KiB, MiB, GiB, TiB, PiB or K, M, G, T, P (binary), KB, MB, GB, TB, PB (decimal))", ErrSize, orig)
	}
	r, _ := new(big.Rat).SetString(num) // validNumber admits only digits with one optional point
	r.Mul(r, new(big.Rat).SetInt64(mult))
	v := new(big.Int).Quo(r.Num(), r.Denom())
	if v.Sign() <= 0 || v.Cmp(big.NewInt(Unbounded)) >= 0 {
		return 0, fmt.Errorf("%w: %q is outside 1 byte .. 4 EiB", ErrSize, orig)
	}
	return v.Int64(), nil
}

// validNumber accepts "12", "1.5", "0.25" and "3." but not "", "." or "1.2.3".
func validNumber(s string) bool {
	digits, points := 0, 0
	for _, c := range s {
		switch {
		case c == '.':
			points++
		case c >= '0' && c <= '9':
			digits++
		default:
			return false
		}
	}
	return digits > 0 && points <= 1
}

// FormatSize prints a byte count in binary units with at most one decimal: "832 B", "9.1 GiB",
// "8 GiB".
func FormatSize(b int64) string {
	if b < 1024 {
		return strconv.FormatInt(b, 10) + " B"
	}
	names := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(b) / 1024
	u := 0
	for u < len(names)-1 && v >= 1023.95 {
		v /= 1024
		u++
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0") + " " + names[u]
}
