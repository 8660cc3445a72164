package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultSocket is where xlbd run listens and xlbctl asks by default.
const DefaultSocket = "/run/xlb/admin.sock"

// Listen creates the unix socket at path, readable and writable by its
// owner and group only (0660), the group being group (a name; "" is root's
// group). A missing parent directory is created 0750. A socket file left
// by a process that died is removed, but a socket another process answers
// on is refused: two daemons must not share one.
func Listen(path, group string) (net.Listener, error) {
	gid, err := groupID(group)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, -1, gid); err != nil {
			return nil, err
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket: remove it or pass another -admin-socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another xlbd answers on %s: stop it, or pass another -admin-socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale socket: %w", err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// The directory (0750 when created here) guards the moment between
	// the bind and these.
	if err := os.Chmod(path, 0o660); err == nil {
		err = os.Chown(path, -1, gid)
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// groupID is the gid of group name; "" is root's group, or -1 (the
// creator's, unchanged) when xlbd does not run as root, which may not
// give a file to a group it is not in.
func groupID(name string) (int, error) {
	var g *user.Group
	var err error
	if name == "" && os.Geteuid() != 0 {
		return -1, nil
	}
	if name == "" {
		u, uerr := user.LookupId("0")
		if uerr != nil {
			return 0, nil
		}
		g, err = user.LookupGroupId(u.Gid)
	} else {
		g, err = user.LookupGroup(name)
	}
	if err != nil {
		return 0, fmt.Errorf("admin socket group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}

// Serve serves h on l until ctx ends, then lets the requests in flight
// finish (for up to 5 s) and closes l (which removes the socket file).
// The server's own errors (a client that failed the TLS handshake) are
// logged to log as warnings.
func Serve(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-done
	return err
}

// TLSFiles are the PEM files of the TCP listener's TLS: its certificate
// and key, and the CAs whose client certificates it accepts.
type TLSFiles struct{ Cert, Key, ClientCA string }

func (f TLSFiles) any() bool { return f.Cert != "" || f.Key != "" || f.ClientCA != "" }

// ListenTCP listens on addr (host:port) for the API over TCP. Without TLS
// it binds to a loopback address only: the API reads everything and
// drains backends, and nothing but the socket's mode guards the socket, so
// a plain TCP port is as open as the machine's local users. With tls, it
// binds anywhere and serves TLS 1.3 only, to clients whose certificate a
// CA of files.ClientCA signed; a client without one fails the handshake.
func ListenTCP(addr string, files TLSFiles) (net.Listener, error) {
	var cfg *tls.Config
	if files.any() {
		var err error
		if cfg, err = serverTLS(files); err != nil {
			return nil, err
		}
	} else if err := loopbackOnly(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	return l, nil
}

// loopbackOnly refuses an address that is not a loopback one: a host of
// "" or 0.0.0.0 would listen on every interface.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-admin-listen %q: %w; want HOST:PORT, e.g. 127.0.0.1:9180", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-admin-listen %s is not a loopback address: without TLS the admin API listens on loopback only (127.0.0.1, ::1); "+
		"to listen there, pass -admin-tls-cert, -admin-tls-key and -admin-tls-client-ca so that clients need a certificate", addr)
}

// serverTLS is the listener's TLS configuration: TLS 1.3, client
// certificates required and verified against f.ClientCA.
func serverTLS(f TLSFiles) (*tls.Config, error) {
	var missing []string
	for _, m := range []struct{ flag, file string }{{"-admin-tls-cert", f.Cert}, {"-admin-tls-key", f.Key}, {"-admin-tls-client-ca", f.ClientCA}} {
		if m.file == "" {
			missing = append(missing, m.flag)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("TLS for the admin API needs -admin-tls-cert, -admin-tls-key and -admin-tls-client-ca together; missing %s",
			strings.Join(missing, ", "))
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("-admin-tls-cert/-admin-tls-key: %w", err)
	}
	pool, err := certPool(f.ClientCA, "-admin-tls-client-ca")
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, nil
}

// certPool reads the PEM certificates of file, named by flag in errors.
func certPool(file, flag string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flag, file)
	}
	return pool, nil
}
