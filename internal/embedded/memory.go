package embedded

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// AvailableMemory returns the memory a merge on this machine may use: MemAvailable from
// /proc/meminfo, lowered to the cgroup's limit when one is set (8 GiB when neither is known).
func AvailableMemory() int64 {
	avail := int64(8 << 30)
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 2 && fs[0] == "MemAvailable:" {
				if kb, err := strconv.ParseInt(fs[1], 10, 64); err == nil {
					avail = kb << 10
				}
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v < avail {
			avail = v
		}
	}
	return avail
}
