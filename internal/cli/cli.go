// Package cli defines the flags of the cluster commands (`iteris coordinator`, `worker`, `submit`
// and `status`) and parses them into option structs with Validate. The binary (cmd/iteris) uses
// it, and so does the Kubernetes manifest check (deploy/k8s), which feeds every container's args
// through the real parser instead of re-implementing it.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/iteris-dev/iteris/layerplan"
	"github.com/iteris-dev/iteris/protocol"
)

// ErrUsage marks a command-line mistake.
var ErrUsage = errors.New("usage")

// Peer is one raft peer of --peers.
type Peer struct {
	ID, Addr string
}

// Ops holds the operations flags of the long-running commands (coordinator, worker).
type Ops struct {
	// MetricsAddr is --metrics-addr: HOST:PORT of /metrics, /healthz and /readyz ("": none).
	MetricsAddr string
}

func (o *Ops) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-addr", "", "HOST:PORT serving Prometheus /metrics, /healthz and /readyz (default: none)")
}

func (o *Ops) validate() error {
	if o.MetricsAddr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(o.MetricsAddr); err != nil {
		return fmt.Errorf("%w: --metrics-addr %q: %v", ErrUsage, o.MetricsAddr, err)
	}
	return nil
}

// Coordinator is the options of `iteris coordinator`.
type Coordinator struct {
	NATS
	Ops
	ID, DataDir, RaftAddr, PeersFlag, LogFormat string
	Peers                                       []Peer
	Lease, WorkerTimeout, ElectionTimeout       time.Duration
	// RaftCA, RaftCert and RaftKey are --raft-ca, --raft-cert and --raft-key: mutual TLS between
	// the coordinators (see RaftTLS).
	RaftCA, RaftCert, RaftKey string
	// InputsFlag is --inputs; Inputs its directories.
	InputsFlag string
	Inputs     []string
}

// CoordinatorFlags returns the flag set of `iteris coordinator` bound to o.
func CoordinatorFlags(o *Coordinator) *flag.FlagSet {
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	o.NATS.flags(fs)
	o.Ops.flags(fs)
	fs.StringVar(&o.ID, "id", "", "this coordinator's raft id (unique; e.g. the pod name)")
	fs.StringVar(&o.DataDir, "data-dir", "", "directory of the raft log, stable store and snapshots")
	fs.StringVar(&o.RaftAddr, "raft-addr", "", "HOST:PORT the raft transport listens on (and advertises)")
	fs.StringVar(&o.PeersFlag, "peers", "", "initial raft group: ID=HOST:PORT,... (every member, this one included)")
	fs.DurationVar(&o.Lease, "lease", 30*time.Second, "how long a task attempt may run without a renewal")
	fs.DurationVar(&o.WorkerTimeout, "worker-timeout", 10*time.Second, "how long a worker may miss heartbeats before its shard is given away")
	fs.DurationVar(&o.ElectionTimeout, "election-timeout", 500*time.Millisecond, "raft heartbeat and election timeout")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	o.securityFlags(fs)
	return fs
}

