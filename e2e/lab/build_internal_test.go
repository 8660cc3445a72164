package lab

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/testenv"
)

// TestUpFailureRemovesAll: when Up fails after creating namespaces and
// links, nothing of it remains.
func TestUpFailureRemovesAll(t *testing.T) {
	testenv.RequireRoot(t)
	testHookBuilt = func() error { return errors.New("injected") }
	defer func() { testHookBuilt = nil }()
	var logged []string
	l, err := up(Topology{IPv6: true}, func(a ...any) { logged = append(logged, a[0].(string)) })
	if err == nil || l != nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Up = %v, %v; want the injected error", l, err)
	}
	ents, _ := os.ReadDir(netnsDir)
	mine, _ := runPrefix()
	mine = mine[:strings.LastIndexByte(mine[:len(mine)-1], '-')+1] // xlbl-<pid>-<start>-
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), mine) {
			t.Errorf("namespace %s left after a failed Up", e.Name())
		}
	}
	if len(logged) == 0 || !strings.Contains(strings.Join(logged, "\n"), "build failed") {
		t.Errorf("log: %q", logged)
	}
}

// TestRemoveNSRace: a stale namespace that another process's sweep has
// just unmounted (test binaries of several packages sweep at once) is
// removed without an error.
func TestRemoveNSRace(t *testing.T) {
	testenv.RequireRoot(t)
	prefix, err := runPrefix()
	if err != nil {
		t.Fatal(err)
	}
	name := prefix + "race"
	if err := newNamedNS(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = removeNS(name) })
	if err := unix.Unmount(nsPath(name), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := removeNS(name); err != nil {
		t.Errorf("removeNS after another sweep unmounted it: %v", err)
	}
	if _, err := os.Stat(nsPath(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left: %v", nsPath(name), err)
	}
}
