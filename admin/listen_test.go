package admin

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/internal/testcert"
	"github.com/xlbproject/xlb/internal/testenv"
)

// TestListen: a stale socket file is replaced, a live one and a file that
// is no socket are refused, the socket is 0660 in a new directory of 0750.
func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "admin.sock")
	l, err := Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("directory: %v %v", fi.Mode(), err)
	}
	if _, err := Listen(path, ""); err == nil || !strings.Contains(err.Error(), "another xlbd answers on") {
		t.Errorf("a live socket: %v", err)
	}
	// Left behind as by a daemon that was killed.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l, err = Listen(path, "")
	if err != nil {
		t.Fatalf("a stale socket: %v", err)
	}
	l.Close()

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file, ""); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("a file: %v", err)
	}
	if _, err := Listen(filepath.Join(dir, "x.sock"), "no-such-group-xlb"); err == nil {
		t.Error("an unknown group was taken")
	}
}

// TestListenTCP: without TLS, a loopback address is served and any other
// refused with the fix named; with TLS, a client without a certificate,
// or with one no client CA signed, fails the handshake, and one with a
// certificate the client CA signed is served.
func TestListenTCP(t *testing.T) {
	var log testenv.Buffer
	serve := func(l net.Listener) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Serve(ctx, l, Handler(&fake{overrides: map[string]Override{}, gen: 3}), slog.New(slog.NewTextHandler(&log, nil)))
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	status := func(c *Client) error {
		var st Status
		err := c.Get(context.Background(), "/v1/status", &st)
		if err == nil && st.Generation != 3 {
			return fmt.Errorf("status %+v", st)
		}
		return err
	}

	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "localhost:0"} {
		l, err := ListenTCP(addr, TLSFiles{})
		if err != nil {
			if addr == "[::1]:0" && strings.Contains(err.Error(), "cannot assign") {
				continue // no IPv6 loopback here
			}
			t.Fatalf("%s: %v", addr, err)
		}
		serve(l)
		c, err := NewTCPClient("http://"+l.Addr().String(), "", "", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := status(c); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "[::]:0", "example.com:80"} {
		_, err := ListenTCP(addr, TLSFiles{})
		if err == nil || !strings.Contains(err.Error(), "is not a loopback address") ||
			!strings.Contains(err.Error(), "-admin-tls-cert, -admin-tls-key and -admin-tls-client-ca") {
			t.Errorf("%s without TLS: %v", addr, err)
		}
	}
	if _, err := ListenTCP("127.0.0.1", TLSFiles{}); err == nil || !strings.Contains(err.Error(), "want HOST:PORT") {
		t.Errorf("no port: %v", err)
	}

	dir := t.TempDir()
	ca := testcert.NewCA(t, dir, "ca")
	ca.Sign("server")
	ca.Sign("client")
	testcert.NewCA(t, dir, "otherca").Sign("stranger")
	file := func(name string) string { return filepath.Join(dir, name) }
	if _, err := ListenTCP("0.0.0.0:0", TLSFiles{Cert: file("server.pem"), Key: file("server.key")}); err == nil ||
		!strings.Contains(err.Error(), "missing -admin-tls-client-ca") {
		t.Errorf("TLS without a client CA: %v", err)
	}
	// Any address is taken with TLS; the test listens on loopback all the same.
	l, err := ListenTCP("127.0.0.1:0", TLSFiles{Cert: file("server.pem"), Key: file("server.key"), ClientCA: file("ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	serve(l)
	url := "https://" + l.Addr().String()
	for _, c := range []struct{ cert, key, ca, want string }{
		{"", "", file("ca.pem"), "pass --tls-cert and --tls-key"},
		{file("stranger.pem"), file("stranger.key"), file("ca.pem"), "pass --tls-cert and --tls-key"},
		{file("client.pem"), file("client.key"), "", "pass --tls-ca"},
		{file("client.pem"), file("client.key"), file("ca.pem"), ""},
	} {
		cl, err := NewTCPClient(url, c.cert, c.key, c.ca)
		if err != nil {
			t.Fatal(err)
		}
		err = status(cl)
		if (c.want == "" && err != nil) || (c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want))) {
			t.Errorf("client cert %q, CA %q: %v, want %q", c.cert, c.ca, err, c.want)
		}
	}
	if !strings.Contains(log.String(), `level=WARN msg="http: TLS handshake error from 127.0.0.1:`) {
		t.Errorf("the refused handshakes were not logged as warnings:\n%s", log.String())
	}
	// TLS 1.2 is refused: the listener takes 1.3 only.
	cert, err := tls.LoadX509KeyPair(file("client.pem"), file("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := certPool(file("ca.pem"), "ca")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{MaxVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}})
	if err == nil {
		conn.Close()
		t.Error("a TLS 1.2 handshake succeeded")
	}
	if _, err := NewTCPClient("http://127.0.0.1:1", file("client.pem"), file("client.key"), ""); err == nil {
		t.Error("client certificates were taken for http://")
	}
	if _, err := NewTCPClient("ftp://127.0.0.1:1", "", "", ""); err == nil || !strings.Contains(err.Error(), "want http://HOST:PORT") {
		t.Errorf("ftp://: %v", err)
	}
}
