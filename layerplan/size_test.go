package layerplan

import (
	"errors"
	"strconv"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"512MiB", 512 << 20},
		{"8GiB", 8 << 30},
		{"8G", 8 << 30},
		{"8g", 8 << 30},
		{"8Gi", 8 << 30},
		{"8GB", 8_000_000_000},
		{"8 GiB", 8 << 30},
		{" 1.5TiB ", 3 << 39},
		{"0.5K", 512},
		{"1.", 1},
		{"8589934592", 8589934592},
		{"100b", 100},
		{"2PiB", 2 << 50},
		{"1.0000000001KiB", 1024},
		{"0.3KB", 300},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "GiB", "8XB", "-8GiB", "1e9", "1.2.3", "0", "0.1B", "8 G iB", ".", "4096PiB", "NaN", "+5", "5/2"} {
		if v, err := ParseSize(in); !errors.Is(err, ErrSize) {
			t.Errorf("ParseSize(%q) = %d, %v; want ErrSize", in, v, err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{832, "832 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{8 << 30, "8 GiB"},
		{43555274752, "40.6 GiB"},
		{1073217536, "1023.5 MiB"},
		{1<<30 - 1, "1 GiB"},
		{Unbounded, "4 EiB"},
	}
	for _, tc := range tests {
		if got := FormatSize(tc.in); got != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseSize: no input crashes ParseSize; an accepted size is in range and raw bytes parse
// back to themselves.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MiB", "8G", "1.5TiB", "8589934592", "0.5k", "9.99999999999999999999PB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrSize) {
				t.Fatalf("error %v does not wrap ErrSize", err)
			}
			return
		}
		if v < 1 || v >= Unbounded {
			t.Fatalf("ParseSize(%q) = %d, outside 1..2^62", s, v)
		}
		if w, err := ParseSize(strconv.FormatInt(v, 10)); err != nil || w != v {
			t.Fatalf("raw %d parses as %d, %v", v, w, err)
		}
	})
}
