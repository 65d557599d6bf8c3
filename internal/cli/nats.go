package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

// The environment variables a secret may come from instead of a file (a Kubernetes Secret as
// env). Secrets are never taken from the command line, where any user of the machine sees them.
const (
	// EnvPassword holds the password of --nats-user when --nats-password-file is not given.
	EnvPassword = "ITERIS_NATS_PASSWORD"
	// EnvToken holds the NATS token when --nats-token-file is not given.
	EnvToken = "ITERIS_NATS_TOKEN"
)

// InboxPrefix is the reply-subject prefix of a role's connections (role "coordinator", "worker"
// or "client"): _INBOX.iteris-<role>. A NATS account can then let each role subscribe to its own
// replies only (deploy/nats/iteris.conf).
func InboxPrefix(role string) string { return "_INBOX.iteris-" + role }

// ErrNoCredentials is returned by NATS.Options when no credentials are given and --insecure is
// not set.
var ErrNoCredentials = errors.New("no NATS credentials")

// NATS holds the NATS connection flags every cluster command has: the server URLs, one way to
// authenticate (user and password, token, nkey seed, or a .creds file; or a client certificate),
// and TLS.
type NATS struct {
	// URL is --nats (a comma-separated list of nats:// or tls:// URLs, without credentials).
	URL string
	// User is --nats-user; its password comes from PasswordFile or $ITERIS_NATS_PASSWORD.
	User, PasswordFile string
	// TokenFile is --nats-token-file (else $ITERIS_NATS_TOKEN).
	TokenFile string
	// NKeyFile is --nats-nkey, a file holding a user nkey seed ("SU...").
	NKeyFile string
	// CredsFile is --nats-creds, a decentralized-auth credentials file (user JWT and seed).
	CredsFile string
	// CAFile, CertFile and KeyFile are --nats-ca, --nats-cert and --nats-key: the CA the server
	// is verified with, and this client's certificate (for servers that verify clients).
	CAFile, CertFile, KeyFile string
	// Insecure is --insecure: connect without credentials (and, for a coordinator, serve raft
	// without TLS on a non-loopback address).
	Insecure bool
}

func (n *NATS) flags(fs *flag.FlagSet) {
	fs.StringVar(&n.URL, "nats", "", "NATS server URL(s), comma-separated (nats://host:4222 or tls://host:4222)")
	fs.StringVar(&n.User, "nats-user", "", "NATS user name (the password comes from --nats-password-file or $"+EnvPassword+")")
	fs.StringVar(&n.PasswordFile, "nats-password-file", "", "file holding the NATS password of --nats-user")
	fs.StringVar(&n.TokenFile, "nats-token-file", "", "file holding a NATS token (or set $"+EnvToken+")")
	fs.StringVar(&n.NKeyFile, "nats-nkey", "", "file holding a NATS user nkey seed")
	fs.StringVar(&n.CredsFile, "nats-creds", "", "NATS credentials file (.creds: user JWT and nkey seed)")
	fs.StringVar(&n.CAFile, "nats-ca", "", "PEM file of the CA that signed the NATS server's certificate")
	fs.StringVar(&n.CertFile, "nats-cert", "", "PEM client certificate for NATS servers that verify clients (with --nats-key)")
	fs.StringVar(&n.KeyFile, "nats-key", "", "PEM private key of --nats-cert")
	fs.BoolVar(&n.Insecure, "insecure", false, "allow a NATS connection without credentials (and a coordinator's raft without TLS on a non-loopback address)")
}

// validate checks the flags on their own (no files are read and no environment is consulted, so
// a manifest check gives the same answer on any machine).
func (n *NATS) validate() error {
	if n.URL == "" {
		return fmt.Errorf("%w: --nats is required", ErrUsage)
	}
	for _, u := range strings.Split(n.URL, ",") {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			return fmt.Errorf("%w: --nats %q: want nats://HOST:PORT or tls://HOST:PORT", ErrUsage, u)
		}
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			return fmt.Errorf("%w: --nats %q: want nats://HOST:PORT or tls://HOST:PORT", ErrUsage, u)
		}
		if pu.User != nil {
			return fmt.Errorf("%w: --nats %q holds credentials, which every user of the machine can read in the process list: use --nats-user with --nats-password-file (or $%s), --nats-token-file, --nats-nkey or --nats-creds",
				ErrUsage, pu.Redacted(), EnvPassword)
		}
	}
	methods := 0
	for _, f := range []string{n.User, n.TokenFile, n.NKeyFile, n.CredsFile} {
		if f != "" {
			methods++
		}
	}
	if methods > 1 {
		return fmt.Errorf("%w: give one of --nats-user, --nats-token-file, --nats-nkey and --nats-creds", ErrUsage)
	}
	if n.PasswordFile != "" && n.User == "" {
		return fmt.Errorf("%w: --nats-password-file needs --nats-user", ErrUsage)
	}
	if (n.CertFile == "") != (n.KeyFile == "") {
		return fmt.Errorf("%w: --nats-cert and --nats-key go together", ErrUsage)
	}
	return nil
}

