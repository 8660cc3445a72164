package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Option changes how Start runs etcd.
type Option func(*Server)

// ServerName is the DNS name in the certificate of an etcd started
// WithTLS (besides 127.0.0.1).
const ServerName = "etcd.xlb.test"

// TLSFiles are the PEM files of an etcd started WithTLS: the CA that
// signs both certificates, and a client certificate with its key.
type TLSFiles struct {
	CA, Cert, Key string
}

// WithTLS serves clients over TLS only (https endpoints) and requires a
// client certificate signed by a CA made for the test (TLS returns the
// files).
func WithTLS() Option {
	return func(s *Server) { s.tlsOn = true }
}

// TLS returns the CA and the client certificate and key of an etcd started
// WithTLS.
func (s *Server) TLS() TLSFiles { return s.tls }

// makeTLS writes a CA, etcd's certificate and key and a client's into dir,
// and returns the client's files and etcd's command-line flags.
func makeTLS(t testing.TB, dir string) (TLSFiles, []string, *tls.Config) {
	t.Helper()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xlb test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("etcdtest: CA: %v", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, prefix string) (string, string) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{ServerName}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatalf("etcdtest: certificate: %v", err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		cert, keyFile := filepath.Join(dir, prefix+".crt"), filepath.Join(dir, prefix+".key")
		writePEM(t, cert, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", kb)
		return cert, keyFile
	}
	caFile := filepath.Join(dir, "ca.crt")
	writePEM(t, caFile, "CERTIFICATE", caDER)
	srvCert, srvKey := leaf(2, ServerName, x509.ExtKeyUsageServerAuth, "server")
	cliCert, cliKey := leaf(3, "xlb", x509.ExtKeyUsageClientAuth, "client")
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return TLSFiles{CA: caFile, Cert: cliCert, Key: cliKey},
		[]string{"--cert-file", srvCert, "--key-file", srvKey, "--trusted-ca-file", caFile, "--client-cert-auth"},
		&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
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

// WriteCerts writes a fresh CA, with a server and a client certificate it
// signed, into dir, and returns the client's files: for tests of TLS
// settings that need no etcd.
func WriteCerts(t testing.TB, dir string) TLSFiles {
	t.Helper()
	f, _, _ := makeTLS(t, dir)
	return f
}
