package host

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// fakeDecl declares the test binary as the fake health checker name with
// config, from path (the test binary when "").
func fakeDecl(t *testing.T, name, path, config string) Decl {
	t.Helper()
	if path == "" {
		path = exe(t)
	}
	return Decl{Spec: Spec{Name: name, Path: path, Kind: sdk.KindHealthChecker, Config: []byte(config)},
		Range:     pipeline.Range{Filename: "x.hcl", Start: pipeline.Pos{Line: 1}},
		AttrRange: pipeline.AttrRanges{{Name: "refuse", Range: pipeline.Range{Filename: "x.hcl", Start: pipeline.Pos{Line: 2}}}}}
}

// settings returns the settings p's process runs with, as it reports them.
func settings(t *testing.T, p *Plugin) string {
	t.Helper()
	rs, err := probe(p, "config")
	if err != nil {
		t.Fatalf("plugin %s: %v", p.Name(), err)
	}
	return rs[0].Err
}

func newSet(t *testing.T, opt Options) *Set {
	t.Setenv(pluginEnv, "1")
	opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := NewSet(opt)
	t.Cleanup(s.Stop)
	return s
}

// commit prepares decls and commits them, failing the test on any error.
func commit(t *testing.T, s *Set, decls ...Decl) {
	t.Helper()
	c, errs := s.Prepare(decls)
	if errs == nil {
		errs = c.Commit(context.Background())
	}
	if errs != nil {
		c.Abort()
		t.Fatal(errs)
	}
	c.Done()
}

// TestSetRejectedChange: a change whose settings one plugin refuses at
// commit rolls back the plugin already reconfigured, stops the plugin
// started for it, and leaves every running plugin's settings as they were.
func TestSetRejectedChange(t *testing.T) {
	s := newSet(t, Options{})
	commit(t, s, fakeDecl(t, "a", "", `{"v":1}`), fakeDecl(t, "b", "", `{"v":1}`))
	a, b := s.Plugin("a"), s.Plugin("b")

	c, errs := s.Prepare([]Decl{fakeDecl(t, "a", "", `{"v":2}`), fakeDecl(t, "b", "", `{"refuse":true}`), fakeDecl(t, "c", "", `{}`)})
	if errs != nil {
		t.Fatalf("Prepare: %v", errs)
	}
	if settings(t, a) != `{"v":1}` || settings(t, b) != `{"v":1}` {
		t.Fatal("Prepare changed a running plugin's settings")
	}
	started := c.Plugin("c")
	if started == nil || s.Plugin("c") != nil {
		t.Fatal("Prepare did not start c aside from the running set")
	}
	pid := started.Status().PID
	errs = c.Commit(context.Background())
	if len(errs) != 1 || errs[0].Range.Start.Line != 2 || errs[0].Summary != "Invalid plugin setting" ||
		errs[0].Detail != `health-check plugin "b": refuse: refused by the plugin.` {
		t.Fatalf("Commit = %v, want b's refusal at its attribute", errs)
	}
	c.Abort()
	for _, p := range []*Plugin{a, b} {
		if got := settings(t, p); got != `{"v":1}` {
			t.Errorf("plugin %s runs with %s after the rejected change, want {\"v\":1}", p.Name(), got)
		}
		if got := string(p.Status().Config); got != `{"v":1}` {
			t.Errorf("plugin %s would restart with %s, want {\"v\":1}", p.Name(), got)
		}
	}
	if s.Plugin("a") != a || s.Plugin("b") != b || s.Plugin("c") != nil {
		t.Error("the rejected change altered the set")
	}
	waitFor(t, 2*time.Second, "the plugin started for the rejected change stopped", func() bool { return gone(pid) })
}

