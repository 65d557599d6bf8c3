package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iteris-dev/iteris/internal/artifact"
)

// ObjectStores lists the object stores of a JetStream account (jetstream.JetStream implements
// it).
type ObjectStores interface {
	ObjectStores(ctx context.Context) jetstream.ObjectStoresLister
}

// Store is the collector of the artifact store on JetStream: the bytes held in the iteris
// artifact buckets (every job's working artifacts and the output files of finished jobs) and
// the number of buckets. It asks the server at every scrape (bounded by Timeout).
type Store struct {
	js ObjectStores
	// Timeout bounds the listing at each scrape (default 2 s).
	Timeout time.Duration

	bytes, buckets, up *prometheus.Desc
}

var _ prometheus.Collector = (*Store)(nil)

// NewStore returns the collector of the artifact buckets on js.
func NewStore(js ObjectStores) *Store {
	return &Store{js: js, Timeout: 2 * time.Second,
		bytes:   desc("artifact_store_bytes", "Bytes held in the artifact store's buckets on JetStream (iteris-art-*)."),
		buckets: desc("artifact_store_buckets", "Artifact buckets on JetStream (one per job with working artifacts, one per job with output files)."),
		up:      desc("artifact_store_up", "1 when the last listing of the artifact buckets succeeded."),
	}
}

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.bytes
	ch <- s.buckets
	ch <- s.up
}

// Collect implements prometheus.Collector.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	l := s.js.ObjectStores(ctx)
	var size uint64
	n := 0
	for st := range l.Status() {
		if strings.HasPrefix(st.Bucket(), artifact.BucketPrefix) {
			size += st.Size()
			n++
		}
	}
	if l.Error() != nil {
		ch <- prometheus.MustNewConstMetric(s.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(s.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(s.bytes, prometheus.GaugeValue, float64(size))
	ch <- prometheus.MustNewConstMetric(s.buckets, prometheus.GaugeValue, float64(n))
}
