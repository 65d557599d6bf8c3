package embedded

import "github.com/iteris-dev/iteris/internal/inputs"

// AvailableMemory returns the memory a merge on this machine may use (inputs.Memory: the smaller
// of MemAvailable and the cgroup's limit), 8 GiB when it is unknown.
func AvailableMemory() int64 {
	m, _, err := inputs.Memory()
	if err != nil || m <= 0 {
		return 8 << 30
	}
	return m
}
