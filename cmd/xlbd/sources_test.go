package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/fakeplugin"
	"github.com/xlbproject/xlb/internal/testenv"
)

// webPool is the document that holds VIP web's pool.
const webPool = "pool \"web\" {\n  backend \"a\" {\n    address = \"198.51.100.1\"\n  }\n}\n"

// sourcesFile writes, in dir, a configuration whose VIP web uses a pool
// that lives in the fake config source "etcd" (the files of dir/docs, a
// path relative to the file's directory, named etcd:/x/NAME), which
// publishes through dir/peers; with the fake announcer as "bgp" when
// announcer is set. The plugins serve as the links' names say: a child
// xlbd must not have fakeplugin.Env, which would make it a plugin too.
func sourcesFile(t *testing.T, dir, announcer string) string {
	t.Helper()
	for _, d := range []string{"docs", "peers"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := fakeplugin.Source(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	an := ""
	if announcer != "" {
		an = fmt.Sprintf("announce \"bgp\" {\n  path = %q\n  record = %q\n  drain_time = \"0s\"\n}\n", announcer, filepath.Join(dir, "calls"))
	}
	main := fmt.Sprintf(`hash_seed = 1
pipeline {
  element "TestIdle" "rx" {}
  element "Discard" "drop" {}
  connect = ["rx -> drop"]
}
source "etcd" {
  path   = %q
  dir    = "docs"
  prefix = "etcd:/x/"
  peers  = %q
}
%svip "web" {
  address = "192.0.2.10"
  pool    = "web"
}
`, src, filepath.Join(dir, "peers"), an)
	path := filepath.Join(dir, "x.hcl")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeDoc writes a document of the fake source atomically: the source
// polls, and must not read a half-written file (a dot file it ignores is
// renamed over it).
func writeDoc(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "docs", ".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "docs", name)); err != nil {
		t.Fatal(err)
	}
}

// readStatus reads the status file, nil while there is none.
func readStatus(t *testing.T, path string) *Status {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status %s: %v", b, err)
	}
	return &st
}

func waitUntil(t *testing.T, what string, logs *testenv.Buffer, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("not within 20s: %s; log:\n%s", what, logs.String())
		}
	}
}

