package lab

import (
	"errors"
	"os"
	"strings"
	"testing"

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
