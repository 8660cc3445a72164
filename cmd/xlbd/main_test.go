package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the expected outputs: examples/offline/expected.txt, testdata/plan/plan.golden")

const example = "../../examples/offline/offline.hcl"

// TestOfflineExample runs the example as `make demo` does and compares what
// it prints with the expected output committed beside it.
func TestOfflineExample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.pcap")
	var stdout, stderr bytes.Buffer
	if rc := runCmd([]string{"-admin-socket", "", "-config", example, "-var", "output=" + out}, &stdout, &stderr); rc != 0 {
		t.Fatalf("xlbd run exited %d:\n%s", rc, stderr.String())
	}
	expected := "../../examples/offline/expected.txt"
	if *update {
		if err := os.WriteFile(expected, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(expected)
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(want) {
		t.Errorf("xlbd run printed:\n%s\nwant (%s; go test ./cmd/xlbd -run TestOfflineExample -args -update to refresh):\n%s", stdout.String(), expected, want)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() < 1000 {
		t.Errorf("no output capture written: %v", err)
	}
}

func TestValidate(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if rc := validateCmd([]string{example}, &stdout, &stderr); rc != 0 || !strings.HasSuffix(stdout.String(), "offline.hcl: ok\n") {
		t.Fatalf("validate of the example: rc %d, stdout %q, stderr %q", rc, stdout.String(), stderr.String())
	}

	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(src), "capacity    = 65536", "capcity     = 65536", 1)
	broken = strings.Replace(broken, "connect = default_graph()", `connect = concat(default_graph(), ["parse.bda -> drop"])`, 1)
	path := filepath.Join(t.TempDir(), "broken.hcl")
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	if rc := validateCmd([]string{path}, &stdout, &stderr); rc != 1 {
		t.Fatalf("validate of a broken file: rc %d, want 1", rc)
	}
	for _, want := range []string{
		path + ":23:5: error: Unsupported argument",
		`Did you mean "capacity"?`,
		path + ":38:13: error: Unknown output port",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestValidateDirectRoute: the example with DirectRoute on lo in
// GREEncap's place, every backend's MAC address given but web-2's: validate
// refuses web-2, off lo's segments, at its address (a load does the same).
func TestValidateDirectRoute(t *testing.T) {
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	macs := `interface = "lo"
    macs = { for i, a in ["198.51.100.1", "198.51.100.3", "2001:db8:1::1", "198.51.100.53", "2001:db8:1::53"] : a => "02:00:00:00:00:0${i}" }`
	dr := strings.Replace(string(src), `element "GREEncap" "encap" {`, `element "DirectRoute" "encap" {`+"\n    "+macs, 1)
	path := filepath.Join(t.TempDir(), "dr.hcl")
	if err := os.WriteFile(path, []byte(dr), 0o644); err != nil {
		t.Fatal(err)
	}
	line := 1 + strings.Count(dr[:strings.Index(dr, `address = "198.51.100.2"`)], "\n")
	var stdout, stderr bytes.Buffer
	if rc := validateCmd([]string{path}, &stdout, &stderr); rc != 1 {
		t.Fatalf("validate: rc %d, want 1: %s%s", rc, stdout.String(), stderr.String())
	}
	for _, want := range []string{
		fmt.Sprintf("%s:%d:5: error: Backend out of reach", path, line),
		"While checking `encap` (DirectRoute): backend \"web-2\" (198.51.100.2) is not on a directly connected segment of lo (127.0.0.0/8)",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr.String())
		}
	}
	if n := strings.Count(stderr.String(), "error:"); n != 1 {
		t.Errorf("%d errors, want web-2's only:\n%s", n, stderr.String())
	}
}

func TestFmt(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if rc := fmtCmd([]string{"-check", example}, &stdout, &stderr); rc != 0 {
		t.Errorf("the example is not formatted (rc %d): %s%s", rc, stdout.String(), stderr.String())
	}
	path := filepath.Join(t.TempDir(), "messy.hcl")
	if err := os.WriteFile(path, []byte("hash_seed=1\npipeline {\nworkers=2\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if rc := fmtCmd([]string{"-check", path}, &stdout, &stderr); rc != 1 || stdout.String() != path+"\n" {
		t.Errorf("fmt -check of a messy file: rc %d, stdout %q", rc, stdout.String())
	}
	if rc := fmtCmd([]string{path}, &stdout, &stderr); rc != 0 {
		t.Fatalf("fmt: rc %d", rc)
	}
	got, _ := os.ReadFile(path)
	if want := "hash_seed = 1\npipeline {\n  workers = 2\n}\n"; string(got) != want {
		t.Errorf("fmt wrote %q, want %q", got, want)
	}
}

func TestGraph(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if rc := graphCmd([]string{example}, &stdout, &stderr); rc != 0 {
		t.Fatalf("graph: rc %d: %s", rc, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"ct" -> "sel" [taillabel="miss", headlabel="in"]`) {
		t.Errorf("graph lacks the ct.miss -> sel edge:\n%s", stdout.String())
	}
}

// offlineServices applies the offline example, copied to path, to services
// without plugins, as xlbd run starts it; write replaces the file's
// content.
func offlineServices(t *testing.T) (s *services, src, path string, write func(string)) {
	t.Helper()
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "x.hcl")
	write = func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(string(b))
	if s, err = newServices("", false, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if s.running, err = s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("loading the example: %v\n%s", err, stderr.String())
	}
	return s, string(b), path, write
}

// TestReloadKeepsRunningConfig: a reload with a broken file is refused and
// the published snapshot stays; a good one is applied.
func TestReloadKeepsRunningConfig(t *testing.T) {
	s, src, path, write := offlineServices(t)
	var stderr bytes.Buffer
	gen := s.ctl.Snapshot().Generation
	write(strings.Replace(src, `pools = ["canary"]`, `pools = ["canry"]`, 1))
	if _, err := s.apply(path, varFlags{}, &stderr); err == nil {
		t.Fatal("a reload with an unknown pool must be refused")
	}
	if s.ctl.Snapshot().Generation != gen || len(s.ctl.Snapshot().VIPs) != 4 {
		t.Fatal("a refused reload changed the running configuration")
	}
	write(strings.Replace(src, `weight  = 2`, `weight  = 3`, 1))
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	if s.ctl.Snapshot().Generation != gen+1 {
		t.Errorf("generation %d after a good reload, want %d", s.ctl.Snapshot().Generation, gen+1)
	}
}

// TestReloadShards: changing the node's shards, or a VIP's, is a reload
// like any other, and the routes to announce follow the snapshot; an
// unknown shard is refused at its line and the routes stay.
func TestReloadShards(t *testing.T) {
	s, src, path, write := offlineServices(t)
	sharded := func(node, v6 string) string {
		out := strings.Replace(src, "hash_seed = 20261121", "hash_seed = 20261121\nshard_names = [\"a\", \"b\"]\nshards = [\""+node+"\"]", 1)
		for vip, shard := range map[string]string{"web4": "a", "dns4": "a", "web6": v6, "dns6": v6} {
			out = strings.Replace(out, `vip "`+vip+`" {`, `vip "`+vip+`" {`+"\n  shards = [\""+shard+"\"]", 1)
		}
		return out
	}
	routes := func() []string {
		var out []string
		for _, r := range control.DesiredRoutes(s.ctl.Snapshot(), nil) {
			out = append(out, r.Prefix.String())
		}
		return out
	}
	var stderr bytes.Buffer
	for _, step := range []struct {
		name, file string
		want       []string
	}{
		{"node of shard a", sharded("a", "b"), []string{"192.0.2.10/32"}},
		{"node moved to shard b", sharded("b", "b"), []string{"2001:db8::10/128"}},
		{"web6 and dns6 moved to shard a", sharded("b", "a"), nil},
		{"node of shard a again", sharded("a", "a"), []string{"192.0.2.10/32", "2001:db8::10/128"}},
	} {
		write(step.file)
		if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
			t.Fatalf("%s: %v\n%s", step.name, err, stderr.String())
		}
		if got := routes(); !slices.Equal(got, step.want) {
			t.Errorf("%s: routes %v, want %v", step.name, got, step.want)
		}
	}
	gen := s.ctl.Snapshot().Generation
	stderr.Reset()
	write(sharded("c", "a"))
	if _, err := s.apply(path, varFlags{}, &stderr); err == nil || !strings.Contains(stderr.String(), "Unknown shard") {
		t.Fatalf("a node of an unknown shard: %v\n%s", err, stderr.String())
	}
	if s.ctl.Snapshot().Generation != gen || len(routes()) != 2 {
		t.Error("a refused reload changed the running configuration")
	}
}

// TestHealthCheckParams: with the real http plugin, pools give the method
// different parameters; a parameter or plugin setting the plugin refuses
// is reported at its line and the running configuration stays; a changed
// plugin block reconfigures the running plugin.
func TestHealthCheckParams(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "http"), "../../plugins/healthcheck/http")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the http plugin: %v\n%s", err, out)
	}
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.hcl")
	// Checks for web and dns, with different parameters; %s is the dns
	// check's expect_status, %d the plugin's concurrency.
	tmpl := strings.NewReplacer(`  pools = ["canary"]`, `  pools = ["canary"]
  health_check "http" {
    path = "/healthz"
  }`, "pool \"dns\" {\n", "pool \"dns\" {\n  health_check \"http\" {\n    port          = 8053\n    expect_status = %s\n  }\n").Replace(string(src)) + "\nplugin \"http\" {\n  concurrency = %d\n}\n"
	write := func(expect string, concurrency int) {
		if err := os.WriteFile(path, fmt.Appendf(nil, tmpl, expect, concurrency), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var logs testenv.Buffer
	s, err := newServices(dir, true, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	var stderr bytes.Buffer
	write(`[200, "204"]`, 10)
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("pools with different parameters: %v\n%s", err, stderr.String())
	}
	gen := s.ctl.Snapshot().Generation
	line := func(s string) int {
		b, _ := os.ReadFile(path)
		for i, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		t.Fatalf("no %q in the file", s)
		return 0
	}
	for _, tc := range []struct {
		expect      string
		concurrency int
		at, want    string
	}{
		{`"2xx"`, 10, "expect_status", `Invalid health-check parameter; pool "dns" health check "http": expect_status: "2xx" is not a status code`},
		{`200`, 0, "concurrency", `Invalid plugin setting; health-check plugin "http": concurrency:`},
	} {
		stderr.Reset()
		write(tc.expect, tc.concurrency)
		if _, err := s.apply(path, varFlags{}, &stderr); err == nil {
			t.Fatalf("%s: reload accepted", tc.at)
		}
		pos := fmt.Sprintf("x.hcl:%d:", line(tc.at))
		if !strings.Contains(stderr.String(), pos) || !strings.Contains(stderr.String(), strings.Split(tc.want, "; ")[0]) ||
			!strings.Contains(stderr.String(), strings.Split(tc.want, "; ")[1]) {
			t.Errorf("%s: diagnostics\n%s\nwant %s and %q", tc.at, stderr.String(), pos, tc.want)
		}
		if s.ctl.Snapshot().Generation != gen {
			t.Fatalf("%s: a refused reload changed the running configuration", tc.at)
		}
	}
	write(`200`, 20)
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("good reload: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(logs.String(), `msg="plugin reconfigured" plugin=http config="{\"concurrency\":20}"`) {
		t.Errorf("plugin not reconfigured:\n%s", logs.String())
	}
	if st := s.sched.Stats(); len(st.Checks) != 2 {
		t.Errorf("scheduler has %d checks, want 2 (web, dns)", len(st.Checks))
	}

	// xlbd validate asks the plugins too, unless told not to.
	write(`"2xx"`, 10)
	var stdout bytes.Buffer
	stderr.Reset()
	if rc := validateCmd([]string{"-plugin-dir", dir, path}, &stdout, &stderr); rc != 1 ||
		!strings.Contains(stderr.String(), fmt.Sprintf("x.hcl:%d:", line("expect_status"))) {
		t.Errorf("validate with a parameter the plugin refuses: rc %d\n%s", rc, stderr.String())
	}
	if rc := validateCmd([]string{"-plugins=false", path}, &stdout, &stderr); rc != 0 {
		t.Errorf("validate -plugins=false: rc %d\n%s", rc, stderr.String())
	}
}

// TestReloadWarnsOfPipelineChanges: a reload whose pipeline block differs
// from the running one is applied (the service part) with a warning that
// names each change and says it takes effect at restart; a reload that
// changes only the service part warns of nothing.
func TestReloadWarnsOfPipelineChanges(t *testing.T) {
	s, src, path, write := offlineServices(t)
	var stderr bytes.Buffer
	write(strings.Replace(src, `weight  = 2`, `weight  = 3`, 1))
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil || strings.Contains(stderr.String(), "warning") {
		t.Fatalf("a service-only reload: %v\n%s", err, stderr.String())
	}
	write(strings.NewReplacer("capacity    = 65536", "capacity    = 1000", `"GREEncap" "encap"`, `"IPIPEncap" "encap"`,
		"workers = 1", "workers = 2", `weight  = 2`, `weight  = 4`).Replace(src))
	gen := s.ctl.Snapshot().Generation
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("reload: %v\n%s", err, stderr.String())
	}
	if s.ctl.Snapshot().Generation != gen+1 {
		t.Error("the service part of the reload was not applied")
	}
	for _, want := range []string{
		path + ":22:3: warning: Pipeline changes take effect at restart",
		"element `ct` (ConnTrack): capacity 65536 → 1000",
		"element `encap` changed type from GREEncap to IPIPEncap",
		"workers changed from 1 to 2",
		"restart xlbd to run the new pipeline",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("reload output lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestReloadKeepsSeed: a reload that changes hash_seed applies the rest,
// keeps the running seed (established flows are found in ConnTrack by
// their hash) and warns at the attribute that the seed changes at restart.
func TestReloadKeepsSeed(t *testing.T) {
	s, src, path, write := offlineServices(t)
	seed := s.ctl.Snapshot().HashSeed
	write(strings.NewReplacer("hash_seed = 20261121", "hash_seed = 7", `weight  = 2`, `weight  = 3`).Replace(src))
	gen := s.ctl.Snapshot().Generation
	var stderr bytes.Buffer
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("reload: %v\n%s", err, stderr.String())
	}
	if got := s.ctl.Snapshot(); got.Generation != gen+1 || got.HashSeed != seed {
		t.Errorf("generation %d seed %d after the reload, want %d and the running seed %d", got.Generation, got.HashSeed, gen+1, seed)
	}
	for _, want := range []string{
		path + ":13:1: warning: hash_seed changes take effect at restart",
		"hash_seed is 7 here and 20261121 in the running configuration",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("reload output lacks %q:\n%s", want, stderr.String())
		}
	}
}

// TestUsage: help asked for goes to stdout with exit 0; no command or an
// unknown one prints usage to stderr with exit 2.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		rc             int
		stdout, stderr bool // usage printed there
	}{
		{[]string{"-h"}, 0, true, false},
		{[]string{"--help"}, 0, true, false},
		{[]string{"help"}, 0, true, false},
		{nil, 2, false, true},
		{[]string{"bogus"}, 2, false, true},
	} {
		var stdout, stderr bytes.Buffer
		rc := xlbd(tc.args, &stdout, &stderr)
		if rc != tc.rc || strings.Contains(stdout.String(), "usage: xlbd") != tc.stdout ||
			strings.Contains(stderr.String(), "usage: xlbd") != tc.stderr {
			t.Errorf("xlbd %q: rc %d, stdout %q, stderr %q", tc.args, rc, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if rc := xlbd([]string{"bogus"}, &stdout, &stderr); rc != 2 || !strings.HasPrefix(stderr.String(), `xlbd: unknown command "bogus"`) {
		t.Errorf("unknown command: rc %d, stderr %q", rc, stderr.String())
	}
}

// TestVersion: xlbd version names the module version, the VCS revision
// with its dirty flag, the Go version and the plugin protocol versions.
func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if rc := xlbd([]string{"version"}, &stdout, &stderr); rc != 0 ||
		!strings.Contains(stdout.String(), "go "+runtime.Version()) || !strings.Contains(stdout.String(), "plugin protocol versions: 1\n") {
		t.Errorf("xlbd version: rc %d\n%s%s", rc, stdout.String(), stderr.String())
	}
	stdout.Reset()
	writeVersion(&stdout, &debug.BuildInfo{Main: debug.Module{Path: "github.com/xlbproject/xlb", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "9717af7c"}, {Key: "vcs.modified", Value: "true"},
			{Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}}})
	want := "xlbd v0.3.0\nrevision 9717af7c (modified) (2026-01-02T03:04:05Z)\ngo " + runtime.Version() + " " +
		runtime.GOOS + "/" + runtime.GOARCH + "\nplugin protocol versions: 1\n"
	if stdout.String() != want {
		t.Errorf("version printed\n%s\nwant\n%s", stdout.String(), want)
	}
}

// TestDeepNesting: a file nested too deeply for the parser (100,000
// parentheses, which overflowed the goroutine stack and ended the process)
// is refused at its position by validate and fmt, and by a reload, which
// keeps the running configuration; the report stays short.
func TestDeepNesting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "deep.hcl")
	deep := "locals {\n  x = " + strings.Repeat("(", 100000) + "1" + strings.Repeat(")", 100000) + "\n}\n"
	if err := os.WriteFile(path, []byte(deep), 0o644); err != nil {
		t.Fatal(err)
	}
	want := path + ":2:1006: error: Expression nested too deeply"
	var stdout, stderr bytes.Buffer
	if rc := validateCmd([]string{"-plugins=false", path}, &stdout, &stderr); rc != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("validate: rc %d, stderr %.2000q; want rc 1 and %q", rc, stderr.String(), want)
	}
	if stderr.Len() > 2000 {
		t.Errorf("validate printed %d bytes for one diagnostic", stderr.Len())
	}
	stderr.Reset()
	if rc := fmtCmd([]string{path}, &stdout, &stderr); rc != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("fmt: rc %d, stderr %.2000q", rc, stderr.String())
	}

	s, _, live, write := offlineServices(t)
	gen := s.ctl.Snapshot().Generation
	write(deep)
	if _, err := s.apply(live, varFlags{}, &stderr); err == nil || s.ctl.Snapshot().Generation != gen {
		t.Errorf("a reload with the deep file: %v, generation %d (was %d)", err, s.ctl.Snapshot().Generation, gen)
	}
}

// TestReloadEvaluationBounded: a reload whose file asks for gigabytes when
// evaluated (locals that each double the one before) is evaluated first by
// a bounded child xlbd and rejected, without the daemon evaluating it; an
// ordinary reload still goes through the child and is applied.
func TestReloadEvaluationBounded(t *testing.T) {
	s, src, path, write := offlineServices(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s.pre = &precheck{exe: exe, env: []string{asXLBD + "=1"}, heap: 256 << 20, cpu: 30 * time.Second}
	var bomb strings.Builder
	bomb.WriteString("locals {\n  b0 = \"0123456789abcdef\"\n")
	for i := 1; i <= 27; i++ {
		fmt.Fprintf(&bomb, "  b%d = \"${local.b%d}${local.b%d}\"\n", i, i-1, i-1)
	}
	bomb.WriteString("}\n")
	gen := s.ctl.Snapshot().Generation
	write(strings.Replace(src, "hash_seed", "# 2 GiB\n"+bomb.String()+"hash_seed", 1))
	var stderr bytes.Buffer
	if _, err := s.apply(path, varFlags{}, &stderr); err == nil || s.ctl.Snapshot().Generation != gen ||
		!strings.Contains(stderr.String(), "Configuration not evaluated") || !strings.Contains(stderr.String(), "more than 256 MiB") {
		t.Fatalf("the bomb: %v, generation %d (was %d)\n%s", err, s.ctl.Snapshot().Generation, gen, stderr.String())
	}
	stderr.Reset()
	write(strings.Replace(src, `weight  = 2`, `weight  = 3`, 1))
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil || s.ctl.Snapshot().Generation != gen+1 {
		t.Fatalf("an ordinary reload through the child: %v, generation %d (was %d)\n%s", err, s.ctl.Snapshot().Generation, gen, stderr.String())
	}
}

// TestApplyLogsDigest: every applied configuration is logged with its
// generation and config digest, so that operators can compare nodes; the
// same file gives the same digest, a changed one another.
func TestApplyLogsDigest(t *testing.T) {
	s, src, path, write := offlineServices(t)
	var logs bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	first := s.ctl.Snapshot()
	line := func(gen uint64, digest string) string {
		return fmt.Sprintf(`msg="configuration applied" generation=%d config_digest=%s`, gen, snapshot.ShortDigest(digest))
	}
	var stderr bytes.Buffer
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatal(err)
	}
	if s.ctl.Snapshot().ConfigDigest != first.ConfigDigest || len(first.ConfigDigest) != 64 {
		t.Fatalf("the same file applied again: digest %q, want %q", s.ctl.Snapshot().ConfigDigest, first.ConfigDigest)
	}
	write(strings.Replace(src, `weight  = 2`, `weight  = 3`, 1))
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatal(err)
	}
	changed := s.ctl.Snapshot().ConfigDigest
	if changed == first.ConfigDigest {
		t.Fatal("a changed weight left the config digest as it was")
	}
	for _, want := range []string{line(first.Generation+1, first.ConfigDigest), line(first.Generation+2, changed)} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// TestRunRefusesWhatTheHostLacks: xlbd run checks, before the pipeline
// starts, what its elements need of the host, and refuses to start with
// each problem and its fix on a line of its own.
func TestRunRefusesWhatTheHostLacks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.hcl")
	src := "pipeline {\n  element \"RxXDP\" \"rx\" {\n    interface = \"xlbnope0\"\n  }\n  element \"Discard\" \"drop\" {}\n  connect = [\"rx -> drop\"]\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "-pin=false", "-admin-socket", "", "-config", path)
	cmd.Env = append(os.Environ(), asXLBD+"=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("xlbd run with a missing interface: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{"xlbd run: this host cannot run " + path + ":\n",
		"  - `rx` (RxXDP): interface \"xlbnope0\" does not exist in this network namespace"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestRunNotifiesSystemd: under a Type=notify unit (NOTIFY_SOCKET set),
// xlbd run says READY=1 once the pipeline runs, with its PID, and
// STOPPING=1 on SIGTERM.
func TestRunNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	path := filepath.Join(dir, "x.hcl")
	src := "pipeline {\n  element \"TestIdle\" \"rx\" {}\n  element \"Discard\" \"drop\" {}\n  connect = [\"rx -> drop\"]\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := startRun(t, []string{"NOTIFY_SOCKET=" + sock}, "-admin-socket", "", "-quiet", "-config", path)
	stderr := &cmd.stderr
	next := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v\n%s", err, stderr.String())
		}
		return string(buf[:n])
	}
	ready := next()
	if !strings.HasPrefix(ready, "READY=1\n") || !strings.Contains(ready, fmt.Sprintf("MAINPID=%d", cmd.Process.Pid)) {
		t.Errorf("first notification %q, want READY=1 with MAINPID=%d", ready, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if stopping := next(); !strings.HasPrefix(stopping, "STOPPING=1\n") {
		t.Errorf("notification on SIGTERM %q, want STOPPING=1", stopping)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("xlbd: %v\n%s", err, stderr.String())
	}
}

// TestRunLogFlags: -log-format json makes every line xlbd run writes,
// its plugins' included, one JSON object; -log-level warn leaves out info;
// a bad value is refused at once.
func TestRunLogFlags(t *testing.T) {
	dir := t.TempDir()
	path := sourcesFile(t, dir, "")
	writeDoc(t, dir, "web", webPool)
	run := func(level string) string {
		t.Helper()
		status := filepath.Join(t.TempDir(), "status.json")
		cmd := startRun(t, nil, "-admin-socket", "", "-quiet", "-config", path, "-log-format", "json", "-log-level", level, "-status", status)
		stderr := &cmd.stderr
		waitUntil(t, "the configuration applied", stderr, func() bool {
			st := readStatus(t, status)
			return st != nil && st.Generation > 0
		})
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("xlbd: %v\n%s", err, stderr.String())
		}
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("-log-format json wrote a line that is not JSON: %q", line)
			}
		}
		return stderr.String()
	}
	info := run("info")
	if !strings.Contains(info, `"plugin":"etcd"`) || !strings.Contains(info, `"msg":"configuration applied"`) {
		t.Errorf("the JSON log lacks the plugin's lines or the applied line:\n%s", info)
	}
	if warn := run("warn"); strings.Contains(warn, `"level":"INFO"`) {
		t.Errorf("-log-level warn wrote info lines:\n%s", warn)
	}
	for _, bad := range [][]string{{"-log-format", "xml"}, {"-log-level", "loud"}} {
		var stderr bytes.Buffer
		if rc := runCmd(append([]string{"-config", path}, bad...), io.Discard, &stderr); rc != 2 || !strings.Contains(stderr.String(), bad[0]) {
			t.Errorf("xlbd run %v: rc %d, %s", bad, rc, stderr.String())
		}
	}
}

// child is an `xlbd run` a test started: this test binary, as xlbd.
type child struct {
	*exec.Cmd
	stdout, stderr testenv.Buffer
}

// startRun starts `xlbd run -pin=false args...` as a child, with env added
// to its environment; the test's end kills it if it still runs. It serves
// no metrics unless args ask (a later flag wins): children running at once
// would all try the default port.
func startRun(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	c := &child{Cmd: exec.Command(os.Args[0], append([]string{"run", "-pin=false", "-metrics-addr", ""}, args...)...)}
	c.Env = append(append(os.Environ(), asXLBD+"=1"), env...)
	c.Stdout, c.Stderr = &c.stdout, &c.stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Process.Kill() })
	return c
}

// TestReloadRefusesAmbiguousNAT: with NAT and workers = 2 running, a
// reload whose second VIP makes the web backends' endpoints ambiguous is
// refused at the NAT element, and the running configuration stays.
func TestReloadRefusesAmbiguousNAT(t *testing.T) {
	s, src, path, write := offlineServices(t)
	nat := strings.Replace(strings.Replace(src, `element "GREEncap" "encap" {`, `element "NAT" "encap" {`+"\n    conntrack = \"ct\"", 1), "workers = 1", "workers = 2", 1)
	var stderr bytes.Buffer
	write(nat)
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("NAT without ambiguous endpoints: %v\n%s", err, stderr.String())
	}
	gen := s.ctl.Snapshot().Generation
	stderr.Reset()
	write(nat + "vip \"web4b\" {\n  address  = \"192.0.2.11\"\n  protocol = \"tcp\"\n  ports    = [80]\n  pool     = \"web\"\n}\n")
	if _, err := s.apply(path, varFlags{}, &stderr); err == nil {
		t.Fatal("a reload that makes NAT's endpoints ambiguous under 2 workers must be refused")
	}
	if !strings.Contains(stderr.String(), "error: Refused at start") || !strings.Contains(stderr.String(), "serves web4 (192.0.2.10:80) and web4b (192.0.2.11:80)") {
		t.Errorf("the refusal does not say why:\n%s", stderr.String())
	}
	if s.ctl.Snapshot().Generation != gen || len(s.ctl.Snapshot().VIPs) != 4 {
		t.Fatal("a refused reload changed the running configuration")
	}
}

// TestValidateTranslatorWorkers: the example with NAT in GREEncap's place
// and a second VIP on the web pool's port 80, so that each web backend's
// 80/tcp serves two VIP endpoints, and with FullNAT there. Validate
// reports what xlbd run would refuse at start: NAT's ambiguous endpoints
// with workers = 2 (an error at the element), with workers = 0 (a
// warning: xlbd may pick one), nothing with workers = 1; FullNAT with
// workers = 2 (it runs one).
func TestValidateTranslatorWorkers(t *testing.T) {
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	nat := strings.Replace(string(src), `element "GREEncap" "encap" {`, `element "NAT" "encap" {`+"\n    conntrack = \"ct\"", 1)
	nat += `
vip "web4b" {
  address  = "192.0.2.11"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
}
`
	fullnat := strings.Replace(string(src), `element "GREEncap" "encap" {`, `element "FullNAT" "encap" {`+"\n    conntrack = \"ct\"\n    source_pool = [\"192.0.2.201\"]", 1)
	workers := func(src string, n string) string {
		return strings.Replace(src, "workers = 1", n, 1)
	}
	const ambiguous = "198.51.100.1:80/tcp serves web4 (192.0.2.10:80) and web4b (192.0.2.11:80)"
	for _, tc := range []struct {
		name, src string
		rc        int
		want      []string // in stderr; "" none
	}{
		{"NAT, workers = 1", nat, 0, nil},
		{"NAT, workers = 2", workers(nat, "workers = 2"), 1, []string{"error: Refused at start", "While checking `encap` (NAT)", ambiguous}},
		{"NAT, workers = 0", workers(nat, ""), 0, []string{"warning: Refused at start with several workers", ambiguous}},
		{"FullNAT, workers = 1", fullnat, 0, nil},
		{"FullNAT, workers = 2", workers(fullnat, "workers = 2"), 1, []string{"error: Refused at start", "FullNAT runs with one worker (this graph has 2)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nat.hcl")
			if err := os.WriteFile(path, []byte(tc.src), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if rc := validateCmd([]string{"-plugins=false", path}, &stdout, &stderr); rc != tc.rc {
				t.Fatalf("validate: rc %d, want %d: %s%s", rc, tc.rc, stdout.String(), stderr.String())
			}
			if tc.want == nil && stderr.Len() > 0 {
				t.Errorf("validate printed:\n%s", stderr.String())
			}
			line := 1 + strings.Count(tc.src[:strings.Index(tc.src, `"encap" {`)], "\n")
			for _, want := range tc.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("validate output lacks %q:\n%s", want, stderr.String())
				}
			}
			if tc.want != nil && !strings.Contains(stderr.String(), fmt.Sprintf("%s:%d:", path, line)) {
				t.Errorf("validate output does not point at line %d:\n%s", line, stderr.String())
			}
		})
	}
}
