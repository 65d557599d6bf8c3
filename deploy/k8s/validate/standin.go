package validate

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// standIn is one self-signed certificate and its key, written in place of every file of a
// mounted Secret when a NATS configuration is parsed (the real ones are created apart).
var standInCert struct {
	once      sync.Once
	cert, key []byte
	err       error
}

func standInPEM() ([]byte, []byte, error) {
	standInCert.once.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			standInCert.err = err
			return
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stand-in"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"stand-in"},
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			standInCert.err = err
			return
		}
		kd, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			standInCert.err = err
			return
		}
		standInCert.cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		standInCert.key = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
	})
	return standInCert.cert, standInCert.key, standInCert.err
}

// writeStandIns writes files (paths relative to dir) as the stand-in key (names with "key" in
// them) or certificate (every other name).
func writeStandIns(dir string, files []string) error {
	cert, key, err := standInPEM()
	if err != nil {
		return err
	}
	for _, f := range files {
		file := filepath.Join(dir, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return err
		}
		b := cert
		if strings.Contains(strings.ToLower(filepath.Base(f)), "key") {
			b = key
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
