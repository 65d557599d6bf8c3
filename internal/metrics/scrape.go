package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MaxScrape bounds the body Scrape reads.
const MaxScrape = 16 << 20

// Families are scraped or gathered metric families by name.
type Families map[string]*dto.MetricFamily

// Gather returns what g gathers.
func Gather(g prometheus.Gatherer) (Families, error) {
	fs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	out := Families{}
	for _, f := range fs {
		out[f.GetName()] = f
	}
	return out, nil
}

// Parse reads the Prometheus text format.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fs, err := p.TextToMetricFamilies(io.LimitReader(r, MaxScrape))
	if err != nil {
		return nil, fmt.Errorf("metrics: parsing the text format: %w", err)
	}
	return Families(fs), nil
}

// Scrape gets and parses url (a /metrics endpoint).
func Scrape(ctx context.Context, url string) (Families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: GET %s: %s", url, resp.Status)
	}
	fs, err := Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return fs, nil
}

// Value returns the value of the sample of metric name whose labels include the given pairs
// (name, value, name, value, ...): a gauge's or counter's value, or a histogram's or summary's
// sample count. Exactly one sample must match.
func (fs Families) Value(name string, labels ...string) (float64, error) {
	ms, err := fs.Match(name, labels...)
	if err != nil {
		return 0, err
	}
	if len(ms) != 1 {
		return 0, fmt.Errorf("metrics: %d samples of %s%s, want 1", len(ms), name, formatLabels(labels))
	}
	m := ms[0]
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), nil
	case m.Counter != nil:
		return m.Counter.GetValue(), nil
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount()), nil
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount()), nil
	case m.Untyped != nil:
		return m.Untyped.GetValue(), nil
	}
	return 0, fmt.Errorf("metrics: %s%s has no value", name, formatLabels(labels))
}

// Match returns the samples of metric name whose labels include the given pairs.
func (fs Families) Match(name string, labels ...string) ([]*dto.Metric, error) {
	if len(labels)%2 != 0 {
		return nil, fmt.Errorf("metrics: odd label list %q", labels)
	}
	f, ok := fs[name]
	if !ok {
		return nil, fmt.Errorf("metrics: no metric %s (have %s)", name, strings.Join(fs.Names(), ", "))
	}
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i < len(labels); i += 2 {
			ok = ok && have[labels[i]] == labels[i+1]
		}
		if ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// Names returns the metric names, sorted.
func (fs Families) Names() []string {
	var out []string
	for n := range fs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func formatLabels(labels []string) string {
	if len(labels) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}
