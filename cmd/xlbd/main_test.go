package main

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control"
)

var update = flag.Bool("update", false, "rewrite examples/offline/expected.txt")

const example = "../../examples/offline/offline.hcl"

// TestOfflineExample runs the example as `make demo` does and compares what
// it prints with the expected output committed beside it.
func TestOfflineExample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.pcap")
	var stdout, stderr bytes.Buffer
	if rc := runCmd([]string{"-config", example, "-var", "output=" + out}, &stdout, &stderr); rc != 0 {
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
	broken = strings.Replace(broken, `"ct.miss -> sel -> ct.learn"`, `"ct.mis -> sel -> ct.learn"`, 1)
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
		path + ":39:6: error: Unknown output port",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("validate output lacks %q:\n%s", want, stderr.String())
		}
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

// TestReloadKeepsRunningConfig: a reload with a broken file is refused and
// the published snapshot stays; a good one is applied.
func TestReloadKeepsRunningConfig(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.hcl")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(string(src))
	ctl := control.New()
	var stderr bytes.Buffer
	if err := reload(path, varFlags{}, ctl, nil, &stderr); err != nil {
		t.Fatalf("first load: %v\n%s", err, stderr.String())
	}
	gen := ctl.Snapshot().Generation
	write(strings.Replace(string(src), `pools = ["canary"]`, `pools = ["canry"]`, 1))
	if err := reload(path, varFlags{}, ctl, nil, &stderr); err == nil {
		t.Fatal("a reload with an unknown pool must be refused")
	}
	if ctl.Snapshot().Generation != gen || len(ctl.Snapshot().VIPs) != 4 {
		t.Fatal("a refused reload changed the running configuration")
	}
	write(strings.Replace(string(src), `weight  = 2`, `weight  = 3`, 1))
	if err := reload(path, varFlags{}, ctl, nil, &stderr); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	if ctl.Snapshot().Generation != gen+1 {
		t.Errorf("generation %d after a good reload, want %d", ctl.Snapshot().Generation, gen+1)
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
	ctl := control.New()
	var logs bytes.Buffer
	hc := newHealthChecks(dir, ctl, slog.New(slog.NewTextHandler(&logs, nil)))
	defer hc.stop()
	var stderr bytes.Buffer
	write(`[200, "204"]`, 10)
	if err := reload(path, varFlags{}, ctl, hc, &stderr); err != nil {
		t.Fatalf("pools with different parameters: %v\n%s", err, stderr.String())
	}
	gen := ctl.Snapshot().Generation
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
		{`200`, 0, "concurrency", `Plugin refused its settings; health-check plugin "http": concurrency:`},
	} {
		stderr.Reset()
		write(tc.expect, tc.concurrency)
		if err := reload(path, varFlags{}, ctl, hc, &stderr); err == nil {
			t.Fatalf("%s: reload accepted", tc.at)
		}
		pos := fmt.Sprintf("x.hcl:%d:", line(tc.at))
		if !strings.Contains(stderr.String(), pos) || !strings.Contains(stderr.String(), strings.Split(tc.want, "; ")[0]) ||
			!strings.Contains(stderr.String(), strings.Split(tc.want, "; ")[1]) {
			t.Errorf("%s: diagnostics\n%s\nwant %s and %q", tc.at, stderr.String(), pos, tc.want)
		}
		if ctl.Snapshot().Generation != gen {
			t.Fatalf("%s: a refused reload changed the running configuration", tc.at)
		}
	}
	write(`200`, 20)
	if err := reload(path, varFlags{}, ctl, hc, &stderr); err != nil {
		t.Fatalf("good reload: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(logs.String(), `msg="health-check plugin reconfigured" plugin=http config="{\"concurrency\":20}"`) {
		t.Errorf("plugin not reconfigured:\n%s", logs.String())
	}
	if st := hc.sched.Stats(); len(st.Checks) != 2 {
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

	good, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(filepath.Dir(path), "live.hcl")
	ctl := control.New()
	if err := os.WriteFile(live, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reload(live, varFlags{}, ctl, nil, &stderr); err != nil {
		t.Fatalf("first load: %v\n%s", err, stderr.String())
	}
	gen := ctl.Snapshot().Generation
	if err := os.WriteFile(live, []byte(deep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reload(live, varFlags{}, ctl, nil, &stderr); err == nil || ctl.Snapshot().Generation != gen {
		t.Errorf("a reload with the deep file: %v, generation %d (was %d)", err, ctl.Snapshot().Generation, gen)
	}
}
