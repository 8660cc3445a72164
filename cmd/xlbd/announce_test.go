package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/internal/fakeplugin"
	"github.com/xlbproject/xlb/pipeline"
)

// marksEnv names the file where the TestIdle source of an xlbd child
// records when its worker first runs and when it is cleaned up.
const marksEnv = "XLBD_TEST_MARKS"

// testIdle is a live source that never receives anything: its Pull waits
// 5 ms and returns an empty batch, as RxXDP in poll mode does when idle.
type testIdle struct{ ran bool }

func (s *testIdle) Pull(*pipeline.Batch) error {
	if !s.ran {
		s.ran = true
		mark("running")
	}
	time.Sleep(5 * time.Millisecond)
	return nil
}

func (s *testIdle) MaxWait() time.Duration { return 5 * time.Millisecond }

func (s *testIdle) Cleanup() error {
	mark("stopped")
	return nil
}

// mark appends "what unix-nanoseconds" to the marks file, if any.
func mark(what string) {
	if path := os.Getenv(marksEnv); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%s %d\n", what, time.Now().UnixNano())
			f.Close()
		}
	}
}

// marks reads the marks file: the time of each mark.
func marks(t *testing.T, path string) map[string]time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var what string
		var ns int64
		if _, err := fmt.Sscanf(l, "%s %d", &what, &ns); err == nil {
			out[what] = time.Unix(0, ns)
		}
	}
	return out
}

func init() {
	pipeline.Register(pipeline.ElementType{Name: "TestIdle", Outputs: []string{"out"}, New: func() pipeline.Element { return &testIdle{} }})
}

