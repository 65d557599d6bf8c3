package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iteris-dev/iteris/coordinator"
)

// goMetricsNames are the names of raft's own go-metrics the dashboard reads (bridged, so not
// described by a collector; hashicorp/raft emits them as raft.commitTime, ...).
var goMetricsNames = []string{"iteris_raft_commitTime"}

// exported returns the metric names the collectors and the process registry export.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	ch := make(chan *prometheus.Desc, 256)
	for _, c := range []prometheus.Collector{NewCoordinator(fakeNode{s: coordinator.NewState()}), NewWorker(1), NewStore(nil)} {
		c.Describe(ch)
	}
	close(ch)
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		names[m[1]] = true
	}
	fs, err := Gather(NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range fs.Names() {
		names[n] = true
	}
	for _, n := range goMetricsNames {
		names[n] = true
	}
	return names
}

// Every metric the Grafana dashboard (deploy/grafana/iteris.json) queries is one that iteris
// exports, so the dashboard cannot drift from the code unnoticed.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "iteris.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("iteris.json: %v", err)
	}
	names := exported(t)
	used := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range regexp.MustCompile(`iteris_[A-Za-z0-9_]+`).FindAllString(tg.Expr, -1) {
				used++
				base := m
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(m, suf); ok && names[b] {
						base = b
					}
				}
				if !names[base] {
					t.Errorf("panel %q queries %s, which iteris does not export", p.Title, m)
				}
			}
		}
	}
	if used < 20 {
		t.Fatalf("only %d metric references in the dashboard", used)
	}
}
