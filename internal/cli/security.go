package cli

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

// tlsFiles names the PEM files of one TLS setup and the flags they came from.
type tlsFiles struct {
	caFlag, ca, certFlag, cert, keyFlag, key string
}

// loadTLS reads a TLS setup: the CA pool peers are verified with (the system's when ca is ""),
// and this side's certificate (none when cert is ""). Errors name the flag and the file.
func loadTLS(f tlsFiles) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		pem, err := readSmall(f.caFlag, f.ca, 4<<20)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s %s: no PEM certificate in it", f.caFlag, f.ca)
		}
		cfg.RootCAs = pool
	}
	if f.cert != "" {
		pair, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("%s %s with %s %s: %w", f.certFlag, f.cert, f.keyFlag, f.key, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// isLoopback reports whether a HOST:PORT address binds only the loopback interface (a loopback IP
// or "localhost"); a host name is not resolved, so it counts as reachable from outside.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (o *Coordinator) securityFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.InputsFlag, "inputs", "", "directories (comma-separated) every path of a submitted config must lie in; empty: any path this process can read")
	fs.StringVar(&o.RaftCA, "raft-ca", "", "PEM file of the CA that signs every coordinator's raft certificate (mutual TLS between coordinators)")
	fs.StringVar(&o.RaftCert, "raft-cert", "", "PEM certificate of this coordinator's raft address (server and client use), with --raft-key")
	fs.StringVar(&o.RaftKey, "raft-key", "", "PEM private key of --raft-cert")
}

// validateSecurity checks --inputs, that the raft TLS files come together, and refuses a raft
// address that is reachable from other machines without TLS unless --insecure is set.
func (o *Coordinator) validateSecurity() error {
	o.Inputs = nil
	for _, d := range strings.Split(o.InputsFlag, ",") {
		if d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			return fmt.Errorf("%w: --inputs %q: want absolute directories", ErrUsage, d)
		}
		o.Inputs = append(o.Inputs, filepath.Clean(d))
	}
	n := 0
	for _, f := range []string{o.RaftCA, o.RaftCert, o.RaftKey} {
		if f != "" {
			n++
		}
	}
	if n != 0 && n != 3 {
		return fmt.Errorf("%w: --raft-ca, --raft-cert and --raft-key go together (mutual TLS needs all three)", ErrUsage)
	}
	if n == 0 && !o.Insecure && !isLoopback(o.RaftAddr) {
		return fmt.Errorf("%w: --raft-addr %s is reachable from other machines and raft has no TLS: give --raft-ca, --raft-cert and --raft-key (mutual TLS between the coordinators), or --insecure", ErrUsage, o.RaftAddr)
	}
	return nil
}

// RaftTLS returns the raft TLS setup of --raft-ca, --raft-cert and --raft-key (nil without
// them): this coordinator's certificate and the CA its peers' certificates must chain to.
func (o *Coordinator) RaftTLS() (*tls.Config, error) {
	if o.RaftCert == "" {
		return nil, nil
	}
	cfg, err := loadTLS(tlsFiles{"--raft-ca", o.RaftCA, "--raft-cert", o.RaftCert, "--raft-key", o.RaftKey})
	if err != nil {
		return nil, err
	}
	return cfg, nil
}
