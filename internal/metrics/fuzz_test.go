package metrics

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the text-format parser that Scrape uses on what a /metrics
// endpoint sends: it returns families or an error, never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte("# HELP iteris_jobs Jobs.\n# TYPE iteris_jobs gauge\niteris_jobs{state=\"done\"} 1\n"))
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4\nh_count 3\n"))
	f.Add([]byte("x{a=\"\\\"\"} NaN\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, n := range fs.Names() {
			_, _ = fs.Value(n)
		}
	})
}
