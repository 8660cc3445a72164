package host

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/fakeplugin"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// sourceEnv is a fake config source in a set: its documents are the files
// of work/docs, given as a path relative to work, its working directory.
type sourceEnv struct {
	set     *Set
	src     *Sources
	logs    *logBuffer
	work    string // the main file's directory
	docs    string // work/docs
	record  string // one line per Watch call
	path    string // the plugin binary
	dirName string // the relative dir setting
}

func newSourceEnv(t *testing.T) *sourceEnv {
	t.Helper()
	t.Setenv(pluginEnv, "1")
	e := &sourceEnv{work: t.TempDir(), logs: &logBuffer{}, dirName: "docs"}
	e.docs = filepath.Join(e.work, "docs")
	e.record = filepath.Join(e.work, "watches")
	if err := os.Mkdir(e.docs, 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.path, err = fakeplugin.Source(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	e.set = NewSet(Options{Logger: log})
	t.Cleanup(e.set.Stop)
	if e.src, err = NewSources(t.TempDir(), log); err != nil {
		t.Fatal(err)
	}
	e.src.Tick, e.src.RetryMin = 10*time.Millisecond, 10*time.Millisecond
	t.Cleanup(e.src.Stop)
	return e
}

// use runs the set with the fake source as "fake" (settings besides dir,
// record and prefix in extra) and hands it to the adapter.
func (e *sourceEnv) use(t *testing.T, extra string) {
	t.Helper()
	config := fmt.Sprintf(`{"dir":%q,"record":%q,"prefix":"etcd:/x/"%s}`, e.dirName, e.record, extra)
	c, errs := e.set.Prepare(e.src.Decls([]Decl{{Spec: Spec{Name: "fake", Path: e.path, Config: []byte(config)}}}, e.work))
	if errs != nil {
		c.Abort()
		t.Fatal(errs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if errs := c.Commit(ctx); errs != nil {
		c.Abort()
		t.Fatal(errs)
	}
	c.Done()
	e.src.Use(e.set, []string{"fake"})
}

// write writes a document atomically: the source polls, and must not
// read a half-written file (a dot file it ignores is renamed over it).
func (e *sourceEnv) write(t *testing.T, name, content string) {
	t.Helper()
	tmp := filepath.Join(e.docs, ".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.docs, name)); err != nil {
		t.Fatal(err)
	}
}

// state waits for the one source's state to satisfy cond and returns it.
func (e *sourceEnv) state(t *testing.T, what string, cond func(SourceState) bool) SourceState {
	t.Helper()
	var st SourceState
	waitFor(t, 10*time.Second, what, func() bool {
		sts := e.src.States()
		if len(sts) != 1 {
			return false
		}
		st = sts[0]
		return cond(st)
	})
	return st
}

func docNames(st SourceState) string {
	var out []string
	for _, d := range st.Documents {
		out = append(out, d.Name+"="+string(d.Content))
	}
	return strings.Join(out, ",")
}

func watches(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), "watch ", ""))
}

// TestSourcesWatch: a source runs in the main file's directory (its
// relative dir setting finds the documents), its documents and revision
// are kept and every change signalled; an outage keeps the documents,
// logged once at warn, its end at info.
func TestSourcesWatch(t *testing.T) {
	e := newSourceEnv(t)
	e.write(t, "web", "vip {}")
	e.write(t, "pool.json", "{}")
	e.use(t, "")
	st := e.state(t, "the first update", func(st SourceState) bool { return st.Complete })
	if st.State != SourceOK || st.Name != "fake" || docNames(st) != "etcd:/x/pool.json={},etcd:/x/web=vip {}" ||
		st.Documents[0].Format != "json" {
		t.Fatalf("first update: %+v", st)
	}
	<-e.src.Updates()
	e.write(t, "web", "vip { }")
	e.state(t, "the change", func(st SourceState) bool { return strings.Contains(docNames(st), "vip { }") })
	select {
	case <-e.src.Updates():
	case <-time.After(5 * time.Second):
		t.Fatal("the change was not signalled")
	}

	e.write(t, ".unavailable", "etcd: connection refused")
	st = e.state(t, "unavailable", func(st SourceState) bool { return st.State == SourceUnavailable })
	if st.Reason != "etcd: connection refused" || docNames(st) != "etcd:/x/pool.json={},etcd:/x/web=vip { }" {
		t.Errorf("unavailable: %+v, want the reason and the last documents", st)
	}
	e.write(t, ".unavailable", "etcd: still refused")
	e.state(t, "another reason", func(st SourceState) bool { return st.Reason == "etcd: still refused" })
	if err := os.Remove(filepath.Join(e.docs, ".unavailable")); err != nil {
		t.Fatal(err)
	}
	e.state(t, "available again", func(st SourceState) bool { return st.State == SourceOK })
	if n := e.logs.count("config source unavailable: serving the last good configuration", "etcd: connection refused"); n != 1 ||
		e.logs.count("config source unavailable") != 1 {
		t.Errorf("%d warnings for one outage:\n%s", e.logs.count("config source unavailable"), e.logs.String())
	}
	if e.logs.count("config source available again", `"source":"fake"`) != 1 {
		t.Errorf("the outage's end is not logged:\n%s", e.logs.String())
	}
}

// TestSourcesRestartAndResync: a source whose plugin is killed is
// unavailable until the restarted process's Watch sends its documents;
// Resync calls Watch again on the same process.
func TestSourcesRestartAndResync(t *testing.T) {
	e := newSourceEnv(t)
	e.write(t, "web", "a")
	e.use(t, "")
	e.state(t, "the first update", func(st SourceState) bool { return st.Complete })
	pid := e.set.Plugin("fake").Status().PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.state(t, "unavailable while the plugin restarts", func(st SourceState) bool { return st.State == SourceUnavailable })
	e.write(t, "web", "b")
	st := e.state(t, "the new process's documents", func(st SourceState) bool { return st.State == SourceOK && docNames(st) == "etcd:/x/web=b" })
	if w := watches(t, e.record); len(w) != 2 || w[0] != fmt.Sprint(pid) || w[1] == w[0] {
		t.Fatalf("watches by PID %q, want one by %d then one by its successor (state %+v)", w, pid, st)
	}
	e.src.Resync()
	waitFor(t, 10*time.Second, "Watch called again", func() bool { return len(watches(t, e.record)) == 3 })
	if w := watches(t, e.record); w[2] != w[1] {
		t.Errorf("Resync restarted the process: watches %q", w)
	}
	e.state(t, "ok after the resync", func(st SourceState) bool { return st.State == SourceOK && docNames(st) == "etcd:/x/web=b" })
}

// TestSourcesUse: new settings restart the Watch and keep the documents
// until the first update under them; a source no longer used is
// forgotten.
func TestSourcesUse(t *testing.T) {
	e := newSourceEnv(t)
	e.write(t, "web", "a")
	e.use(t, "")
	e.state(t, "the first update", func(st SourceState) bool { return st.Complete })
	other := filepath.Join(e.work, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "api"), []byte("c"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.dirName = "other"
	e.use(t, "")
	e.state(t, "the documents under the new settings", func(st SourceState) bool { return docNames(st) == "etcd:/x/api=c" })
	c, errs := e.set.Prepare(nil)
	if errs != nil {
		t.Fatal(errs)
	}
	c.Done()
	e.src.Use(e.set, nil)
	if sts := e.src.States(); len(sts) != 0 {
		t.Errorf("states after the source was removed: %+v", sts)
	}
}

// TestSourcesPublish: a source with peers publishes this node's state
// (again when its process is new) and sends the peers'; one without says
// it is not a publisher, silently.
func TestSourcesPublish(t *testing.T) {
	e := newSourceEnv(t)
	peers := filepath.Join(e.work, "peers")
	if err := os.Mkdir(peers, 0o755); err != nil {
		t.Fatal(err)
	}
	e.use(t, fmt.Sprintf(`,"peers":%q`, peers))
	if _, ok := e.src.PeerStates(); ok {
		t.Error("peers known before any update")
	}
	e.src.Publish(sdk.NodeStatus{Node: "lb1", Revision: "57", ConfigDigest: "c1"})
	var nodes []sdk.NodeStatus
	waitFor(t, 10*time.Second, "lb1 among the peers", func() bool {
		var ok bool
		nodes, ok = e.src.PeerStates()
		return ok && len(nodes) == 1 && nodes[0].Node == "lb1" && nodes[0].ConfigDigest == "c1"
	})
	if err := os.WriteFile(filepath.Join(peers, "lb2.json"), []byte(`{"node":"lb2","config_digest":"c2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "lb2 among the peers", func() bool {
		nodes, _ = e.src.PeerStates()
		return len(nodes) == 2 && nodes[1].Node == "lb2"
	})
	if st := e.src.States()[0]; !st.Publisher || st.NotPublisher {
		t.Errorf("state %+v, want a publisher", st)
	}
	// A new process has lost what the old one stored: published again.
	if err := os.Remove(filepath.Join(peers, "lb1.json")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(e.set.Plugin("fake").Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "lb1 published again by the new process", func() bool {
		_, err := os.Stat(filepath.Join(peers, "lb1.json"))
		return err == nil
	})

	plain := newSourceEnv(t)
	plain.use(t, "")
	plain.src.Publish(sdk.NodeStatus{Node: "lb1"})
	plain.state(t, "not a publisher", func(st SourceState) bool { return st.NotPublisher })
	if _, ok := plain.src.PeerStates(); ok || plain.logs.count("did not take") > 0 {
		t.Errorf("a source that does not publish: peers known, or a warning:\n%s", plain.logs.String())
	}
	if !slices.ContainsFunc(e.set.Statuses(), func(s Status) bool { return s.Info.Kind == sdk.KindConfigSource }) {
		t.Error("the source is not a config-source plugin")
	}
}
