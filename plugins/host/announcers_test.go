package host

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/internal/fakeplugin"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// announcerSet starts the fake announcer as "bgp" in a set, recording into
// the returned file, and the reconciler over it.
func announcerSet(t *testing.T, settings string) (*Set, *Announcers, string) {
	t.Helper()
	t.Setenv(pluginEnv, "1")
	dir := t.TempDir()
	path, err := fakeplugin.Announcer(dir)
	if err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(dir, "calls")
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	set := NewSet(Options{Logger: log})
	t.Cleanup(set.Stop)
	a, err := NewAnnouncers(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	a.Tick, a.RetryMin, a.SessionsEvery = 20*time.Millisecond, 20*time.Millisecond, 20*time.Millisecond
	decls := a.Decls([]Decl{{Spec: Spec{Name: "bgp", Path: path, Config: []byte(fmt.Sprintf(`{"record":%q%s}`, record, settings))}}})
	c, errs := set.Prepare(decls)
	if errs != nil {
		t.Fatal(errs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if errs := c.Commit(ctx); errs != nil {
		t.Fatal(errs)
	}
	c.Done()
	a.Use(set, []string{"bgp"}, &control.Config{VIPs: []control.VIP{{Name: "web", Announce: []control.Announce{
		{Announcer: "bgp", Params: map[string]json.RawMessage{"med": json.RawMessage("10")}}}}}})
	a.Start()
	t.Cleanup(a.Stop)
	return set, a, record
}

func routes(s ...string) []control.Route {
	var out []control.Route
	for _, x := range s {
		vip, p, _ := strings.Cut(x, "=")
		out = append(out, control.Route{VIP: vip, Prefix: netip.MustParsePrefix(p)})
	}
	return out
}

// waitCall waits for the last recorded call to be method with routes
// (SetRoutes) and returns it.
func waitCall(t *testing.T, record, method string, want ...string) fakeplugin.Call {
	t.Helper()
	var last fakeplugin.Call
	waitFor(t, 10*time.Second, fmt.Sprintf("%s %v recorded", method, want), func() bool {
		calls, err := fakeplugin.ReadCalls(record)
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) == 0 {
			return false
		}
		last = calls[len(calls)-1]
		return last.Method == method && (method != "SetRoutes" || slices.Equal(last.Routes, append([]string{}, want...)))
	})
	return last
}

// TestAnnouncersReconcile: the full set is sent on every change, with each
// VIP's parameters; again, unasked, to a restarted announcer (a new
// process); and again after a failed send, once the announcer takes it.
func TestAnnouncersReconcile(t *testing.T) {
	fail := filepath.Join(t.TempDir(), "fail")
	set, a, record := announcerSet(t, fmt.Sprintf(`,"fail":%q`, fail))
	a.SetDesired(routes("web=192.0.2.10/32"))
	c := waitCall(t, record, "SetRoutes", "192.0.2.10/32")
	if c.Params["192.0.2.10/32"] != `{"med":10}` {
		t.Errorf("params sent: %v, want web's med 10", c.Params)
	}
	a.SetDesired(routes("web=192.0.2.10/32", "api=2001:db8::1/128"))
	waitCall(t, record, "SetRoutes", "192.0.2.10/32", "2001:db8::1/128")

	// A restart: the new process gets the set without a change.
	first := set.Plugin("bgp").Status().PID
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c = waitCall(t, record, "SetRoutes", "192.0.2.10/32", "2001:db8::1/128")
	waitFor(t, 10*time.Second, "a recorded call by the new process", func() bool {
		c = waitCall(t, record, "SetRoutes", "192.0.2.10/32", "2001:db8::1/128")
		return c.PID != first
	})

	// A failed send is retried until it is taken.
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	a.SetDesired(routes("api=2001:db8::1/128"))
	waitFor(t, 10*time.Second, "a failed send", func() bool {
		st := a.Statuses()
		return len(st) == 1 && strings.Contains(st[0].LastError, "failing on purpose")
	})
	os.Remove(fail)
	waitCall(t, record, "SetRoutes", "2001:db8::1/128")
	waitFor(t, 10*time.Second, "in sync", func() bool {
		st := a.Statuses()
		return st[0].InSync && st[0].Routes == 1 && st[0].LastError == ""
	})

	// WithdrawAll: recorded, and nothing is sent after it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.WithdrawAll(ctx); err != nil {
		t.Fatal(err)
	}
	a.SetDesired(routes("web=192.0.2.10/32"))
	time.Sleep(100 * time.Millisecond)
	calls, _ := fakeplugin.ReadCalls(record)
	if last := calls[len(calls)-1]; last.Method != "WithdrawAll" {
		t.Errorf("after WithdrawAll the announcer got %+v", last)
	}
}

// TestAnnouncerSessions: the announcer's sessions, as it reports them, are
// in its status; none while it is not running.
func TestAnnouncerSessions(t *testing.T) {
	set, a, _ := announcerSet(t, `,"neighbors":[{"peer_as":65000},{"peer_as":65000}]`)
	a.SetDesired(routes("web=192.0.2.10/32", "api=2001:db8::1/128"))
	sessions := func() string {
		st := a.Statuses()
		if len(st) != 1 {
			t.Fatalf("statuses %+v, want the one announcer", st)
		}
		return fmt.Sprint(st[0].Sessions)
	}
	want := "[{neighbor-0 established true 2} {neighbor-1 established true 2}]"
	waitFor(t, 10*time.Second, "sessions "+want, func() bool { return sessions() == want })
	set.Stop()
	waitFor(t, 10*time.Second, "no session once the announcer stopped", func() bool { return sessions() == "[]" })
}

// TestAnnouncerParamsAtAttributes: a VIP's announce parameters are
// conformed to the announcer's schema and checked by it, each refusal at
// its attribute; a setting refused inside a list lands on its item.
func TestAnnouncerParamsAtAttributes(t *testing.T) {
	t.Setenv(pluginEnv, "1")
	dir := t.TempDir()
	path, err := fakeplugin.Announcer(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := func(line int) pipeline.Range {
		return pipeline.Range{Filename: "x.hcl", Start: pipeline.Pos{Line: line}}
	}
	set := NewSet(Options{})
	defer set.Stop()
	a, _ := NewAnnouncers(dir, nil)
	decl := Decl{Spec: Spec{Name: "bgp", Path: path, Config: []byte(`{"neighbors":[{"peer_as":65000},{"peer_as":0}]}`)},
		Range: r(1), AttrRange: pipeline.AttrRanges{{Name: "neighbors", Range: r(2)}, {Name: "neighbors[1]", Range: r(4)}, {Name: "neighbors[1].peer_as", Range: r(5)}}}
	c, errs := set.Prepare(a.Decls([]Decl{decl}))
	if len(errs) != 1 || errs[0].Range != r(5) || !strings.Contains(errs[0].Detail, "neighbors[1].peer_as: must be an AS number") {
		t.Errorf("a refused nested setting: %v, want it at line 5", errs)
	}
	c.Abort()

	decl.Config = []byte(`{}`)
	c, errs = set.Prepare(a.Decls([]Decl{decl}))
	if errs != nil {
		t.Fatal(errs)
	}
	defer c.Abort()
	cfg := &control.Config{VIPs: []control.VIP{{Name: "web", Announce: []control.Announce{{Announcer: "bgp", Range: r(10),
		Params:    map[string]json.RawMessage{"med": json.RawMessage(`"-1"`), "colour": json.RawMessage(`"blue"`)},
		AttrRange: pipeline.AttrRanges{{Name: "med", Range: r(11)}, {Name: "colour", Range: r(12)}}}}}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs = a.CheckParams(ctx, c, cfg, func(control.Announce) bool { return true })
	var got []string
	for _, e := range errs {
		got = append(got, fmt.Sprintf("%d %s", e.Range.Start.Line, e.Summary))
	}
	if want := []string{"12 Invalid announce parameter", "11 Invalid announce parameter"}; !slices.Equal(got, want) {
		t.Errorf("errors %v, want %v: %v", got, want, errs)
	}
	cfg.VIPs[0].Announce[0].Params = map[string]json.RawMessage{"med": json.RawMessage(`"5"`)}
	if errs := a.CheckParams(ctx, c, cfg, func(control.Announce) bool { return true }); errs != nil {
		t.Fatal(errs)
	}
	if got := string(cfg.VIPs[0].Announce[0].ParamsJSON()); got != `{"med":5}` {
		t.Errorf("conformed params %s, want med as a number", got)
	}
}

// TestHostSIGKILLStopsAnnouncer: a route announcer's parent-death signal is
// SIGTERM, so that it can tell its peers it leaves (the SDK calls Stop)
// when xlbd is killed; a health checker's stays SIGKILL.
func TestHostSIGKILLStopsAnnouncer(t *testing.T) {
	dir := t.TempDir()
	path, err := fakeplugin.Announcer(dir)
	if err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(dir, "calls")
	pid := killedHost(t, "announcer "+path+" "+record)
	waitFor(t, 3*time.Second, fmt.Sprintf("announcer %d gone after its host's SIGKILL", pid), func() bool { return gone(pid) })
	calls, err := fakeplugin.ReadCalls(record)
	if err != nil || len(calls) != 1 || calls[0].Method != "Stop" || calls[0].PID != pid {
		t.Errorf("calls %+v (%v), want the announcer's Stop on SIGTERM", calls, err)
	}
	if deathSignal(sdk.KindHealthChecker) != syscall.SIGKILL {
		t.Error("a health checker's parent-death signal must stay SIGKILL")
	}
}

// TestStoppedAnnouncerLeaves: stopping a route announcer (xlbd stopping,
// or a reload that drops or replaces it) lets it leave as on SIGTERM (the
// SDK's Stop), not by go-plugin's shutdown alone.
func TestStoppedAnnouncerLeaves(t *testing.T) {
	set, _, record := announcerSet(t, "")
	pid := set.Plugin("bgp").Status().PID
	set.Stop()
	calls, err := fakeplugin.ReadCalls(record)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(calls, func(c fakeplugin.Call) bool { return c.Method == "Stop" && c.PID == pid }); i < 0 {
		t.Errorf("calls %+v, want the announcer's Stop", calls)
	}
}
