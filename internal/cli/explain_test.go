package cli

import (
	"errors"
	"strings"
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
