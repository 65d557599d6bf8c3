package clustertest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iteris-dev/iteris/internal/embedded"
	"github.com/iteris-dev/iteris/protocol"
)

// quickConfig is a data-aware merge that exercises every kind of traffic (the calibration ring,
// both streams between shards, factors, records, the output files) in a fraction of merge4's time.
func quickConfig(t *testing.T) string {
	t.Helper()
	c := "base_model: testdata/tiny-skills/model\nmethod: iteris\nadapters:\n"
	for _, n := range []string{"rev", "upc", "nxt", "srt"} {
		c += "  - {name: " + n + ", path: testdata/tiny-skills/adapters/" + n + ", calibration: testdata/tiny-skills/data/" + n + "/calib.jsonl}\n"
	}
	c += "parameters: {objective: full, schedule: sweep, samples: 8}\n"
	path := filepath.Join(t.TempDir(), "quick.yaml")
	if err := os.WriteFile(path, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// embeddedRun runs a config file through the embedded cluster and returns its adapter.
func embeddedRun(t *testing.T, path string, workers int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := embedded.New(embedded.Config{Workers: workers, Version: "test", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Client().Submit(ctx, protocol.Submit{Config: b, Path: path, Dir: Root(), Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client().Wait(ctx, job, nil); err != nil {
		t.Fatal(err)
	}
	files, err := c.Client().Fetch(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name == "adapter_model.safetensors" {
			return f.Data
		}
	}
	t.Fatal("no adapter_model.safetensors")
	return nil
}

// runIteris runs one iteris command to its end and returns its exit code and output.
func runIteris(t *testing.T, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Dir = Root()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("iteris %s did not end within %s (it must refuse at once):\n%s", strings.Join(args, " "), timeout, out)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestSecureClusterMatchesEmbedded runs the loopback cluster (3 coordinators with mutual-TLS raft,
// 2 workers, iteris submit --wait) against a nats-server that requires TLS with client
// certificates and the least-privilege users of deploy/nats/iteris.conf: the adapter is the
// embedded run's, byte for byte. Clients without credentials, with a wrong password or without
// the CA are refused at once, with errors that say what was wrong.
func TestSecureClusterMatchesEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a nats-server and six iteris processes")
	}
	cfg := quickConfig(t)
	want := embeddedRun(t, cfg, 2)
	sec := NewSecure(t)
	c := StartCluster(t, Options{Coordinators: 3, Workers: 2, NATS: sec.NATSOptions(), Args: sec.Args})
	out := filepath.Join(t.TempDir(), "out")
	got := waitSubmit(t, c.Submit(cfg, out, "--workers", "2"), out)
	if !bytes.Equal(got, want) {
		t.Fatalf("adapter_model.safetensors from the secured cluster (%d bytes) differs from the embedded run's (%d bytes)", len(got), len(want))
	}
	for _, p := range c.Coordinators {
		if !strings.Contains(p.Log(), "raft_tls=true") || !strings.Contains(p.Log(), "nats_auth=\"user coordinator and client certificate") {
			t.Errorf("%s does not log raft TLS and its NATS user:\n%s", p.Name, p.Log())
		}
	}

	url, ca := c.NATS.URL(), sec.NATSCA.File
	client := sec.Roles["client"]
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("guess\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := []string{"--nats-cert", client.Cert.CertFile, "--nats-key", client.Cert.KeyFile}
	refused := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no credentials", []string{"status", "--nats", url}, 1,
			"no NATS credentials: give --nats-creds, --nats-nkey, --nats-user with --nats-password-file"},
		{"no credentials, --insecure", []string{"status", "--nats", url, "--nats-ca", ca, "--insecure"}, 1,
			"connecting to NATS at " + url + " with no credentials: "}, // then the TLS error, which races
		{"no credentials, --insecure (explained)", []string{"status", "--nats", url, "--nats-ca", ca, "--insecure"}, 1,
			": the server requires a client certificate signed by its CA (--nats-cert, --nats-key)"},
		{"a client certificate but no user", append([]string{"status", "--nats", url, "--nats-ca", ca}, cert...), 1,
			"with client certificate " + client.Cert.CertFile + ": nats: Authorization Violation: the server refused these credentials"},
		{"wrong password", append([]string{"status", "--nats", url, "--nats-ca", ca, "--nats-user", "client", "--nats-password-file", wrong}, cert...), 1,
			"with user client and client certificate " + client.Cert.CertFile + ": nats: Authorization Violation: the server refused these credentials"},
		{"no client certificate", []string{"status", "--nats", url, "--nats-ca", ca, "--nats-user", "client", "--nats-password-file", client.PasswordFile}, 1,
			"the server requires a client certificate signed by its CA"},
		{"without the CA", append([]string{"worker", "--id", "w9", "--memory", "1GiB", "--nats", url, "--nats-user", "worker", "--nats-password-file", sec.Roles["worker"].PasswordFile}, cert...), 1,
			"certificate signed by unknown authority"},
		{"credentials in the URL", []string{"submit", cfg, out, "--nats", strings.Replace(url, "tls://", "tls://client:"+client.Password+"@", 1)}, 2,
			"holds credentials, which every user of the machine can read in the process list"},
		{"plain raft on another interface", []string{"coordinator", "--id", "c9", "--data-dir", t.TempDir(), "--raft-addr", "192.0.2.1:7000",
			"--nats", url, "--nats-ca", ca, "--nats-user", "coordinator", "--nats-password-file", sec.Roles["coordinator"].PasswordFile}, 2,
			"--raft-addr 192.0.2.1:7000 is reachable from other machines and raft has no TLS"},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			code, log := runIteris(t, 30*time.Second, tc.args...)
			if code != tc.code || !strings.Contains(log, tc.want) {
				t.Fatalf("exit %d, output:\n%s\nwant exit %d and %q", code, log, tc.code, tc.want)
			}
			if strings.Contains(log, client.Password) {
				t.Fatalf("the output shows the password:\n%s", log)
			}
		})
	}
	code, log := runIteris(t, 30*time.Second, append([]string{"status", "--nats", url, "--nats-ca", ca, "--nats-user", "client", "--nats-password-file", client.PasswordFile}, cert...)...)
	if code != 0 || !strings.Contains(log, "done") {
		t.Fatalf("status as the client user: exit %d:\n%s", code, log)
	}
}
