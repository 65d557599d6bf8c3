package clustertest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/iteris-dev/iteris/internal/cli"
	"github.com/iteris-dev/iteris/internal/natsserver/natstest"
	"github.com/iteris-dev/iteris/internal/testcerts"
)

// PermissionsFile is the least-privilege NATS configuration the docs describe (relative to the
// repository root).
const PermissionsFile = "deploy/nats/iteris.conf"

// Role is one NATS user of the permissions file.
type Role struct {
	// User and Password are the credentials; PasswordFile holds the password.
	User, Password, PasswordFile string
	// Cert is the role's TLS client certificate.
	Cert testcerts.Pair
}

// Secure is a secured setup for a loopback cluster: a nats-server that requires TLS with client
// certificates and a user of PermissionsFile (coordinator, worker or client), and mutual TLS
// between the coordinators.
type Secure struct {
	// NATSCA signs the server's and the clients' certificates; RaftCA the coordinators' raft
	// certificates.
	NATSCA, RaftCA *testcerts.CA
	// Roles maps "coordinator", "worker" and "client" to their users.
	Roles map[string]Role
	dir   string
	t     testing.TB
}

// NewSecure makes the certificates and passwords (in a temporary directory) and sets the
// passwords in the environment, where PermissionsFile reads them (the nats-server inherits it).
func NewSecure(t testing.TB) *Secure {
	t.Helper()
	dir := t.TempDir()
	s := &Secure{NATSCA: testcerts.NewCA(t, dir, "nats"), RaftCA: testcerts.NewCA(t, dir, "raft"), Roles: map[string]Role{}, dir: dir, t: t}
	for _, role := range []string{"coordinator", "worker", "client"} {
		r := Role{User: role, Password: role + "-pw-" + filepath.Base(dir), PasswordFile: filepath.Join(dir, role+".pw")}
		if err := os.WriteFile(r.PasswordFile, []byte(r.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r.Cert = s.NATSCA.Issue(t, role)
		s.Roles[role] = r
		t.Setenv("ITERIS_"+map[string]string{"coordinator": "COORDINATOR", "worker": "WORKER", "client": "CLIENT"}[role]+"_PASSWORD", r.Password)
	}
	return s
}

// NATSOptions returns the nats-server options: TLS with verified client certificates and
// PermissionsFile's users; the harness itself connects as the coordinator.
func (s *Secure) NATSOptions() natstest.Options {
	s.t.Helper()
	conf, err := os.ReadFile(filepath.Join(Root(), PermissionsFile))
	if err != nil {
		s.t.Fatal(err)
	}
	srv := s.NATSCA.Issue(s.t, "server", "127.0.0.1")
	c := s.Roles["coordinator"]
	return natstest.Options{
		TLS: &natstest.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, CAFile: s.NATSCA.File, Verify: true,
			ClientCertFile: c.Cert.CertFile, ClientKeyFile: c.Cert.KeyFile},
		Config: string(conf),
		Client: []nats.Option{nats.UserInfo(c.User, c.Password), nats.CustomInboxPrefix(cli.InboxPrefix("coordinator"))},
	}
}

// ConnectAs connects to srv as a role's user (with its inbox prefix and client certificate);
// errs receives the connection's asynchronous errors (permission violations).
func (s *Secure) ConnectAs(t testing.TB, srv *natstest.Server, role string, errs chan<- error) *nats.Conn {
	t.Helper()
	r := s.Roles[role]
	opts := []nats.Option{nats.UserInfo(r.User, r.Password), nats.RootCAs(s.NATSCA.File), nats.ClientCert(r.Cert.CertFile, r.Cert.KeyFile),
		nats.CustomInboxPrefix(cli.InboxPrefix(role))}
	if errs != nil {
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	}
	nc, err := nats.Connect(srv.URL(), opts...)
	if err != nil {
		t.Fatalf("connecting as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Args returns a process's credentials and TLS flags (Options.Args): its role's user, password
// file and client certificate, and for a coordinator its raft certificate.
func (s *Secure) Args(role, id string) []string {
	if role == "submit" {
		role = "client"
	}
	r := s.Roles[role]
	args := []string{"--nats-user", r.User, "--nats-password-file", r.PasswordFile, "--nats-ca", s.NATSCA.File,
		"--nats-cert", r.Cert.CertFile, "--nats-key", r.Cert.KeyFile}
	if role == "coordinator" {
		p := s.RaftCA.Issue(s.t, id, "127.0.0.1")
		args = append(args, "--raft-ca", s.RaftCA.File, "--raft-cert", p.CertFile, "--raft-key", p.KeyFile)
	}
	return args
}
