package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/protocol"
)

// envInt reads an integer environment variable (def when unset).
func envInt(t *testing.T, name string, def int64) int64 {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// soakKill is one fault of a soak run.
type soakKill struct {
	kind string // leader, worker or nats
	at   int    // the fault comes once the job has this many events
	whom string
}

// kill injects one fault into the cluster and restarts what it killed, as a supervisor would:
// the raft leader or a worker gets SIGKILL and is started again from the same data directory, the
// nats-server gets SIGKILL and is started again on its store directory.
func (c *Cluster) kill(t *testing.T, k *soakKill, rng *rand.Rand) {
	t.Helper()
	switch k.kind {
	case "leader":
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		p, err := c.LeaderProc(ctx)
		cancel()
		if err != nil {
			t.Fatalf("finding the leader: %v", err)
		}
		k.whom = p.Name
		p.Kill()
		p.Restart(t)
	case "worker":
		p := c.Workers[rng.IntN(len(c.Workers))]
		k.whom = p.Name
		p.Kill()
		p.Restart(t)
	case "nats":
		k.whom = "nats-server"
		c.NATS.Kill()
		c.NATS.Restart()
	case "none":
		k.whom = "nothing" // the control: runs without faults
	default:
		t.Fatalf("ITERIS_SOAK_KINDS: unknown fault %q (want leader, worker, nats or none)", k.kind)
	}
}

// soakEvents is about how many events an undisturbed run of each config has (dispatches and
// completions of every task): a fault's point is drawn below it.
var soakEvents = map[string]int{sweepConfig: 8, jacobiConfig: 20}

// TestSoak runs ITERIS_SOAK_RUNS merges (default 20; sweep and jacobi in turn) on one loopback
// cluster (3 coordinators, 2 workers, the pinned nats-server), each with 1-3 faults at random
// points of the job (after a random number of its events): SIGKILL of the raft leader, of a
// worker, or of the nats-server, each restarted at once. Every run must finish within
// ITERIS_SOAK_RUN_SECONDS (default 180) with the adapter of the undisturbed run, byte for byte.
// ITERIS_SOAK_SEED replays a soak's random choices; ITERIS_SOAK_KINDS (e.g. "nats", or "none"
// for the undisturbed control) limits the kinds of faults, and ITERIS_SOAK_EVENTS=1 logs every
// run's events.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("runs many merges with process kills")
	}
	runs := int(envInt(t, "ITERIS_SOAK_RUNS", 20))
	bound := time.Duration(envInt(t, "ITERIS_SOAK_RUN_SECONDS", 180)) * time.Second
	seed := envInt(t, "ITERIS_SOAK_SEED", time.Now().UnixNano())
	kinds := []string{"leader", "worker", "nats"}
	if k := os.Getenv("ITERIS_SOAK_KINDS"); k != "" {
		kinds = strings.Split(k, ",")
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x150a))
	t.Logf("soak: %d runs, seed %d (ITERIS_SOAK_SEED replays it)", runs, seed)
	configs := []string{sweepConfig, jacobiConfig}
	want := map[string][]byte{}
	for _, cf := range configs {
		want[cf] = referenceAdapter(t, cf)
	}
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2, Lease: 5 * time.Second, WorkerTimeout: 2 * time.Second})
	counts := map[string]int{}
	var longest time.Duration
	for r := 0; r < runs; r++ {
		config := configs[r%len(configs)]
		kills := make([]soakKill, 1+rng.IntN(3))
		for i := range kills {
			kills[i] = soakKill{kind: kinds[rng.IntN(len(kinds))], at: rng.IntN(soakEvents[config])}
		}
		sort.Slice(kills, func(i, j int) bool { return kills[i].at < kills[j].at })
		t0 := time.Now()
		job := c.submit(t, config, 2)
		var done []string
		for i := range kills {
			k := &kills[i]
			js := c.waitFor(t, job, bound, fmt.Sprintf("run %d: the point of fault %d", r+1, i+1), func(js protocol.JobStatus) error {
				if len(js.Events) < k.at && js.State != "done" {
					return fmt.Errorf("%d events", len(js.Events))
				}
				return nil
			})
			if js.State == "done" {
				done = append(done, fmt.Sprintf("%s not injected (the job was done)", k.kind))
				continue
			}
			c.kill(t, k, rng)
			counts[k.kind]++
			done = append(done, fmt.Sprintf("%s %s after %d events (%.1fs)", k.kind, k.whom, len(js.Events), time.Since(t0).Seconds()))
		}
		js := c.waitDone(t, job, bound)
		c.checkAdapter(t, job, want[config], js)
		took := time.Since(t0)
		longest = max(longest, took)
		line := fmt.Sprintf("run %d (%s): %s; done in %.1fs, %d events, identical", r+1, strings.TrimSuffix(filepath.Base(config), ".yaml"), strings.Join(done, ", "), took.Seconds(), len(js.Events))
		t.Log(line)
		if took > 15*time.Second || os.Getenv("ITERIS_SOAK_EVENTS") != "" {
			t.Logf("run %d was slow:\n%s", r+1, FormatEvents(js))
		}
	}
	t.Logf("soak summary: %d runs, %d kills (leader %d, worker %d, nats %d), every adapter identical to the undisturbed run's; longest run %.1fs; seed %d",
		runs, counts["leader"]+counts["worker"]+counts["nats"], counts["leader"], counts["worker"], counts["nats"], longest.Seconds(), seed)
}
