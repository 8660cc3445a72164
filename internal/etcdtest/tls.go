package etcdtest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/xlbproject/xlb/internal/testcert"
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
	ca := testcert.NewCA(t, dir, "ca")
	srvCert, srvKey := ca.Sign("server", ServerName)
	cliCert, cliKey := ca.Sign("xlb")
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return TLSFiles{CA: ca.File, Cert: cliCert, Key: cliKey},
		[]string{"--cert-file", srvCert, "--key-file", srvKey, "--trusted-ca-file", ca.File, "--client-cert-auth"},
		&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
}

// WriteCerts writes a fresh CA, with a server and a client certificate it
// signed, into dir, and returns the client's files: for tests of TLS
// settings that need no etcd.
func WriteCerts(t testing.TB, dir string) TLSFiles {
	t.Helper()
	f, _, _ := makeTLS(t, dir)
	return f
}
