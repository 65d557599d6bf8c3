package inputs

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMemory(t *testing.T) {
	mi := []byte("MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    8192000 kB\n")
	if got, err := parseMeminfo(mi); err != nil || got != 8192000<<10 {
		t.Errorf("parseMeminfo: %d, %v; want %d", got, err, 8192000<<10)
	}
	for _, bad := range []string{"MemTotal: 1 kB\n", "MemAvailable: lots kB\n", ""} {
		if _, err := parseMeminfo([]byte(bad)); err == nil {
			t.Errorf("parseMeminfo(%q) accepted", bad)
		}
	}
	for in, want := range map[string]int64{"4294967296\n": 4 << 30, "max\n": 0, "9223372036854771712\n": 0, "-1": 0, "x": 0} {
		got, ok := parseCgroupLimit([]byte(in))
		if got != want || ok != (want > 0) {
			t.Errorf("parseCgroupLimit(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	if n, src, err := Memory(); err != nil || n <= 0 || src == "" {
		t.Errorf("Memory() on this machine: %d, %q, %v", n, src, err)
	}
}

func TestCheckMemory(t *testing.T) {
	est := func(b int64) Estimator {
		return func(*Inputs) (MemoryEstimate, error) {
			return MemoryEstimate{Bytes: b, Dominant: "the base weights (2.0 GiB)"}, nil
		}
	}
	var warned []string
	warn := func(f string, a ...any) { warned = append(warned, f) }
	if err := CheckMemory(&Inputs{}, nil, 1, warn); err != nil {
		t.Errorf("no estimator: %v", err)
	}
	if err := CheckMemory(&Inputs{}, est(2<<30), 3<<30, warn); err != nil {
		t.Errorf("below the limit: %v", err)
	}
	err := CheckMemory(&Inputs{}, est(5<<30), 3<<30, warn)
	if !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), "5.0 GiB") || !strings.Contains(err.Error(), "the base weights (2.0 GiB)") || !strings.Contains(err.Error(), "3.0 GiB") {
		t.Errorf("above the limit: %v", err)
	}
	if err := CheckMemory(&Inputs{}, est(1<<62), 0, warn); !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), "MemAvailable") && !strings.Contains(err.Error(), "cgroup") && !strings.Contains(err.Error(), "memory limit") {
		t.Errorf("above the machine's memory: %v", err)
	}
	boom := errors.New("boom")
	if err := CheckMemory(&Inputs{}, func(*Inputs) (MemoryEstimate, error) { return MemoryEstimate{}, boom }, 0, warn); !errors.Is(err, boom) {
		t.Errorf("estimator error: %v", err)
	}
	if len(warned) != 0 {
		t.Errorf("warnings %v", warned)
	}
}

// FuzzParseMemory checks that the /proc/meminfo and cgroup parsers never panic and return only
// sizes that fit.
func FuzzParseMemory(f *testing.F) {
	f.Add([]byte("MemTotal: 16384000 kB\nMemAvailable:    8192000 kB\n"))
	f.Add([]byte("max\n"))
	f.Add([]byte("MemAvailable: 99999999999999999999 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseMeminfo(b); err == nil && n < 0 {
			t.Fatalf("negative MemAvailable %d", n)
		}
		if n, ok := parseCgroupLimit(b); ok && n <= 0 {
			t.Fatalf("limit %d accepted", n)
		}
	})
}
