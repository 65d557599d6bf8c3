package natstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestKillRestartKeepsPortAndStore(t *testing.T) {
	s := Start(t, Options{})
	port := s.Port()
	if port <= 0 || s.URL() != "nats://127.0.0.1:"+itoa(port) {
		t.Fatalf("port %d, url %s", port, s.URL())
	}
	nc := s.Connect()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "K", Subjects: []string{"k"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "k", []byte("before")); err != nil {
		t.Fatal(err)
	}

	s.Kill()
	if s.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := nats.Connect(s.URL(), nats.Timeout(500*time.Millisecond), nats.NoReconnect()); err == nil {
		t.Fatal("connected to a killed server")
	}
	s.Restart()
	if s.Port() != port {
		t.Fatalf("port %d after restart, want %d", s.Port(), port)
	}
	js2, _ := jetstream.New(s.Connect())
	st, err := js2.Stream(ctx, "K")
	if err != nil {
		t.Fatalf("stream after kill + restart: %v", err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, "k")
	if err != nil || string(msg.Data) != "before" {
		t.Fatalf("message after kill + restart: %v, %v", msg, err)
	}

	s.Stop()
	if s.Running() {
		t.Fatal("running after Stop")
	}
	s.Restart()
	if s.Port() != port || !s.Running() {
		t.Fatalf("after Stop + Restart: port %d running %v", s.Port(), s.Running())
	}
}

func TestUserPassword(t *testing.T) {
	s := Start(t, Options{User: "iteris", Password: "s3cret"})
	if _, err := nats.Connect(s.URL(), nats.NoReconnect()); err == nil {
		t.Fatal("connected without credentials")
	}
	if _, err := nats.Connect(s.URL(), nats.UserInfo("iteris", "wrong"), nats.NoReconnect()); err == nil {
		t.Fatal("connected with a wrong password")
	}
	s.Connect() // with ClientOptions
}

func TestTLS(t *testing.T) {
	tl := writeCerts(t, t.TempDir())
	s := Start(t, Options{TLS: tl})
	if s.URL()[:6] != "tls://" {
		t.Fatalf("url %s", s.URL())
	}
	if _, err := nats.Connect("nats://127.0.0.1:"+itoa(s.Port()), nats.NoReconnect()); err == nil {
		t.Fatal("connected without the CA")
	}
	s.Connect()

	tl.Verify = true
	v := Start(t, Options{TLS: tl})
	if _, err := nats.Connect(v.URL(), nats.RootCAs(tl.CAFile), nats.NoReconnect()); err == nil {
		t.Fatal("connected without a client certificate to a verifying server")
	}
	v.Connect()
}

func TestExtraConfig(t *testing.T) {
	s := Start(t, Options{Config: "max_payload: 2MB\n"})
	if got := s.Connect().MaxPayload(); got != 2<<20 {
		t.Fatalf("max payload %d, want 2 MiB from the extra config", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client certificate.
func writeCerts(t *testing.T, dir string) *TLS {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "natstest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kb)
	}
	tl := &TLS{CAFile: writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)}
	tl.CertFile, tl.KeyFile = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	tl.ClientCertFile, tl.ClientKeyFile = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return tl
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
