package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheck runs command lines through Check: what a manifest check sees.
func TestCheck(t *testing.T) {
	coord := []string{"coordinator", "--id", "c0", "--data-dir", "/data", "--raft-addr", "127.0.0.1:7000", "--nats", "nats://n:4222"}
	worker := []string{"worker", "--id", "w0", "--memory", "4GiB", "--nats", "tls://n:4222"}
	with := func(base []string, extra ...string) []string { return append(append([]string{}, base...), extra...) }
	tests := []struct {
		name string
		args []string
		want string // "" = valid
	}{
		{"coordinator on loopback", coord, ""},
		{"coordinator with user", with(coord, "--nats-user", "iteris", "--nats-password-file", "/s/p"), ""},
		{"coordinator off loopback", with(coord, "--raft-addr", "10.0.0.5:7000"), "--raft-addr 10.0.0.5:7000 is reachable from other machines and raft has no TLS"},
		{"coordinator host name", with(coord, "--raft-addr", "c0.coord.svc:7000"), "reachable from other machines"},
		{"coordinator off loopback insecure", with(coord, "--raft-addr", "10.0.0.5:7000", "--insecure"), ""},
		{"coordinator off loopback tls", with(coord, "--raft-addr", "10.0.0.5:7000", "--raft-ca", "ca.pem", "--raft-cert", "c.pem", "--raft-key", "k.pem"), ""},
		{"coordinator partial raft tls", with(coord, "--raft-ca", "ca.pem", "--raft-cert", "c.pem"), "--raft-ca, --raft-cert and --raft-key go together"},
		{"coordinator inputs", with(coord, "--inputs", "/models,/data/calib"), ""},
		{"coordinator relative inputs", with(coord, "--inputs", "models"), `--inputs "models": want absolute directories`},
		{"worker creds", with(worker, "--nats-creds", "/s/w.creds", "--nats-ca", "/s/ca.pem"), ""},
		{"worker nkey", with(worker, "--nats-nkey", "/s/w.nk"), ""},
		{"worker token", with(worker, "--nats-token-file", "/s/tok"), ""},
		{"worker client certificate", with(worker, "--nats-cert", "c.pem", "--nats-key", "k.pem"), ""},
		{"worker cert without key", with(worker, "--nats-cert", "c.pem"), "--nats-cert and --nats-key go together"},
		{"two methods", with(worker, "--nats-user", "u", "--nats-creds", "/s/w.creds"), "give one of --nats-user, --nats-token-file, --nats-nkey and --nats-creds"},
		{"password file without user", with(worker, "--nats-password-file", "/s/p"), "--nats-password-file needs --nats-user"},
		{"credentials in the url", with(worker, "--nats", "nats://iteris:s3cret@n:4222"), "holds credentials, which every user of the machine can read"},
		{"credentials in the url are not echoed", with(worker, "--nats", "nats://iteris:s3cret@n:4222"), "nats://iteris:xxxxx@n:4222"},
		{"bad scheme", with(worker, "--nats", "http://n:4222"), "want nats://HOST:PORT or tls://HOST:PORT"},
		{"submit", []string{"submit", "m.yaml", "out", "--nats", "nats://n:4222", "--nats-user", "u", "--wait"}, ""},
		{"status", []string{"status", "--nats", "nats://n:4222", "--insecure"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.args)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check(%q): %v", tc.args, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrUsage) {
				t.Fatalf("Check(%q): %v, want a usage error containing %q", tc.args, err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestOptions resolves credentials from files and the environment; every refusal names the flag
// or variable and what to give instead.
func TestOptions(t *testing.T) {
	pass := writeFile(t, "pass", "s3cret\n")
	empty := writeFile(t, "empty", "\n")
	creds := writeFile(t, "w.creds", "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAM\n------END USER NKEY SEED------\n")
	notCreds := writeFile(t, "x.creds", "hello")
	badCA := writeFile(t, "ca.pem", "not a certificate")
	tests := []struct {
		name  string
		n     NATS
		env   func(string) string
		want  string // "" = options returned
		count int    // options returned
		auth  string
	}{
		{"nothing", NATS{URL: "nats://n:4222"}, env(), "no NATS credentials: give --nats-creds", 0, "no credentials"},
		{"nothing insecure", NATS{URL: "nats://n:4222", Insecure: true}, env(), "", 0, "no credentials"},
		{"password file", NATS{URL: "nats://n:4222", User: "iteris", PasswordFile: pass}, env(), "", 1, "user iteris"},
		{"password from env", NATS{URL: "nats://n:4222", User: "iteris"}, env(EnvPassword, "x"), "", 1, "user iteris"},
		{"user without password", NATS{URL: "nats://n:4222", User: "iteris"}, env(), "--nats-user iteris has no password: give --nats-password-file FILE or set $ITERIS_NATS_PASSWORD", 0, ""},
		{"empty password file", NATS{URL: "nats://n:4222", User: "iteris", PasswordFile: empty}, env(), "is empty", 0, ""},
		{"missing password file", NATS{URL: "nats://n:4222", User: "iteris", PasswordFile: "/nonexistent/p"}, env(), "--nats-password-file: open /nonexistent/p", 0, ""},
		{"token file", NATS{URL: "nats://n:4222", TokenFile: pass}, env(), "", 1, "token"},
		{"token from env", NATS{URL: "nats://n:4222"}, env(EnvToken, "t"), "", 1, "token"},
		{"token env and user", NATS{URL: "nats://n:4222", User: "u", PasswordFile: pass}, env(EnvToken, "t"), "$ITERIS_NATS_TOKEN is set as well as other NATS credentials", 0, ""},
		{"password env without user", NATS{URL: "nats://n:4222", TokenFile: pass}, env(EnvPassword, "x"), "$ITERIS_NATS_PASSWORD is set but --nats-user is not", 0, ""},
		{"creds", NATS{URL: "nats://n:4222", CredsFile: creds}, env(), "", 1, "credentials " + creds},
		{"not a creds file", NATS{URL: "nats://n:4222", CredsFile: notCreds}, env(), "not a NATS credentials file", 0, ""},
		{"nkey seed that is not one", NATS{URL: "nats://n:4222", NKeyFile: notCreds}, env(), "--nats-nkey " + notCreds, 0, ""},
		{"tls url", NATS{URL: "tls://n:4222", User: "u", PasswordFile: pass}, env(), "", 2, "user u"},
		{"bad CA", NATS{URL: "tls://n:4222", User: "u", PasswordFile: pass, CAFile: badCA}, env(), "--nats-ca " + badCA + ": no PEM certificate in it", 0, ""},
		{"bad client certificate", NATS{URL: "tls://n:4222", CertFile: badCA, KeyFile: badCA}, env(), "--nats-cert " + badCA + " with --nats-key", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.auth != "" {
				if got := tc.n.Auth(tc.env); got != tc.auth {
					t.Errorf("Auth = %q, want %q", got, tc.auth)
				}
			}
			opts, err := tc.n.Options(tc.env)
			if tc.want == "" {
				if err != nil || len(opts) != tc.count {
					t.Fatalf("Options: %d options, %v; want %d", len(opts), err, tc.count)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Options: %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}
