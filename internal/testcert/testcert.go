// Package testcert makes certificates for tests of TLS: a CA, and the
// certificates it signs, written as PEM files into the test's directory.
package testcert

import (
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
	"sync/atomic"
	"testing"
	"time"
)

// serial numbers the certificates of one test binary: a CA must not sign
// two with the same, and a verifier may cache by it.
var serial atomic.Int64

// CA is a certificate authority made for a test.
type CA struct {
	t    testing.TB
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// File is the CA's certificate (PEM), for a verifier's trust.
	File string
}

// NewCA writes a new CA's certificate and key as dir/name.pem and
// dir/name.key. It is valid from an hour ago for a day.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	ca := &CA{t: t, dir: dir}
	tmpl := template(name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign
	ca.cert, ca.key = tmpl, newKey(t)
	ca.File, _ = ca.write(name, tmpl, ca.key)
	return ca
}

// Sign writes a certificate the CA signed, and its key, as dir/name.pem
// and dir/name.key, and returns the two files. Its common name is name; it
// is for 127.0.0.1, ::1, localhost and dnsNames, and usable by a server
// and by a client.
func (ca *CA) Sign(name string, dnsNames ...string) (cert, key string) {
	ca.t.Helper()
	tmpl := template(name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	tmpl.DNSNames = append([]string{"localhost"}, dnsNames...)
	return ca.write(name, tmpl, newKey(ca.t))
}

func template(name string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
}

// write signs tmpl for key with the CA (tmpl itself signs a new CA) and
// writes both files.
func (ca *CA) write(name string, tmpl *x509.Certificate, key *ecdsa.PrivateKey) (cert, keyFile string) {
	t := ca.t
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("testcert: %s: %v", name, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+".key")
	writePEM(t, cert, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	return cert, keyFile
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, name, typ string, der []byte) {
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
