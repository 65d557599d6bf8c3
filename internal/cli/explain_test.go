package cli

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"
)

// The refusal a user sees names what to give, whichever way the server's refusal arrived.
func TestExplainRefusal(t *testing.T) {
	certHint := "the server requires a client certificate signed by its CA (--nats-cert, --nats-key)"
	for _, c := range []struct {
		name              string
		err               error
		anonymous, noCert bool
		want              string
	}{
		{"alert arrived", errors.New("remote error: tls: certificate required"), true, true, certHint},
		{"closed after the handshake", errors.New("nats: tls error: connection closed by remote after TLS handshake: write: broken pipe"), true, true, certHint},
		{"reset, no certificate", errors.New("read tcp: connection reset by peer"), false, true, certHint},
		{"reset with a certificate", errors.New("read tcp: connection reset by peer"), false, false, "read tcp: connection reset by peer"},
		{"no credentials", nats.ErrAuthorization, true, false, "the server requires credentials"},
		{"wrong credentials", nats.ErrAuthorization, false, false, "the server refused these credentials"},
		{"plain server", nats.ErrSecureConnWanted, false, false, "the server does not offer TLS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := explain(c.err, c.anonymous, c.noCert)
			if !errors.Is(got, c.err) || !strings.Contains(got.Error(), c.want) {
				t.Errorf("explain(%v) = %v, want it wrapped and naming %q", c.err, got, c.want)
			}
		})
	}
}

// A server going down is waited for; a refusal ends the command, a dropped TLS connection once
// it repeats.
func TestRefusedOrRetried(t *testing.T) {
	reset := fmt.Errorf("connecting: %w", &net.OpError{Op: "read", Err: syscall.ECONNRESET})
	for _, c := range []struct {
		name  string
		err   error
		tls   bool
		drops int
		want  bool
	}{
		{"no server", nats.ErrNoServers, false, 0, false},
		{"refused dial", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true, 0, false},
		{"reset, plain", reset, false, 100, false},
		{"reset, TLS, first", reset, true, 1, false},
		{"reset, TLS, repeated", reset, true, maxDrops, true},
		{"closed after the TLS handshake, repeated", errors.New("nats: tls error: connection closed by remote after TLS handshake"), true, maxDrops, true},
		{"authorization", nats.ErrAuthorization, false, 0, true},
		{"certificate alert", errors.New("remote error: tls: certificate required"), true, 0, true},
	} {
		if got := refused(c.err, c.tls, c.drops); got != c.want {
			t.Errorf("%s: refused(%v, tls %v, drops %d) = %v, want %v", c.name, c.err, c.tls, c.drops, got, c.want)
		}
	}
}
