package clustertest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRollingRestartOfCoordinators restarts the three coordinators one after another with SIGTERM,
// as a StatefulSet's rolling update does: a leader that is stopped hands leadership over first
// (its log says so, it exits with status 0), every restarted member becomes ready again before
// the next one goes, and a merge afterwards succeeds.
func TestRollingRestartOfCoordinators(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and five iteris processes")
	}
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2, Metrics: true})
	ctx := context.Background()
	ready := func(name string) {
		t.Helper()
		Eventually(t, 30*time.Second, name+" is ready", wantProbe("http://"+c.MetricsAddr(name)+"/readyz", 200))
	}
	for i := range c.Coordinators {
		ready(fmt.Sprintf("c%d", i))
	}
	transfers := 0
	// Restart in the StatefulSet's order (highest ordinal first); stop the leader wherever it is.
	for i := len(c.Coordinators) - 1; i >= 0; i-- {
		p := c.Coordinators[i]
		var leader string
		Eventually(t, 10*time.Second, "a leader", func() error {
			var err error
			leader, err = c.Leader(ctx)
			if err == nil && leader == "" {
				err = errors.New("no leader")
			}
			return err
		})
		t0 := time.Now()
		p.Stop()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := p.Wait(wctx)
		cancel()
		if err != nil {
			t.Fatalf("%s after SIGTERM: %v\n%s", p.Name, err, p.Log())
		}
		if leader == p.Name {
			// "given up": the transfer timed out while the target caught up, and this node
			// stepped down; the others elect at once.
			if !strings.Contains(p.Log(), "raft leadership transferred") && !strings.Contains(p.Log(), "raft leadership given up") {
				t.Fatalf("the leader %s stopped without handing over:\n%s", p.Name, p.Log())
			}
			transfers++
			Eventually(t, 10*time.Second, "a new leader", func() error {
				l, err := c.Leader(ctx)
				if err == nil && (l == "" || l == p.Name) {
					err = fmt.Errorf("leader %q", l)
				}
				return err
			})
			t.Logf("%s handed over; a new leader answered %s after SIGTERM", p.Name, time.Since(t0).Round(time.Millisecond))
		}
		p.Restart(t)
		ready(p.Name)
	}
	if transfers == 0 {
		t.Fatal("the leader was never stopped (every coordinator is restarted once)")
	}
	changed := 0
	for _, p := range c.Coordinators {
		changed += strings.Count(p.Log(), "raft leader changed")
	}
	if changed == 0 {
		t.Error("no coordinator logged a leader change")
	}
	out := filepath.Join(t.TempDir(), "out")
	waitSubmit(t, c.Submit(writeConfig(t, quickJacobi), out, "--workers", "2"), out)
}