// peer writes a peer's published state, as the fake source stores it.
func peer(t *testing.T, dir, node, sourcesDigest, configDigest string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"node": node, "revision": "7", "sources_digest": sourcesDigest, "config_digest": configDigest})
	if err := os.WriteFile(filepath.Join(dir, "peers", node+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunWithSources runs xlbd with a config source that holds the pool of
// its VIP: it waits for the source's first documents before it applies,
// applies a change of a document, rejects a bad one (named at its
// etcd key, line and column, in the log and in the status file) while the
// running configuration stays, publishes its state, and withdraws every
// route while two peers that read the same documents agree with each
// other and not with it, announcing again when they are gone.
func TestRunWithSources(t *testing.T) {
	dir := t.TempDir()
	announcer, err := fakeplugin.Announcer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	path := sourcesFile(t, dir, announcer)
	writeDoc(t, dir, ".unavailable", "etcd: connection refused")
	statusPath := filepath.Join(dir, "status.json")
	cmd := startRun(t, nil, "-admin-socket", "", "-config", path, "-node", "lb1", "-status", statusPath)
	stdout, stderr := &cmd.stdout, &cmd.stderr
	waitUntil(t, "the source unavailable at start-up", stderr, func() bool {
		return strings.Contains(stderr.String(), "config source unavailable")
	})
	if readStatus(t, statusPath) != nil {
		t.Fatal("a configuration was applied before the source sent its documents")
	}
	writeDoc(t, dir, "web", webPool)
	if err := os.Remove(filepath.Join(dir, "docs", ".unavailable")); err != nil {
		t.Fatal(err)
	}
	var st *Status
	waitUntil(t, "the first configuration applied", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st != nil && st.Generation > 0 && len(st.Sources) == 1 && st.Sources[0].State == "ok"
	})
	if st.Node != "lb1" || st.Config != path || len(st.ConfigDigest) != 64 || st.Rejected != nil || st.Sources[0].Documents != 1 {
		t.Errorf("status after start-up: %+v", st)
	}
	waitUntil(t, "the VIP announced", stderr, func() bool { _, ok := firstCall(calls(t, dir), announces("192.0.2.10/32")); return ok })
	waitUntil(t, "this node's state published", stderr, func() bool {
		_, err := os.Stat(filepath.Join(dir, "peers", "lb1.json"))
		return err == nil
	})

	gen := st.Generation
	writeDoc(t, dir, "web", strings.Replace(webPool, "198.51.100.1", "198.51.100.2", 1))
	waitUntil(t, "the changed document applied", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st.Generation > gen
	})
	gen, digest := st.Generation, st.ConfigDigest
	writeDoc(t, dir, "web", "pool \"web\" {\n  backend \"a\" {\n    address = \"198.51.100.999\"\n  }\n}\n")
	waitUntil(t, "the bad document rejected", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st.Rejected != nil
	})
	want := "etcd:/x/web:3:15: error: Invalid address"
	if st.Generation != gen || st.ConfigDigest != digest || st.Rejected.Source != "etcd" || st.Rejected.Revision == "" ||
		!strings.Contains(st.Rejected.Diagnostics, want) || !strings.Contains(st.Rejected.Diagnostics, `3 |     address = "198.51.100.999"`) {
		t.Errorf("status after the bad document: %+v\n%s\nwant %q with its source line", st, st.Rejected.Diagnostics, want)
	}
	if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), `msg="reload rejected; the running configuration stays"`) {
		t.Errorf("the log lacks the rejection at %q", want)
	}
	writeDoc(t, dir, "web", webPool)
	waitUntil(t, "the good document applied again", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st.Generation > gen && st.Rejected == nil
	})

	// Two peers with the same inputs agree with each other, not with lb1.
	var self struct {
		SourcesDigest string `json:"sources_digest"`
	}
	waitUntil(t, "lb1's state for the good document", stderr, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "peers", "lb1.json"))
		return json.Unmarshal(b, &self) == nil && strings.Contains(string(b), st.ConfigDigest)
	})
	before := len(calls(t, dir))
	peer(t, dir, "lb2", self.SourcesDigest, strings.Repeat("e", 64))
	peer(t, dir, "lb3", self.SourcesDigest, strings.Repeat("e", 64))
	waitUntil(t, "every route withdrawn", stderr, func() bool {
		cs := calls(t, dir)
		return len(cs) > before && cs[len(cs)-1].Method == "SetRoutes" && len(cs[len(cs)-1].Routes) == 0
	})
	st = readStatus(t, statusPath)
	if !st.Cluster.Checked || st.Cluster.Agree || !st.Cluster.Withdrawn || len(st.Cluster.Nodes) != 3 || len(st.Cluster.Problems) != 2 {
		t.Errorf("cluster status while lb1 disagrees: %+v", st.Cluster)
	}
	for _, want := range []string{`msg="cluster disagrees: lb2 disagrees at revision 7: config digest eeeeeeeeeeee`,
		`msg="withdrawing every route until it agrees"`, `msg="every route withdrawn until the cluster agrees"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	for _, n := range []string{"lb2", "lb3"} {
		if err := os.Remove(filepath.Join(dir, "peers", n+".json")); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the VIP announced again", stderr, func() bool {
		cs := calls(t, dir)
		return len(cs[len(cs)-1].Routes) == 1
	})
	if !strings.Contains(stderr.String(), `msg="cluster agrees" nodes=lb1`) {
		t.Error(`log lacks "cluster agrees"`)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("xlbd: %v\n%s", err, stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "== config sources") || !regexpMatch(`etcd +ok +\d+ +1 `, out) {
		t.Errorf("exit tables lack the source:\n%s", out)
	}
}

// TestRunStopsWhileWaitingForSources: SIGTERM while xlbd waits for its
// sources' first documents ends it cleanly, having applied nothing.
func TestRunStopsWhileWaitingForSources(t *testing.T) {
	dir := t.TempDir()
	path := sourcesFile(t, dir, "")
	writeDoc(t, dir, ".unavailable", "etcd: connection refused")
	cmd := startRun(t, nil, "-admin-socket", "", "-config", path)
	stderr := &cmd.stderr
	waitUntil(t, "the source unavailable", stderr, func() bool { return strings.Contains(stderr.String(), "config source unavailable") })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || !strings.Contains(stderr.String(), "stopped while waiting for the config sources") ||
		strings.Contains(stderr.String(), "configuration applied") {
		t.Errorf("xlbd: %v\n%s", err, stderr.String())
	}
}

// TestValidateWithSources: validate reads the sources (their first
// documents) and checks the whole, naming a bad document at its key, line
// and column with its source line; with -plugins=false it says the
// sources were not read.
func TestValidateWithSources(t *testing.T) {
	dir := t.TempDir()
	path := sourcesFile(t, dir, "")
	writeDoc(t, dir, "web", webPool)
	var stdout, stderr bytes.Buffer
	if rc := validateCmd([]string{path}, &stdout, &stderr); rc != 0 || stdout.String() != path+": ok\n" {
		t.Errorf("validate: rc %d\n%s%s", rc, stdout.String(), stderr.String())
	}
	writeDoc(t, dir, "web", strings.Replace(webPool, `"web"`, `"wbe"`, 1))
	stdout.Reset()
	stderr.Reset()
	want := "x.hcl:15:3: error: Unknown pool"
	if rc := validateCmd([]string{path}, &stdout, &stderr); rc != 1 || !strings.Contains(stderr.String(), want) {
		t.Errorf("validate with the pool renamed: rc %d, want %q in\n%s", rc, want, stderr.String())
	}
	writeDoc(t, dir, "web", "pool \"web\" {\n  backend \"a\" {\n    adress = \"198.51.100.1\"\n  }\n}\n")
	stderr.Reset()
	if rc := validateCmd([]string{path}, &stdout, &stderr); rc != 1 || !strings.Contains(stderr.String(), "etcd:/x/web:3:5: error: Unsupported argument") ||
		!strings.Contains(stderr.String(), `3 |     adress = "198.51.100.1"`) {
		t.Errorf("validate with a bad document: rc %d\n%s", rc, stderr.String())
	}
	// A syntax error stops the decoding of the whole file, its source
	// blocks included: the document must still be rejected, not dropped.
	writeDoc(t, dir, "web", strings.Replace(webPool, "\n}", "\n  ports = [80,\n}", 1))
	stderr.Reset()
	if rc := validateCmd([]string{path}, &stdout, &stderr); rc != 1 || !strings.Contains(stderr.String(), "error: Invalid expression") {
		t.Errorf("validate with a syntax error in a document: rc %d\n%s%s", rc, stdout.String(), stderr.String())
	}
	stderr.Reset()
	if validateCmd([]string{"-plugins=false", path}, &stdout, &stderr); !strings.Contains(stderr.String(), "note: config sources etcd not read (-plugins=false)") {
		t.Errorf("validate -plugins=false:\n%s", stderr.String())
	}
}

// TestReloadEvaluatesSourcesBounded: a document from a config source
// whose evaluation asks for gigabytes (for-expressions nested over
// range(1024); a fragment has no locals) is evaluated first by the bounded child and rejected: the
// daemon never evaluates it, its heap stays small, and the running
// configuration stays; an ordinary document goes through the child.
func TestReloadEvaluatesSourcesBounded(t *testing.T) {
	s, src, path, write := offlineServices(t)
	write(strings.Replace(src, "pools = [\"canary\"]\n", "pools = [\"canary\", \"extra\"]\n", 1) + "source \"etcd\" {}\n")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s.pre = &precheck{exe: exe, env: []string{asXLBD + "=1"}, heap: 256 << 20, cpu: 30 * time.Second}
	extra := func(address string) sourceDoc {
		return sourceDoc{Source: "etcd", Name: "etcd:/x/extra", Format: "hcl",
			Content: []byte(fmt.Sprintf("pool \"extra\" {\n  backend \"x\" {\n    address = %s\n  }\n}\n", address))}
	}
	gen := s.ctl.Snapshot().Generation
	var stderr bytes.Buffer
	// An interpolation: not literal, so the child evaluates it.
	if _, err := s.transactDocs(path, varFlags{}, []sourceDoc{extra(`"198.51.100.${9}"`)}, &stderr, true); err != nil || s.ctl.Snapshot().Generation != gen+1 {
		t.Fatalf("an ordinary document through the child: %v\n%s", err, stderr.String())
	}
	gen = s.ctl.Snapshot().Generation
	// 4 GiB: 1024 × 1024 copies of a 4 KiB string.
	bomb := extra(`"${join("", [for a in range(1024): join("", [for b in range(1024): "` + strings.Repeat("x", 4096) + `"])])}"`)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	stderr.Reset()
	_, err = s.transactDocs(path, varFlags{}, []sourceDoc{bomb}, &stderr, true)
	runtime.ReadMemStats(&after)
	if err == nil || s.ctl.Snapshot().Generation != gen || !strings.Contains(stderr.String(), "Configuration not evaluated") ||
		!strings.Contains(stderr.String(), "more than 256 MiB") {
		t.Fatalf("the bomb: %v, generation %d (was %d)\n%s", err, s.ctl.Snapshot().Generation, gen, stderr.String())
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 64<<20 {
		t.Errorf("the daemon's heap grew by %d MiB: it evaluated the document itself", grew>>20)
	}
}

// TestPrecheckOnlyWhatMayCostMore: the bounded child is given only the
// documents that are neither literal nor evaluated before under the same
// main file, and is not run when none is left: with a child that cannot
// run, a literal change is applied, a new expression is refused, and so
// is any document once the main file changed.
func TestPrecheckOnlyWhatMayCostMore(t *testing.T) {
	s, src, path, write := offlineServices(t)
	write(strings.Replace(src, "pools = [\"canary\"]\n", "pools = [\"canary\", \"extra\"]\n", 1) + "source \"etcd\" {}\n")
	s.pre = &precheck{exe: "/nonexistent/xlbd", heap: 256 << 20, cpu: 30 * time.Second}
	doc := func(address string) []sourceDoc {
		return []sourceDoc{{Source: "etcd", Name: "etcd:/x/extra", Format: "hcl",
			Content: []byte(fmt.Sprintf("pool \"extra\" {\n  backend \"x\" {\n    address = %s\n  }\n}\n", address))}}
	}
	try := func(what string, docs []sourceDoc, applied bool) {
		t.Helper()
		gen := s.ctl.Snapshot().Generation
		var stderr bytes.Buffer
		_, err := s.transactDocs(path, varFlags{}, docs, &stderr, true)
		if applied && (err != nil || s.ctl.Snapshot().Generation != gen+1) {
			t.Errorf("%s: %v, generation %d (was %d), want it applied without the child\n%s", what, err, s.ctl.Snapshot().Generation, gen, stderr.String())
		}
		if !applied && (err == nil || !strings.Contains(stderr.String(), "Configuration not evaluated")) {
			t.Errorf("%s: %v, want it refused for want of the child\n%s", what, err, stderr.String())
		}
	}
	try("a main file the child never evaluated", doc(`"198.51.100.9"`), false)
	main, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.pre.evaluated(main, doc(`"198.51.100.9"`)) // as xlbd run's start-up does
	try("a literal change", doc(`"198.51.100.10"`), true)
	try("the same again", doc(`"198.51.100.10"`), true)
	try("an interpolation", doc(`"198.51.100.${11}"`), false)
	write(string(main) + "# changed\n")
	try("a changed main file", doc(`"198.51.100.10"`), false)
}

// TestRunWithFileSource: xlbd run with the real file source (built here)
// over a directory of fragments, one in HCL's JSON syntax: an editor's
// save (a temp file renamed over the fragment) is applied; a syntax error
// is rejected at the fragment's path and line while the running
// configuration stays; SIGHUP reads the directory anew.
func TestRunWithFileSource(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	build := exec.Command("go", "build", "-o", filepath.Join(plugins, "file"), "../../plugins/source/file")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the file source: %v\n%s", err, out)
	}
	services := filepath.Join(dir, "services.d")
	if err := os.Mkdir(services, 0o755); err != nil {
		t.Fatal(err)
	}
	save := func(name, content string) {
		t.Helper()
		tmp := filepath.Join(services, "."+name+".swp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(services, name)); err != nil {
			t.Fatal(err)
		}
	}
	save("web.hcl", webPool)
	save("api.hcl.json", `{"vip": {"api": {"address": "192.0.2.11", "pool": "web"}}}`)
	main := "hash_seed = 1\npipeline {\n  element \"TestIdle\" \"rx\" {}\n  element \"Discard\" \"drop\" {}\n  connect = [\"rx -> drop\"]\n}\n" +
		"source \"file\" {\n  paths    = [\"services.d\"]\n  debounce = \"50ms\"\n}\nvip \"web\" {\n  address = \"192.0.2.10\"\n  pool    = \"web\"\n}\n"
	path := filepath.Join(dir, "x.hcl")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	statusPath := filepath.Join(dir, "status.json")
	cmd := startRun(t, nil, "-admin-socket", "", "-config", path, "-plugin-dir", plugins, "-node", "lb1", "-status", statusPath)
	stdout, stderr := &cmd.stdout, &cmd.stderr
	var st *Status
	waitUntil(t, "the first configuration applied", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st != nil && st.Generation > 0
	})
	if len(st.Sources) != 1 || st.Sources[0].State != "ok" || st.Sources[0].Documents != 2 {
		t.Errorf("sources after start-up: %+v", st.Sources)
	}
	gen, digest := st.Generation, st.ConfigDigest

	save("web.hcl", strings.Replace(webPool, "198.51.100.1", "198.51.100.2", 1))
	waitUntil(t, "the saved fragment applied", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st.Generation > gen && st.ConfigDigest != digest
	})
	gen, digest = st.Generation, st.ConfigDigest

	save("web.hcl", "pool \"web\" {\n  backend \"a\" {\n    address = \"198.51.100.3\",\n  }\n}\n")
	waitUntil(t, "the broken fragment rejected", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st.Rejected != nil
	})
	if want := "services.d/web.hcl:3:"; !strings.Contains(st.Rejected.Diagnostics, want) || st.Generation != gen || st.ConfigDigest != digest {
		t.Errorf("after a syntax error: generation %d (was %d), digest %s (was %s), diagnostics\n%s\nwant them at %s",
			st.Generation, gen, st.ConfigDigest, digest, st.Rejected.Diagnostics, want)
	}

	save("web.hcl", webPool)
	waitUntil(t, "the repaired fragment applied", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st.Rejected == nil && st.Generation > gen
	})
	// SIGHUP: the file and the directory are read anew and applied.
	gen = st.Generation
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "SIGHUP applied", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st.Generation > gen
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("xlbd run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "== config sources") {
		t.Errorf("the exit tables lack the config sources:\n%s", stdout.String())
	}
}

// TestRunWarnsOfUnservedShards: a node of shard a alone in the fleet (its
// peers as its config source publishes them) reports that VIP dns names
// shard b, which no live node serves, in its status and its log, with
// the shards each node published; once a node of shard b publishes its
// state, the problem is gone and the log says so.
func TestRunWarnsOfUnservedShards(t *testing.T) {
	dir := t.TempDir()
	path := sourcesFile(t, dir, "")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sharded := strings.Replace(string(src), "hash_seed = 1\n", "hash_seed = 1\nshard_names = [\"a\", \"b\"]\nshards = [\"a\"]\n", 1) +
		"vip \"dns\" {\n  address = \"192.0.2.11\"\n  pool    = \"web\"\n  shards  = [\"b\"]\n}\n"
	sharded = strings.Replace(sharded, "  pool    = \"web\"\n}\n", "  pool    = \"web\"\n  shards  = [\"a\"]\n}\n", 1)
	if err := os.WriteFile(path, []byte(sharded), 0o644); err != nil {
		t.Fatal(err)
	}
	writeDoc(t, dir, "web", webPool)
	statusPath := filepath.Join(dir, "status.json")
	cmd := startRun(t, nil, "-admin-socket", "", "-config", path, "-node", "lb1", "-status", statusPath)
	stderr := &cmd.stderr
	const gap = "VIP dns names shard b, which no live node serves: no node serves the VIP"
	var st *Status
	waitUntil(t, "the unserved shard reported", stderr, func() bool {
		st = readStatus(t, statusPath)
		return st != nil && slices.Contains(st.Cluster.Problems, gap)
	})
	if len(st.Cluster.Nodes) != 1 || !slices.Equal(st.Cluster.Nodes[0].Shards, []string{"a"}) {
		t.Errorf("cluster nodes %+v, want lb1 of shard a", st.Cluster.Nodes)
	}
	if want := `level=WARN msg="VIPs name shards no live node serves: ` + gap + `" vips=dns`; !strings.Contains(stderr.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, stderr.String())
	}
	var self map[string]any
	waitUntil(t, "lb1's state published", stderr, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "peers", "lb1.json"))
		return json.Unmarshal(b, &self) == nil && self["shards"] != nil
	})
	self["node"], self["shards"] = "lb2", []string{"b"}
	b, _ := json.Marshal(self)
	if err := os.WriteFile(filepath.Join(dir, "peers", "lb2.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the shard served again", stderr, func() bool {
		st = readStatus(t, statusPath)
		return len(st.Cluster.Nodes) == 2 && len(st.Cluster.Problems) == 0
	})
	if !strings.Contains(stderr.String(), `msg="every VIP's shards have a live node again"`) {
		t.Errorf("log lacks the end of the warning:\n%s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("xlbd: %v\n%s", err, stderr.String())
	}
	if out := cmd.stdout.String(); !regexpMatch(`(?m)^lb1 +self +\S+ +\S+ +a$`, out) || !regexpMatch(`(?m)^lb2 +agrees +\S+ +\S+ +b$`, out) {
		t.Errorf("the exit's cluster table lacks the nodes' shards:\n%s", out)
	}
	_, table, _ := strings.Cut(cmd.stdout.String(), "== cluster")
	t.Logf("the log's lines of shards:\n%s\nthe exit's cluster table:\n== cluster%s", grepLines(stderr.String(), "shards"), table)
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
