package cli

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/iteris-dev/iteris/internal/natsserver/natstest"
	"github.com/iteris-dev/iteris/internal/testcerts"
)

// TestDial connects to a nats-server that requires a user and TLS: with the flags' credentials
// it connects; every refusal returns at once (no retrying for ever) with an error naming the URL,
// how the client authenticated and what to check.
func TestDial(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t, dir, "nats")
	srv := ca.Issue(t, "server", "127.0.0.1")
	s := natstest.Start(t, natstest.Options{User: "iteris", Password: "s3cret",
		TLS: &natstest.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, CAFile: ca.File}})
	pass := writeFile(t, "pass", "s3cret\n")
	wrong := writeFile(t, "wrong", "guess")
	other := testcerts.NewCA(t, dir, "other")
	url := s.URL()
	tests := []struct {
		name string
		n    NATS
		want string // "" = connects
	}{
		{"user and TLS", NATS{URL: url, User: "iteris", PasswordFile: pass, CAFile: ca.File}, ""},
		{"no credentials", NATS{URL: url, CAFile: ca.File, Insecure: true},
			"connecting to NATS at " + url + " with no credentials: nats: Authorization Violation: the server requires credentials"},
		{"wrong password", NATS{URL: url, User: "iteris", PasswordFile: wrong, CAFile: ca.File},
			"with user iteris: nats: Authorization Violation: the server refused these credentials"},
		{"server certificate of another CA", NATS{URL: url, User: "iteris", PasswordFile: pass, CAFile: other.File},
			"the server's certificate is not signed by --nats-ca"},
		{"plain nats:// to a TLS server without the CA", NATS{URL: strings.Replace(url, "tls://", "nats://", 1), User: "iteris", PasswordFile: pass},
			"certificate signed by unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			t0 := time.Now()
			waited := false
			nc, err := tc.n.Dial(ctx, "test", env(), func(error) { waited = true }, nats.Timeout(5*time.Second))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				nc.Close()
				return
			}
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), tc.want) || waited || ctx.Err() != nil {
				t.Fatalf("Dial: %v (after %s, waited %v); want a refusal containing %q", err, time.Since(t0), waited, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// TestDialWaitsForAServer retries while nothing listens, reporting the wait, until ctx ends.
func TestDialWaitsForAServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var waits []error
	n := NATS{URL: "nats://127.0.0.1:1", Insecure: true}
	_, err := n.Dial(ctx, "test", env(), func(err error) { waits = append(waits, err) })
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, nats.ErrNoServers) || len(waits) != 1 {
		t.Fatalf("Dial: %v after %d waits; want no servers, then the deadline, and one wait report", err, len(waits))
	}
}

// TestDialRefusesWithoutCredentials: no credentials and no --insecure never reaches the network.
func TestDialRefusesWithoutCredentials(t *testing.T) {
	n := NATS{URL: "nats://127.0.0.1:1"}
	_, err := n.Dial(context.Background(), "test", env(), nil)
	if !errors.Is(err, ErrNoCredentials) || !strings.Contains(err.Error(), "--insecure connects without") {
		t.Fatalf("Dial: %v", err)
	}
}
