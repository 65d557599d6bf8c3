package inputs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrMemory reports a merge whose estimated peak memory exceeds what the machine (or the
// configured limit) has.
var ErrMemory = errors.New("merge does not fit in memory")

// MemoryEstimate is a merge's estimated peak memory.
type MemoryEstimate struct {
	// Bytes is the estimated peak, in bytes.
	Bytes int64
	// Dominant names what dominates the peak and its size, for the message: for example
	// "the base weights in float32 (26.0 GiB)".
	Dominant string
}

// Estimator estimates the peak memory of the merge that checked inputs describe. It must not
// load anything large: it runs before the base weights load. The single-process estimate of
// layerplan (footprints per layer range) is meant to be plugged in here.
type Estimator func(*Inputs) (MemoryEstimate, error)

// CheckMemory runs the estimator and refuses an estimate above the limit (limit 0: the
// machine's memory, see Memory).
func CheckMemory(in *Inputs, est Estimator, limit int64, warn func(string, ...any)) error {
	if est == nil {
		return nil
	}
	e, err := est(in)
	if err != nil {
		return fmt.Errorf("memory estimate: %w", err)
	}
	src := "the configured limit"
	if limit <= 0 {
		if limit, src, err = Memory(); err != nil {
			warn("the merge's estimated peak memory is %s (%s), but the machine's memory is unknown (%v): not checked", GiB(e.Bytes), e.Dominant, err)
			return nil
		}
	}
	if e.Bytes > limit {
		return fmt.Errorf("%w: the merge needs an estimated %s at its peak, dominated by %s, and %s is %s; use a machine with more memory, fewer or smaller calibration batches (parameters.batch_size, parameters.samples), or the cluster",
			ErrMemory, GiB(e.Bytes), e.Dominant, src, GiB(limit))
	}
	return nil
}

// GiB formats a byte count in GiB.
func GiB(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

// Memory returns the memory a process may use on this machine, in bytes, and where that figure
// comes from: the smaller of MemAvailable in /proc/meminfo and the cgroup's limit (memory.max
// of cgroup v2, memory.limit_in_bytes of v1).
func Memory() (int64, string, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, "", err
	}
	avail, err := parseMeminfo(b)
	if err != nil {
		return 0, "", fmt.Errorf("/proc/meminfo: %w", err)
	}
	limit, src := avail, "the available memory (MemAvailable in /proc/meminfo)"
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(f); err == nil {
			if c, ok := parseCgroupLimit(b); ok && c < limit {
				limit, src = c, "the container's memory limit ("+f+")"
			}
		}
	}
	return limit, src, nil
}

// parseMeminfo returns MemAvailable from /proc/meminfo, in bytes.
func parseMeminfo(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || kb < 0 || kb > 1<<53 {
				return 0, fmt.Errorf("MemAvailable %q is not a size in kB", f[1])
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no MemAvailable line")
}

// parseCgroupLimit reads a cgroup memory limit; "max" (v2) or a huge value (v1 without a
// limit) is no limit.
func parseCgroupLimit(b []byte) (int64, bool) {
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v >= 1<<62 {
		return 0, false
	}
	return v, true
}