// Auth describes how the connection authenticates, for logs and errors ("user iteris", "token",
// "nkey seed FILE", "credentials FILE", "client certificate FILE", "no credentials").
func (n *NATS) Auth(getenv func(string) string) string {
	var parts []string
	switch {
	case n.User != "":
		parts = append(parts, "user "+n.User)
	case n.NKeyFile != "":
		parts = append(parts, "nkey seed "+n.NKeyFile)
	case n.CredsFile != "":
		parts = append(parts, "credentials "+n.CredsFile)
	case n.TokenFile != "" || getenv(EnvToken) != "":
		parts = append(parts, "token")
	}
	if n.CertFile != "" {
		parts = append(parts, "client certificate "+n.CertFile)
	}
	if len(parts) == 0 {
		return "no credentials"
	}
	return strings.Join(parts, " and ")
}

// Options returns the nats options of the flags: the credentials (secrets read from their files
// or the environment through getenv) and TLS. Without any credentials it returns
// ErrNoCredentials unless --insecure is set. Errors name the flag and the file.
func (n *NATS) Options(getenv func(string) string) ([]nats.Option, error) {
	var opts []nats.Option
	authed := false
	add := func(o nats.Option) { opts, authed = append(opts, o), true }
	envPass, envToken := getenv(EnvPassword), getenv(EnvToken)
	switch {
	case n.User != "":
		pass := envPass
		if n.PasswordFile != "" {
			b, err := readSecret("--nats-password-file", n.PasswordFile)
			if err != nil {
				return nil, err
			}
			pass = b
		}
		if pass == "" {
			return nil, fmt.Errorf("--nats-user %s has no password: give --nats-password-file FILE or set $%s", n.User, EnvPassword)
		}
		add(nats.UserInfo(n.User, pass))
	case n.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(n.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", n.NKeyFile, err)
		}
		add(o)
	case n.CredsFile != "":
		if err := checkCreds(n.CredsFile); err != nil {
			return nil, err
		}
		add(nats.UserCredentials(n.CredsFile))
	case n.TokenFile != "":
		tok, err := readSecret("--nats-token-file", n.TokenFile)
		if err != nil {
			return nil, err
		}
		add(nats.Token(tok))
	case envToken != "":
		add(nats.Token(envToken))
	}
	if envPass != "" && n.User == "" {
		return nil, fmt.Errorf("$%s is set but --nats-user is not: give the user name", EnvPassword)
	}
	if envToken != "" && (n.User != "" || n.NKeyFile != "" || n.CredsFile != "" || n.TokenFile != "") {
		return nil, fmt.Errorf("$%s is set as well as other NATS credentials: give one", EnvToken)
	}
	if n.CAFile != "" || n.CertFile != "" || anyTLS(n.URL) {
		cfg, err := loadTLS(tlsFiles{"--nats-ca", n.CAFile, "--nats-cert", n.CertFile, "--nats-key", n.KeyFile})
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
		authed = authed || n.CertFile != ""
	}
	if !authed && !n.Insecure {
		return nil, fmt.Errorf("%w: give --nats-creds, --nats-nkey, --nats-user with --nats-password-file (or $%s), --nats-token-file (or $%s), or a client certificate (--nats-cert and --nats-key); --insecure connects without",
			ErrNoCredentials, EnvPassword, EnvToken)
	}
	return opts, nil
}

func anyTLS(urls string) bool {
	for _, u := range strings.Split(urls, ",") {
		if strings.HasPrefix(u, "tls://") {
			return true
		}
	}
	return false
}

