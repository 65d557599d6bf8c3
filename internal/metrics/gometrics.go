package metrics

import (
	"errors"
	"sync"
	"time"

	gometrics "github.com/armon/go-metrics"
	gmprom "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrBridged is returned by BridgeGoMetrics when go-metrics already reports into a registry.
var ErrBridged = errors.New("metrics: go-metrics is already bridged into a registry (it is process-global)")

var bridged sync.Mutex
var bridgedOnce bool

// BridgeGoMetrics sends the process-global go-metrics (what hashicorp/raft reports through
// go-metrics' compat package) into reg, named Prefix + the key joined by underscores:
// iteris_raft_apply (counter), iteris_raft_commitTime (summary, milliseconds),
// iteris_raft_state_leader (counter of elections won), iteris_raft_peers, ... go-metrics is one
// per process, so only the first call bridges; later calls return ErrBridged.
func BridgeGoMetrics(reg prometheus.Registerer) error {
	bridged.Lock()
	defer bridged.Unlock()
	if bridgedOnce {
		return ErrBridged
	}
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Name: Prefix + "gometrics_bridge", Expiration: 10 * time.Minute})
	if err != nil {
		return err
	}
	cfg := gometrics.DefaultConfig(Prefix[:len(Prefix)-1])
	cfg.EnableHostname = false
	cfg.EnableHostnameLabel = false
	cfg.EnableRuntimeMetrics = false // the Go collector reports the runtime
	cfg.EnableServiceLabel = false   // the service name is the prefix
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		return err
	}
	bridgedOnce = true
	return nil
}
