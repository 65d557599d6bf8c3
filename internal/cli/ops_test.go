package cli

import (
	"errors"
	"strings"
	"testing"
)

// The operations flags of the long-running commands, through Check (what the manifest
// validation in deploy/k8s calls).
func TestCheckOpsFlags(t *testing.T) {
	coord := []string{"coordinator", "--id", "c0", "--data-dir", "/data", "--raft-addr", "c0.raft:7000", "--nats", "nats://nats:4222", "--insecure"}
	work := []string{"worker", "--id", "w0", "--memory", "2GiB", "--nats", "nats://nats:4222"}
	for _, c := range []struct {
		args []string
		err  string // "" when accepted
	}{
		{append(coord, "--metrics-addr", ":9090"), ""},
		{append(coord, "--metrics-addr", "0.0.0.0:9090"), ""},
		{append(coord, "--metrics-addr", "9090"), `--metrics-addr "9090"`},
		{append(work, "--metrics-addr", ":9091", "--exit-after-job"), ""},
		{append(work, "--metrics-addr", "localhost"), `--metrics-addr "localhost"`},
		{append(work, "--exit-after-job=false"), ""},
		{append(work, "--exit-after-jobs"), "flag provided but not defined: -exit-after-jobs"},
		{append(coord, "--exit-after-job"), "flag provided but not defined: -exit-after-job"},
		{[]string{"submit", "c.yaml", "out", "--nats", "nats://n:4222", "--metrics-addr", ":1"}, "flag provided but not defined: -metrics-addr"},
	} {
		err := Check(c.args)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("Check(%q): %v", c.args, err)
		case c.err != "" && (err == nil || !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), c.err)):
			t.Errorf("Check(%q): %v, want a usage error with %q", c.args, err, c.err)
		}
	}
}

func TestWorkerOpsOptions(t *testing.T) {
	o := &Worker{}
	fs := WorkerFlags(o)
	if err := fs.Parse([]string{"--id", "w0", "--memory", "1GiB", "--nats", "nats://n:4222", "--metrics-addr", "127.0.0.1:0", "--exit-after-job"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.MetricsAddr != "127.0.0.1:0" || !o.ExitAfterJob || o.Memory != 1<<30 {
		t.Fatalf("options %+v", o)
	}
}