// Validate checks the options and parses --peers.
func (o *Coordinator) Validate() error {
	if err := o.NATS.validate(); err != nil {
		return err
	}
	if err := protocol.ValidateName("--id", o.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if o.DataDir == "" {
		return fmt.Errorf("%w: --data-dir is required", ErrUsage)
	}
	if _, _, err := net.SplitHostPort(o.RaftAddr); err != nil {
		return fmt.Errorf("%w: --raft-addr %q: %v", ErrUsage, o.RaftAddr, err)
	}
	o.Peers = nil
	self := false
	for _, p := range strings.Split(o.PeersFlag, ",") {
		if p == "" {
			continue
		}
		id, addr, ok := strings.Cut(p, "=")
		if !ok || protocol.ValidateName("peer id", id) != nil {
			return fmt.Errorf("%w: --peers entry %q: want ID=HOST:PORT", ErrUsage, p)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("%w: --peers entry %q: %v", ErrUsage, p, err)
		}
		o.Peers = append(o.Peers, Peer{ID: id, Addr: addr})
		self = self || id == o.ID
	}
	if len(o.Peers) == 0 {
		o.Peers = []Peer{{ID: o.ID, Addr: o.RaftAddr}}
	} else if !self {
		return fmt.Errorf("%w: --peers %q does not name this coordinator %q", ErrUsage, o.PeersFlag, o.ID)
	}
	if o.Lease <= 0 || o.WorkerTimeout <= 0 || o.ElectionTimeout <= 0 {
		return fmt.Errorf("%w: --lease, --worker-timeout and --election-timeout must be positive", ErrUsage)
	}
	if err := o.validateSecurity(); err != nil {
		return err
	}
	if err := o.Ops.validate(); err != nil {
		return err
	}
	return checkLogFormat(o.LogFormat)
}

func checkLogFormat(f string) error {
	if f != "text" && f != "json" {
		return fmt.Errorf("%w: --log-format %q: want text or json", ErrUsage, f)
	}
	return nil
}

// Worker is the options of `iteris worker`.
type Worker struct {
	NATS
	Ops
	ID, DataDir, MemoryFlag, LogFormat string
	Memory                             int64
	Heartbeat                          time.Duration
	// ExitAfterJob is --exit-after-job: exit (status 0) once the job this worker held a shard of
	// has ended, as a Kubernetes Job of workers needs to complete.
	ExitAfterJob bool
}

// WorkerFlags returns the flag set of `iteris worker` bound to o.
func WorkerFlags(o *Worker) *flag.FlagSet {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	o.NATS.flags(fs)
	o.Ops.flags(fs)
	fs.BoolVar(&o.ExitAfterJob, "exit-after-job", false, "exit (status 0) once the job this worker held a shard of has ended (done, failed or canceled)")
	fs.StringVar(&o.ID, "id", "", "this worker's id (unique; e.g. the pod name)")
	fs.StringVar(&o.MemoryFlag, "memory", "", "memory this worker may use: 512MiB, 8GiB, 1.5TiB or bytes (shards are cut to fit)")
	fs.StringVar(&o.DataDir, "data-dir", "", "directory for the worker's records (loaded.json: the tensors its shard read)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", time.Second, "heartbeat period")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	return fs
}

// Validate checks the options and parses --memory.
func (o *Worker) Validate() error {
	if err := o.NATS.validate(); err != nil {
		return err
	}
	if err := protocol.ValidateName("--id", o.ID); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	m, err := layerplan.ParseSize(o.MemoryFlag)
	if err != nil || m <= 0 {
		return fmt.Errorf("%w: --memory %q: %v", ErrUsage, o.MemoryFlag, err)
	}
	o.Memory = m
	if o.Heartbeat <= 0 {
		return fmt.Errorf("%w: --heartbeat must be positive", ErrUsage)
	}
	if err := o.Ops.validate(); err != nil {
		return err
	}
	return checkLogFormat(o.LogFormat)
}

// Submit is the options of `iteris submit`.
type Submit struct {
	NATS
	Wait, Force bool
	Workers     int
	Progress    string
	Timeout     time.Duration
	Config, Out string
}

// SubmitFlags returns the flag set of `iteris submit` bound to o.
func SubmitFlags(o *Submit) *flag.FlagSet {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	o.NATS.flags(fs)
	fs.BoolVar(&o.Wait, "wait", false, "wait for the merge, showing progress, and write OUT_DIR")
	fs.BoolVar(&o.Force, "force", false, "replace a non-empty OUT_DIR (never one that is, contains or lies inside an input)")
	fs.IntVar(&o.Workers, "workers", 0, "workers to cut the job across (0: the config's cluster.workers)")
	fs.StringVar(&o.Progress, "progress", "auto", "progress display with --wait: auto, bar, json or none")
	fs.DurationVar(&o.Timeout, "timeout", 0, "give up waiting after this long (0: never)")
	return fs
}

// Validate checks the options; pos are the positional arguments.
func (o *Submit) Validate(pos []string) error {
	if err := o.NATS.validate(); err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: submit CONFIG.yaml OUT_DIR --nats URL [--wait] (got %d arguments)", ErrUsage, len(pos))
	}
	o.Config, o.Out = pos[0], pos[1]
	if o.Workers < 0 || o.Timeout < 0 {
		return fmt.Errorf("%w: --workers and --timeout must not be negative", ErrUsage)
	}
	return nil
}

// Status is the options of `iteris status`.
type Status struct {
	NATS
	JSON, Events bool
	Job          string
}

// StatusFlags returns the flag set of `iteris status` bound to o.
func StatusFlags(o *Status) *flag.FlagSet {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	o.NATS.flags(fs)
	fs.BoolVar(&o.JSON, "json", false, "print the status as JSON")
	fs.BoolVar(&o.Events, "events", false, "also print each job's events: which leader dispatched, committed, failed or ignored which task attempt")
	return fs
}

// Validate checks the options; pos are the positional arguments ([JOB]).
func (o *Status) Validate(pos []string) error {
	if err := o.NATS.validate(); err != nil {
		return err
	}
	switch len(pos) {
	case 0:
	case 1:
		if err := protocol.ValidateJobID(pos[0]); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
		o.Job = pos[0]
	default:
		return fmt.Errorf("%w: status [JOB] --nats URL (got %d arguments)", ErrUsage, len(pos))
	}
	return nil
}

// ParseInterspersed parses flags that may come before, between or after positional arguments.
func ParseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// Check parses and validates the arguments of a cluster command (args[0] is the command) without
// running it: what a manifest check asks.
func Check(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", ErrUsage)
	}
	var fs *flag.FlagSet
	var validate func(pos []string) error
	switch args[0] {
	case "coordinator":
		o := &Coordinator{}
		fs, validate = CoordinatorFlags(o), func(pos []string) error { return noArgs(pos, o.Validate) }
	case "worker":
		o := &Worker{}
		fs, validate = WorkerFlags(o), func(pos []string) error { return noArgs(pos, o.Validate) }
	case "submit":
		o := &Submit{}
		fs, validate = SubmitFlags(o), o.Validate
	case "status":
		o := &Status{}
		fs, validate = StatusFlags(o), o.Validate
	default:
		return fmt.Errorf("%w: %q is not a cluster command", ErrUsage, args[0])
	}
	fs.SetOutput(io.Discard)
	pos, err := ParseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	return validate(pos)
}

func noArgs(pos []string, validate func() error) error {
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, pos)
	}
	return validate()
}