// announceFile writes a configuration with the idle pipeline, VIP web
// (192.0.2.10, with announce "bgp" parameters params) on a pool of one
// backend, and the fake announcer as "bgp" with settings.
func announceFile(t *testing.T, dir, announcer, settings, params string) string {
	t.Helper()
	src := fmt.Sprintf(`hash_seed = 1
pipeline {
  element "TestIdle" "rx" {}
  element "Discard" "drop" {}
  connect = ["rx -> drop"]
}
announce "bgp" {
  path   = %q
  record = %q
%s}
vip "web" {
  address = "192.0.2.10"
  pool    = "web"
  announce "bgp" {
%s  }
}
pool "web" {
  backend "a" {
    address = "198.51.100.1"
  }
}
`, announcer, filepath.Join(dir, "calls"), settings, params)
	path := filepath.Join(dir, "x.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lastSet returns the routes of the last SetRoutes recorded in dir, and
// the call.
func calls(t *testing.T, dir string) []fakeplugin.Call {
	t.Helper()
	cs, err := fakeplugin.ReadCalls(filepath.Join(dir, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func firstCall(cs []fakeplugin.Call, f func(fakeplugin.Call) bool) (fakeplugin.Call, bool) {
	i := slices.IndexFunc(cs, f)
	if i < 0 {
		return fakeplugin.Call{}, false
	}
	return cs[i], true
}

func announces(prefix string) func(fakeplugin.Call) bool {
	return func(c fakeplugin.Call) bool { return c.Method == "SetRoutes" && slices.Contains(c.Routes, prefix) }
}

// TestRunAnnouncesAndDrains runs xlbd with the fake announcer: the VIP is
// announced only once the pipeline runs, with its parameters; on SIGTERM
// every route is withdrawn before the data plane stops, the drain time
// lies between the two, and the exit tables list the announcer.
func TestRunAnnouncesAndDrains(t *testing.T) {
	dir := t.TempDir()
	announcer, err := fakeplugin.Announcer(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := announceFile(t, dir, announcer, "  drain_time = \"1s\"\n", "    med = 10\n")
	marksFile := filepath.Join(dir, "marks")
	cmd := startRun(t, []string{marksEnv + "=" + marksFile}, "-admin-socket", "", "-config", path)
	stdout, stderr := &cmd.stdout, &cmd.stderr
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ok := firstCall(calls(t, dir), announces("192.0.2.10/32")); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the VIP was never announced; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("xlbd: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("xlbd did not stop after SIGTERM:\n%s", stderr.String())
	}
	t.Logf("xlbd's log:\n%s\nstdout:\n%s", stderr.String(), stdout.String())
	cs, m := calls(t, dir), marks(t, marksFile)
	announced, _ := firstCall(cs, announces("192.0.2.10/32"))
	withdrawn, ok := firstCall(cs, func(c fakeplugin.Call) bool { return c.Method == "WithdrawAll" })
	switch {
	case m["running"].IsZero() || m["stopped"].IsZero():
		t.Fatalf("marks %v: the pipeline did not run and stop", m)
	case announced.Time.Before(m["running"]):
		t.Errorf("the VIP was announced at %v, before the pipeline ran at %v", announced.Time, m["running"])
	case announced.Params["192.0.2.10/32"] != `{"med":10}`:
		t.Errorf("the VIP was announced with %v, want its med", announced.Params)
	case !ok:
		t.Errorf("no WithdrawAll on SIGTERM: %+v", cs)
	case m["stopped"].Sub(withdrawn.Time) < time.Second:
		t.Errorf("the data plane stopped %v after the withdrawal, before the drain time (1s) was over", m["stopped"].Sub(withdrawn.Time))
	}
	for _, c := range cs {
		if c.Method == "SetRoutes" && len(c.Routes) > 0 && c.Time.After(withdrawn.Time) {
			t.Errorf("announced again after the withdrawal: %+v", c)
		}
	}
	if !strings.Contains(stdout.String(), "== route announcers") || !regexpMatch(`bgp +running +0 +\d+`, stdout.String()) {
		t.Errorf("exit tables lack the announcer:\n%s", stdout.String())
	}
	for _, want := range []string{"forwarder self-check passed", "every route withdrawn", "draining", "data plane stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestBadAnnounceReloadKeepsRoutes: a reload with an announcer setting or
// a VIP announce parameter the announcer refuses is rejected at its line,
// and the running announcer keeps its routes (nothing withdrawn, nothing
// re-sent, the same process).
func TestBadAnnounceReloadKeepsRoutes(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(fakeplugin.Env, "1")
	announcer, err := fakeplugin.Announcer(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServices(t.TempDir(), true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	var stderr bytes.Buffer
	path := announceFile(t, dir, announcer, "", "")
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("first load: %v\n%s", err, stderr.String())
	}
	s.an.Start()
	defer s.an.Stop()
	s.an.SetDesired([]control.Route{{VIP: "web", Prefix: netip.MustParsePrefix("192.0.2.10/32")}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := firstCall(calls(t, dir), announces("192.0.2.10/32")); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never announced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid := s.set.Plugin("bgp").Status().PID
	before := len(calls(t, dir))
	for _, tc := range []struct{ settings, params, want string }{
		{"  refuse = true\n", "", "x.hcl:10:3: error: Invalid plugin setting\n" +
			"   10 |   refuse = true\n      |   ^^^^^^^^^^^^^\n   route-announcer plugin \"bgp\": refuse: refused by the plugin."},
		{"  neighbors = [\n    { peer_as = 65000 },\n    { peer_as = 0 },\n  ]\n", "", "x.hcl:12:7: error: Invalid plugin setting\n" +
			"   12 |     { peer_as = 0 },\n      |       ^^^^^^^^^^^\n   route-announcer plugin \"bgp\": neighbors[1].peer_as: must be an AS number, not 0."},
		{"", "    med = -1\n", "x.hcl:15:5: error: Invalid announce parameter\n" +
			"   15 |     med = -1\n      |     ^^^^^^^^\n   VIP \"web\" announce \"bgp\": med: must be at least 0."},
	} {
		stderr.Reset()
		path := announceFile(t, dir, announcer, tc.settings, tc.params)
		if _, err := s.apply(path, varFlags{}, &stderr); err == nil {
			t.Fatalf("reload with %q%q accepted", tc.settings, tc.params)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("diagnostics lack %q:\n%s", tc.want, stderr.String())
		}
	}
	time.Sleep(200 * time.Millisecond) // a few turns of the reconciler
	if got := s.set.Plugin("bgp").Status().PID; got != pid {
		t.Errorf("the announcer was restarted (pid %d, was %d)", got, pid)
	}
	if cs := calls(t, dir); len(cs) != before {
		t.Errorf("calls after the rejected reloads: %+v", cs[before:])
	}
	if st := s.an.Statuses(); len(st) != 1 || st[0].Routes != 1 || !st[0].InSync {
		t.Errorf("announcer status %+v, want the route still announced", st)
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
