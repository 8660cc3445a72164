package admin

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