// TestSetPrepareRefusals: a plugin whose settings do not conform to its
// schema, or that refuses them at its start, is an error at its
// declaration; the plugins started for the change are stopped on Abort.
func TestSetPrepareRefusals(t *testing.T) {
	s := newSet(t, Options{})
	commit(t, s, fakeDecl(t, "a", "", `{"v":1}`))
	a := s.Plugin("a")
	c, errs := s.Prepare([]Decl{fakeDecl(t, "a", "", `{"v":2}`), fakeDecl(t, "new", "", `{"refuse":true}`),
		fakeDecl(t, "a", "", `{}`)})
	if len(errs) != 2 || !strings.Contains(errs[0].Error(), `health-check plugin "new": refuse: refused by the plugin`) ||
		errs[1].Summary != "Duplicate plugin" {
		t.Fatalf("Prepare = %v, want new's refusal and a duplicate", errs)
	}
	if c.Plugin("new") != nil {
		t.Error("a plugin that refused its settings at start is in the change")
	}
	c.Abort()
	if settings(t, a) != `{"v":1}` {
		t.Error("an aborted change changed a running plugin")
	}
}

// TestSetReplaceAndRemove: a changed path starts a new instance aside;
// aborted, it stops and the old one keeps serving; done, the new one
// replaces the old, which stops, and a plugin no longer declared stops.
func TestSetReplaceAndRemove(t *testing.T) {
	s := newSet(t, Options{})
	commit(t, s, fakeDecl(t, "a", "", `{"v":1}`), fakeDecl(t, "b", "", `{}`))
	a, b := s.Plugin("a"), s.Plugin("b")
	other := filepath.Join(t.TempDir(), "hc2")
	if err := os.Symlink(exe(t), other); err != nil {
		t.Fatal(err)
	}
	moved := fakeDecl(t, "a", other, `{"v":2}`)
	c, errs := s.Prepare([]Decl{moved})
	if errs != nil {
		t.Fatal(errs)
	}
	aside := c.Plugin("a")
	if aside == a || settings(t, aside) != `{"v":2}` || settings(t, a) != `{"v":1}` {
		t.Fatal("a changed path did not start a new instance aside")
	}
	pid := aside.Status().PID
	c.Abort()
	waitFor(t, 2*time.Second, "the aborted replacement stopped", func() bool { return gone(pid) })
	if s.Plugin("a") != a || settings(t, a) != `{"v":1}` {
		t.Fatal("an aborted replacement touched the running plugin")
	}

	oldA, oldB := a.Status().PID, b.Status().PID
	commit(t, s, moved)
	if n := s.Plugin("a"); n == a || settings(t, n) != `{"v":2}` {
		t.Error("a changed path did not replace the plugin")
	}
	if s.Plugin("b") != nil {
		t.Error("a plugin no longer declared is still in the set")
	}
	waitFor(t, 2*time.Second, "the replaced and the removed plugins stopped", func() bool { return gone(oldA) && gone(oldB) })
	if st := s.Statuses(); len(st) != 1 || st[0].Name != "a" || st[0].State != StateRunning {
		t.Errorf("statuses %+v", st)
	}
}

// TestSetRestartingPlugin: a plugin between two runs keeps serving a
// configuration that keeps its settings; new settings, which it cannot
// take, get a fresh instance that replaces it.
func TestSetRestartingPlugin(t *testing.T) {
	s := newSet(t, Options{MinBackoff: time.Minute})
	commit(t, s, fakeDecl(t, "a", "", `{"v":1}`))
	a := s.Plugin("a")
	if err := syscall.Kill(a.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "restarting", func() bool { return a.Status().State == StateRestarting })
	c, errs := s.Prepare([]Decl{fakeDecl(t, "a", "", `{"v":1}`)})
	if errs != nil || c.Plugin("a") != a {
		t.Fatalf("same settings: %v, a fresh instance %v", errs, c.Plugin("a") != a)
	}
	c.Abort()
	commit(t, s, fakeDecl(t, "a", "", `{"v":2}`))
	if n := s.Plugin("a"); n == a || settings(t, n) != `{"v":2}` {
		t.Error("new settings for a restarting plugin did not get a fresh instance")
	}
	if a.Status().State != StateStopped {
		t.Errorf("the replaced instance is %v, want stopped", a.Status().State)
	}
}
