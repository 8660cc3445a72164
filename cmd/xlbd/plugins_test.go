package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/xlbproject/xlb/control/health"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/internal/fakeplugin"
	"github.com/xlbproject/xlb/internal/testenv"
)

// exampleWith returns the offline example at path with check
// (health_check blocks) in pool web and extra at the end, for writing into
// a test's directory.
func exampleWith(t *testing.T, path, check, extra string) string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(src), "  pools = [\"canary\"]\n", "  pools = [\"canary\"]\n"+check, 1)
	return s + extra
}

// TestPluginPathNotFromPATH: with the file in the current directory, a
// plugin path written as a bare name or "./name", and a built-in found
// through -plugin-dir ".", run the file beside the configuration, never a
// binary of that name on $PATH.
func TestPluginPathNotFromPATH(t *testing.T) {
	decoys := t.TempDir()
	marker := filepath.Join(t.TempDir(), "decoy-ran")
	if err := os.WriteFile(filepath.Join(decoys, "redis-check"), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", decoys+string(os.PathListSeparator)+os.Getenv("PATH"))
	dir := t.TempDir()
	// The file beside the configuration is not a plugin either: the
	// handshake fails, which is the error expected.
	if err := os.WriteFile(filepath.Join(dir, "redis-check"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ex, err := filepath.Abs(example)
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, tc := range []struct {
		name, method, extra string
		args                []string
	}{
		{"bare name", "redis", "plugin \"redis\" {\n  path = \"redis-check\"\n}\n", nil},
		{"dot slash", "redis", "plugin \"redis\" {\n  path = \"./redis-check\"\n}\n", nil},
		{"plugin dir", "redis-check", "", []string{"-plugin-dir", "."}},
	} {
		src := exampleWith(t, ex, "  health_check \""+tc.method+"\" {}\n", tc.extra)
		if err := os.WriteFile("x.hcl", []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if rc := validateCmd(append(tc.args, "x.hcl"), &stdout, &stderr); rc != 1 {
			t.Errorf("%s: validate rc %d, want 1\n%s", tc.name, rc, stderr.String())
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("%s: the redis-check on $PATH ran", tc.name)
		}
		if want := filepath.Join(dir, "redis-check"); !strings.Contains(stderr.String(), want) {
			t.Errorf("%s: the error does not name %s:\n%s", tc.name, want, stderr.String())
		}
	}
}

func TestMain(m *testing.M) {
	fakeplugin.ServeIfChild()
	if os.Getenv(asXLBD) == "1" {
		// The test binary stands in for xlbd as the child of a precheck.
		os.Exit(xlbd(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// asXLBD in the environment makes the test binary run as xlbd.
const asXLBD = "XLBD_TEST_AS_XLBD"

// fakeFile writes the offline example into dir as x.hcl, with checks in
// pool web and the plugin blocks of fake and fake2 (the test binary as
// internal/fakeplugin) with the given settings, and extra at the end.
func fakeFile(t *testing.T, dir, checks, fake, fake2, extra string) string {
	t.Helper()
	t.Setenv(fakeplugin.Env, "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	plugins := fmt.Sprintf("plugin \"fake\" {\n  path = %q\n%s}\nplugin \"fake2\" {\n  path = %q\n%s}\n", exe, fake, exe, fake2)
	path := filepath.Join(dir, "x.hcl")
	if err := os.WriteFile(path, []byte(exampleWith(t, example, checks, plugins+extra)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// running returns the settings the process of s's plugin name runs with,
// as it reports them.
func running(t *testing.T, s *services, name string) string {
	t.Helper()
	p := s.set.Plugin(name)
	if p == nil {
		t.Fatalf("no plugin %s running", name)
	}
	rs, err := p.Prober().Probe(context.Background(), []health.Target{{Backend: "config", Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return rs[0].Err
}

// TestRejectedReloadChangesNothing: a reload rejected by the file's own
// checks, by a plugin refusing a parameter, or by a plugin refusing its
// new settings at commit (after another plugin took its own) leaves every
// plugin's settings, the set of plugins and the snapshot as they were; a
// plugin started for the rejected reload is stopped. Then a good reload
// changes the settings.
func TestRejectedReloadChangesNothing(t *testing.T) {
	dir := t.TempDir()
	const checks = "  health_check \"fake\" {}\n  health_check \"fake2\" {}\n"
	var logs testenv.Buffer
	s, err := newServices(t.TempDir(), true, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	var stderr bytes.Buffer
	path := fakeFile(t, dir, checks, "  label = \"one\"\n", "  label = \"one\"\n", "")
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("first load: %v\n%s", err, stderr.String())
	}
	gen := s.ctl.Snapshot().Generation
	fake, fake2 := s.set.Plugin("fake"), s.set.Plugin("fake2")
	const one = `{"label":"one"}`
	if running(t, s, "fake") != one || running(t, s, "fake2") != one {
		t.Fatalf("settings after the first load: %s, %s", running(t, s, "fake"), running(t, s, "fake2"))
	}
	newPlugin := "plugin \"fake3\" {\n  path = %q\n}\n"
	exe, _ := os.Executable()
	for _, tc := range []struct {
		name, checks, fake, fake2, extra, want string
	}{
		{"file error", checks + "  health_check \"fake3\" {}\n", "  label = \"two\"\n", "", fmt.Sprintf(newPlugin, exe) + "vip \"x\" {\n  pool = \"nowhere\"\n}\n",
			"Unknown pool"},
		{"parameter refused", "  health_check \"fake\" {\n    down = \"a\"\n  }\n  health_check \"fake3\" {}\n", "  label = \"two\"\n", "", fmt.Sprintf(newPlugin, exe),
			`"a" must stay up`},
		{"settings refused at commit", checks + "  health_check \"fake3\" {}\n", "  label = \"two\"\n", "  refuse = true\n", fmt.Sprintf(newPlugin, exe),
			`health-check plugin "fake2": refuse: refused by the plugin.`},
	} {
		stderr.Reset()
		mark := logs.Len()
		path := fakeFile(t, dir, tc.checks, tc.fake, tc.fake2, tc.extra)
		if _, err := s.apply(path, varFlags{}, &stderr); err == nil {
			t.Fatalf("%s: reload accepted", tc.name)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: diagnostics lack %q:\n%s", tc.name, tc.want, stderr.String())
		}
		if s.ctl.Snapshot().Generation != gen {
			t.Errorf("%s: the snapshot changed", tc.name)
		}
		if s.set.Plugin("fake") != fake || s.set.Plugin("fake2") != fake2 || s.set.Plugin("fake3") != nil {
			t.Errorf("%s: the plugin set changed: %+v", tc.name, s.set.Statuses())
		}
		for _, name := range []string{"fake", "fake2"} {
			if got := running(t, s, name); got != one {
				t.Errorf("%s: plugin %s runs with %s, want %s", tc.name, name, got, one)
			}
		}
		// fake3 was started for the reload (it checks its parameters,
		// none here), then stopped.
		m := regexp.MustCompile(`plugin=fake3 pid=(\d+)`).FindStringSubmatch(logs.String()[mark:])
		if m == nil {
			t.Fatalf("%s: fake3 was not started:\n%s", tc.name, logs.String()[mark:])
		}
		pid, _ := strconv.Atoi(m[1])
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("%s: fake3 (pid %d), started for the rejected reload, still runs", tc.name, pid)
		}
	}
	path = fakeFile(t, dir, checks, "  label = \"two\"\n", "  label = \"one\"\n", "")
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("good reload: %v\n%s", err, stderr.String())
	}
	if got := running(t, s, "fake"); got != `{"label":"two"}` {
		t.Errorf("after a good reload fake runs with %s", got)
	}
	if s.ctl.Snapshot().Generation != gen+1 {
		t.Errorf("generation %d after a good reload, want %d", s.ctl.Snapshot().Generation, gen+1)
	}
}

// TestEveryProblemInOneRun: one run of xlbd validate prints the file's own
// errors and the plugins' (a refused parameter, misspelt parameters and
// settings with a did-you-mean, an unknown method with the methods there
// are) together, in file order; run prints a plugin's refusal once, and
// logs a one-line summary.
func TestEveryProblemInOneRun(t *testing.T) {
	dir, builtins := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(builtins, "tcp"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	checks := "  health_check \"fake\" {\n    down = \"a\"\n    donw = \"b\"\n    rise = 2\n  }\n  health_check \"fak\" {}\n  health_check \"fake2\" {}\n"
	path := fakeFile(t, dir, checks, "", "  lable = \"x\"\n", "")
	src, _ := os.ReadFile(path)
	broken := strings.Replace(string(src), "capacity    = 65536", "capcity     = 65536", 1)
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if rc := validateCmd([]string{"-plugin-dir", builtins, path}, &stdout, &stderr); rc != 1 {
		t.Fatalf("validate: rc %d\n%s", rc, stderr.String())
	}
	line := func(s string) int {
		for i, l := range strings.Split(broken, "\n") {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		t.Fatalf("no %q in the file", s)
		return 0
	}
	var at []int
	for _, want := range []struct{ at, summary, detail string }{
		{"capcity", "Unsupported argument", `Did you mean "capacity"?`},
		{`down = "a"`, "Invalid health-check parameter", `pool "web" health check "fake": down: "a" must stay up.`},
		{"donw", "Invalid health-check parameter", `pool "web" health check "fake": donw: not expected here (did you mean "down"?); this block takes interval, timeout, rise, fall, port, down.`},
		{`"fak"`, "Unknown health-check method", `Pool "web" health check "fak": no plugin serves this method (did you mean "fake"?): the built-in methods (in ` + builtins + `) are tcp; the declared plugins are fake, fake2.`},
		{"lable", "Invalid plugin setting", `health-check plugin "fake2": lable: not expected here (did you mean "label"?); this block takes answer, label, refuse, v.`},
	} {
		head := fmt.Sprintf("%s:%d:", path, line(want.at))
		i := strings.Index(stderr.String(), head)
		if i < 0 || !strings.Contains(stderr.String()[i:], want.summary) || !strings.Contains(stderr.String(), want.detail) {
			t.Errorf("validate lacks %s %s: %s:\n%s", head, want.summary, want.detail, stderr.String())
		}
		at = append(at, i)
	}
	if !slices.IsSorted(at) {
		t.Errorf("diagnostics not in file order (%v):\n%s", at, stderr.String())
	}

	// The refusal alone: run prints it once, with a one-line log. Its
	// plugins log to stderr too, concurrently.
	path = fakeFile(t, dir, "  health_check \"fake\" {\n    down = \"a\"\n  }\n", "", "", "")
	var runOut, runErr testenv.Buffer
	if rc := runCmd([]string{"-admin-socket", "", "-config", path, "-plugin-dir", builtins}, &runOut, &runErr); rc != 1 {
		t.Fatalf("run: rc %d\n%s", rc, runErr.String())
	}
	if n := strings.Count(runErr.String(), "must stay up"); n != 1 || !strings.Contains(runErr.String(), `msg="configuration rejected"`) ||
		!strings.Contains(runErr.String(), `err="1 error, printed above"`) {
		t.Errorf("run printed the refusal %d times, or no one-line summary:\n%s", n, runErr.String())
	}
}

// TestReloadPanicRejected: a panic while a reload loads or checks the file
// is recovered and rejects the reload; the running configuration and
// plugins stay, and the next reload works.
func TestReloadPanicRejected(t *testing.T) {
	dir := t.TempDir()
	var logs testenv.Buffer
	s, err := newServices(t.TempDir(), true, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	path := fakeFile(t, dir, "  health_check \"fake\" {}\n", "  label = \"one\"\n", "", "")
	var stderr bytes.Buffer
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("first load: %v\n%s", err, stderr.String())
	}
	gen, fake := s.ctl.Snapshot().Generation, s.set.Plugin("fake")
	orig := loadFile
	t.Cleanup(func() { loadFile = orig })
	loadFile = func(*xhcl.Cache, string, []xhcl.Fragment, xhcl.Options) (*xhcl.File, hcl2.Diagnostics) { panic("boom") }
	if _, err := s.apply(path, varFlags{}, &stderr); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("a reload that panics: %v, want an internal error", err)
	}
	if s.ctl.Snapshot().Generation != gen || s.set.Plugin("fake") != fake || running(t, s, "fake") != `{"label":"one"}` {
		t.Fatal("a reload that panicked changed the running configuration")
	}
	if !strings.Contains(logs.String(), `panic=boom`) {
		t.Errorf("the panic is not logged:\n%s", logs.String())
	}
	loadFile = orig
	path = fakeFile(t, dir, "  health_check \"fake\" {}\n", "  label = \"two\"\n", "", "")
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil || running(t, s, "fake") != `{"label":"two"}` {
		t.Fatalf("the reload after a panic: %v\n%s", err, stderr.String())
	}
}
