package admin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
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
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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