// readSecret reads a secret file, without its trailing line break.
func readSecret(what, path string) (string, error) {
	b, err := readSmall(what, path, 64<<10)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", what, path)
	}
	return s, nil
}

// readSmall reads a file of at most limit bytes; errors name the flag.
func readSmall(what, path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s %s: larger than %d bytes", what, path, limit)
	}
	return b, nil
}

// checkCreds checks that a .creds file is readable and holds a user JWT and an nkey seed (the
// nats client parses it again at every connect).
func checkCreds(path string) error {
	b, err := readSmall("--nats-creds", path, 64<<10)
	if err != nil {
		return err
	}
	for _, want := range []string{"-----BEGIN NATS USER JWT-----", "-----BEGIN USER NKEY SEED-----"} {
		if !strings.Contains(string(b), want) {
			return fmt.Errorf("--nats-creds %s: no %q block: not a NATS credentials file", path, strings.Trim(want, "- "))
		}
	}
	return nil
}

// Dial connects to NATS with the flags' credentials and TLS, named name (what the server's
// monitoring shows), reconnecting for ever once connected. While no server answers (not started
// yet, a name that does not resolve yet) it retries until ctx ends, calling wait (if set) on the
// first failure and every 10 s; a refusal (credentials, TLS) returns at once, naming the URL and
// how the connection authenticated. extra options come last.
func (n *NATS) Dial(ctx context.Context, name string, getenv func(string) string, wait func(error), extra ...nats.Option) (*nats.Conn, error) {
	auth, err := n.Options(getenv)
	if err != nil {
		return nil, err
	}
	opts := append([]nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}, auth...)
	opts = append(opts, extra...)
	var lastNote time.Time
	delay := 100 * time.Millisecond
	for drops := 0; ; {
		nc, err := nats.Connect(n.URL, opts...)
		if err == nil {
			return nc, nil
		}
		err = fmt.Errorf("connecting to NATS at %s with %s: %w", n.URL, n.Auth(getenv), err)
		if dropped(err) {
			drops++
		} else {
			drops = 0
		}
		if refused(err, anyTLS(n.URL), drops) {
			return nil, explain(err, n.Auth(getenv) == "no credentials", n.CertFile == "")
		}
		if wait != nil && time.Since(lastNote) > 10*time.Second {
			wait(err)
			lastNote = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// refused reports whether a connect error ends Dial (a refusal) rather than being retried. A
// connection the server drops may be a server going down (retried), or a TLS 1.3 server refusing
// a client certificate: without TLS it is the first; with TLS it is taken for a refusal once it
// happened maxDrops times in a row.
func refused(err error, tls bool, drops int) bool {
	if dropped(err) {
		return tls && drops >= maxDrops
	}
	return !transient(err)
}

// maxDrops is how many dropped TLS connections in a row Dial takes for a refusal.
const maxDrops = 5

// dropped reports whether a connect error is the connection closed by the other side (reset,
// broken pipe, closed after the TLS handshake, end of file).
func dropped(err error) bool {
	msg := err.Error()
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(msg, "after TLS handshake") || strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset")
}

// transient reports whether a connect error means no server answered (retry) rather than that a
// server refused the connection (credentials, TLS).
func transient(err error) bool {
	if errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) {
		return true
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// explain adds what to check to a refusal. noCert says no client certificate was given:
// a TLS 1.3 server that requires one may close the connection before its alert reaches
// the client, which then sees a broken pipe or reset right after the handshake.
func explain(err error, anonymous, noCert bool) error {
	switch {
	case (errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired)) && anonymous:
		return fmt.Errorf("%w: the server requires credentials (--nats-user, --nats-creds, --nats-nkey, --nats-token-file)", err)
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired):
		return fmt.Errorf("%w: the server refused these credentials (see --nats-user, --nats-creds, --nats-nkey, --nats-token-file)", err)
	case errors.Is(err, nats.ErrSecureConnRequired):
		return fmt.Errorf("%w: the server requires TLS (use a tls:// URL and --nats-ca)", err)
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("%w: the server does not offer TLS", err)
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return fmt.Errorf("%w: the server's certificate is not signed by --nats-ca (or names another host)", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") || (noCert && dropped(err)) {
		return fmt.Errorf("%w: the server requires a client certificate signed by its CA (--nats-cert, --nats-key)", err)
	}
	return err
}
