package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// wait bounds every wait for the source: generous, since a test only
// waits this long when it is failing.
const wait = 30 * time.Second

func quietLog() hclog.Logger { return hclog.NewNullLogger() }

// dispense serves src over go-plugin's gRPC in process, as xlbd would
// reach the binary, and returns the host's client.
func dispense(t *testing.T, src *source) *sdk.ConfigSourceClient {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		string(sdk.KindConfigSource): &sdk.ConfigSourcePlugin{Impl: src},
	})
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(string(sdk.KindConfigSource))
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*sdk.ConfigSourceClient)
}

// watch is one Watch call in progress.
type watch struct {
	t       *testing.T
	updates chan sdk.ConfigUpdate
	cancel  context.CancelFunc
	done    chan error
	// gate ends the source's quiet periods when the test says so (nil:
	// the source's real timer). A test changes files, then fires: the
	// source reads once, after the whole change, however slow the
	// machine.
	gate chan time.Time
}

// setup writes files (name: content; a name ending in "/" is a
// directory) under a new temporary directory and returns it.
func setup(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		write(t, filepath.Join(dir, name), content)
	}
	return dir
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if strings.HasSuffix(path, "/") {
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// configure makes a source with settings {paths, debounce}, gated unless
// debounce is given, and configures it through the SDK.
func configure(t *testing.T, log hclog.Logger, paths []string, debounce string) (*sdk.ConfigSourceClient, chan time.Time) {
	t.Helper()
	src := newSource(log)
	var gate chan time.Time
	if debounce == "" {
		gate = make(chan time.Time)
		src.after = func(time.Duration) <-chan time.Time { return gate }
	}
	c := dispense(t, src)
	js, _ := json.Marshal(map[string]any{"paths": paths, "debounce": debounce})
	if debounce == "" {
		js, _ = json.Marshal(map[string]any{"paths": paths})
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.Configure(ctx, js); err != nil {
		t.Fatal(err)
	}
	return c, gate
}

// start calls Watch; it is cancelled at the end of the test.
func start(t *testing.T, c *sdk.ConfigSourceClient, gate chan time.Time) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{t: t, updates: make(chan sdk.ConfigUpdate, 100), cancel: cancel, done: make(chan error, 1), gate: gate}
	go func() {
		w.done <- c.Watch(ctx, func(u sdk.ConfigUpdate) error {
			w.updates <- u
			return nil
		})
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// stop cancels the Watch and returns what it returned.
func (w *watch) stop() error {
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(wait):
		w.t.Fatal("Watch did not return after its cancellation")
		return nil
	}
}

// fire ends the quiet period the source is in, once it has seen a
// change. The read it starts sees every change made before; it may run
// while the test goes on, so a test waits for its update before changing
// more, or makes its next change atomic (a rename).
func (w *watch) fire() {
	w.t.Helper()
	select {
	case w.gate <- time.Now():
	case <-time.After(wait):
		w.t.Fatal("the source saw no change")
	}
}

// next is the next update.
func (w *watch) next() sdk.ConfigUpdate {
	w.t.Helper()
	select {
	case u := <-w.updates:
		return u
	case err := <-w.done:
		w.t.Fatalf("Watch returned %v, want an update", err)
	case <-time.After(wait):
		w.t.Fatal("no update")
	}
	return sdk.ConfigUpdate{}
}

// until skips updates until one has the documents want: for the real
// timer, which may send a half-written file's state first.
func (w *watch) until(want ...string) sdk.ConfigUpdate {
	w.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case u := <-w.updates:
			if docs(u) == strings.Join(want, "\n") {
				return u
			}
		case err := <-w.done:
			w.t.Fatalf("Watch returned %v, want %q", err, want)
		case <-deadline:
			w.t.Fatalf("no update with %q", want)
		}
	}
}

// docs shows an update's documents one a line, "name format content".
func docs(u sdk.ConfigUpdate) string {
	var lines []string
	for _, d := range u.Documents {
		lines = append(lines, d.Name+" "+d.Format+" "+string(d.Content))
	}
	if u.Unavailable != "" {
		lines = append(lines, "unavailable: "+u.Unavailable)
	}
	return strings.Join(lines, "\n")
}

// expect checks the next update's documents.
func (w *watch) expect(want ...string) sdk.ConfigUpdate {
	w.t.Helper()
	u := w.next()
	if got := docs(u); got != strings.Join(want, "\n") {
		w.t.Fatalf("update:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	return u
}

// TestInitialSet: Watch sends every document at once, a directory's
// sorted by name with editors' and hidden files left out, listed files
// whatever their suffix, each format by suffix, and a file reached twice
// once.
func TestInitialSet(t *testing.T) {
	dir := setup(t, map[string]string{
		"d/b.hcl":      "b",
		"d/a.hcl.json": `{"a":1}`,
		"d/c.hcl":      "c",
		// Not documents.
		"d/.a.hcl.swp": "swap", "d/.a.hcl.swx": "swap", "d/a.hcl~": "backup", "d/#a.hcl#": "autosave",
		"d/4913": "probe", "d/a.hcl.tmp": "tmp", "d/notes.txt": "notes", "d/.hidden.hcl": "hidden",
		"d/sub.hcl/x.hcl": "in a subdirectory",
		"extra.conf":      "extra",
		"extra.json":      `{"e":1}`,
	})
	d := filepath.Join(dir, "d")
	if err := os.Symlink("root@host.1234:1700000000", filepath.Join(d, ".#a.hcl")); err != nil { // emacs's lock
		t.Fatal(err)
	}
	if err := os.Symlink("nowhere.hcl", filepath.Join(d, "dangling.hcl")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(d, "fifo.hcl"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log testenv.Buffer
	c, gate := configure(t, hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Info}),
		[]string{d, filepath.Join(dir, "extra.conf"), filepath.Join(dir, "extra.json"), filepath.Join(d, "b.hcl")}, "")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	in, err := c.Info(ctx)
	if err != nil || in.Kind != sdk.KindConfigSource || in.Version != Version || len(in.Schema) != 2 ||
		in.Schema[0].Name != "paths" || !in.Schema[0].Required || in.Schema[1].Name != "debounce" {
		t.Errorf("Info = %+v, %v", in, err)
	}

	w := start(t, c, gate)
	u := w.expect(
		d+"/a.hcl.json json "+`{"a":1}`,
		d+"/b.hcl hcl b",
		d+"/c.hcl hcl c",
		dir+"/extra.conf hcl extra",
		dir+"/extra.json json "+`{"e":1}`,
	)
	if len(u.Revision) != 16 {
		t.Errorf("revision %q, want 16 hex digits", u.Revision)
	}
	for _, want := range []string{"watching: paths=\"" + d + ", ", "sending documents: revision=" + u.Revision + " documents=5 added=\"" + d + "/a.hcl.json, "} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log:\n%s\nwant a line with %q", log.String(), want)
		}
	}
}

// TestRelativePaths: relative paths are read from the working directory
// (the main file's, where xlbd starts the plugin) and name documents as
// written, cleaned.
func TestRelativePaths(t *testing.T) {
	dir := setup(t, map[string]string{"services.d/web.hcl": "web", "extra.hcl": "extra"})
	t.Chdir(dir)
	c, gate := configure(t, quietLog(), []string{"./services.d/", "extra.hcl"}, "")
	w := start(t, c, gate)
	w.expect("services.d/web.hcl hcl web", "extra.hcl hcl extra")
}

// TestEdits: an edit in place, a file renamed over another (the atomic
// replace of most tools), a new file in a directory, and deletions, of
// documents in a directory and of files listed; each gives one update
// with the whole set, and a listed file recreated is seen again.
func TestEdits(t *testing.T) {
	dir := setup(t, map[string]string{"d/a.hcl": "a1", "d/b.hcl": "b1", "f.hcl": "f1"})
	d, f := filepath.Join(dir, "d"), filepath.Join(dir, "f.hcl")
	c, gate := configure(t, quietLog(), []string{d, f}, "")
	w := start(t, c, gate)
	first := w.expect(d+"/a.hcl hcl a1", d+"/b.hcl hcl b1", f+" hcl f1")

	write(t, filepath.Join(d, "a.hcl"), "a2")
	w.fire()
	second := w.expect(d+"/a.hcl hcl a2", d+"/b.hcl hcl b1", f+" hcl f1")
	if second.Revision == first.Revision {
		t.Errorf("revision %q unchanged by an edit", second.Revision)
	}

	// Renamed over, from outside the watched directory and from inside.
	write(t, filepath.Join(dir, "tmp"), "f2")
	write(t, filepath.Join(d, ".b.hcl.new"), "b2")
	for from, to := range map[string]string{filepath.Join(dir, "tmp"): f, filepath.Join(d, ".b.hcl.new"): filepath.Join(d, "b.hcl")} {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	w.fire()
	w.expect(d+"/a.hcl hcl a2", d+"/b.hcl hcl b2", f+" hcl f2")

	// The file that replaced f.hcl is watched in turn.
	write(t, f, "f3")
	w.fire()
	w.expect(d+"/a.hcl hcl a2", d+"/b.hcl hcl b2", f+" hcl f3")

	write(t, filepath.Join(d, "new.hcl"), "n")
	w.fire()
	w.expect(d+"/a.hcl hcl a2", d+"/b.hcl hcl b2", d+"/new.hcl hcl n", f+" hcl f3")

	for _, p := range []string{filepath.Join(d, "a.hcl"), f} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	w.fire()
	w.expect(d+"/b.hcl hcl b2", d+"/new.hcl hcl n")

	write(t, f, "f4")
	w.fire()
	w.expect(d+"/b.hcl hcl b2", d+"/new.hcl hcl n", f+" hcl f4")

	// A listed directory deleted is a deletion too.
	if err := os.RemoveAll(d); err != nil {
		t.Fatal(err)
	}
	w.fire()
	w.expect(f + " hcl f4")
	write(t, filepath.Join(d, "back.hcl"), "back")
	w.fire()
	w.expect(d+"/back.hcl hcl back", f+" hcl f4")
}

// vimWrite saves path as vim does by default (backupcopy=auto,
// writebackup): probe the directory with a file named 4913, rename the
// file to its backup, write the new file in pieces, set its mode, delete
// the backup.
func vimWrite(t *testing.T, path, content string) {
	t.Helper()
	probe := filepath.Join(filepath.Dir(path), "4913")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+"~"); err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	half := len(content) / 2
	if _, err := fh.WriteString(content[:half]); err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteString(content[half:]); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path + "~"); err != nil {
		t.Fatal(err)
	}
}

// TestEditorBurst: vim's save of a listed file and of a directory's file
// is one update with the final contents, never the file missing or half
// written; and the editor's files are never documents. The source's quiet
// period is ended by the test after the burst, so the burst is whole
// however slow the machine: what is checked is that the source waits for
// quiet, and reads after it. A last change (a new file) shows that no
// other update came between.
func TestEditorBurst(t *testing.T) {
	dir := setup(t, map[string]string{"d/a.hcl": "a1", "f.hcl": "f1"})
	d, f := filepath.Join(dir, "d"), filepath.Join(dir, "f.hcl")
	c, gate := configure(t, quietLog(), []string{d, f}, "")
	w := start(t, c, gate)
	w.expect(d+"/a.hcl hcl a1", f+" hcl f1")

	vimWrite(t, f, "f2 written by vim")
	vimWrite(t, filepath.Join(d, "a.hcl"), "a2 written by vim")
	w.fire()
	w.expect(d+"/a.hcl hcl a2 written by vim", f+" hcl f2 written by vim")

	// Editors' files left behind change nothing: the read this fire starts
	// sends nothing, or the next update would show it. That read may run
	// while the test goes on, so the last change is a rename, which it
	// sees whole or not at all.
	for _, name := range []string{".a.hcl.swp", ".a.hcl.swx", "a.hcl~", "4913", "#a.hcl#", "a.hcl.tmp"} {
		write(t, filepath.Join(d, name), "editor")
	}
	if err := os.Symlink("root@host.1:1", filepath.Join(d, ".#a.hcl")); err != nil {
		t.Fatal(err)
	}
	w.fire()
	write(t, filepath.Join(dir, "z.tmp"), "z")
	if err := os.Rename(filepath.Join(dir, "z.tmp"), filepath.Join(d, "z.hcl")); err != nil {
		t.Fatal(err)
	}
	w.fire()
	w.expect(d+"/a.hcl hcl a2 written by vim", d+"/z.hcl hcl z", f+" hcl f2 written by vim")
}

// TestSymlinkSwap: a directory reached through a symlink that is swapped
// atomically (a deploy's "current" link), listed itself or with a file
// under it, and the new target watched in turn.
func TestSymlinkSwap(t *testing.T) {
	dir := setup(t, map[string]string{"v1/a.hcl": "a1"})
	cur := filepath.Join(dir, "current")
	swap := func(target string) {
		t.Helper()
		tmp := filepath.Join(dir, ".current.tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cur); err != nil {
			t.Fatal(err)
		}
	}
	swap("v1")
	c1, gate1 := configure(t, quietLog(), []string{cur}, "")
	c2, gate2 := configure(t, quietLog(), []string{filepath.Join(cur, "a.hcl")}, "")
	dirWatch, fileWatch := start(t, c1, gate1), start(t, c2, gate2)
	dirWatch.expect(cur + "/a.hcl hcl a1")
	fileWatch.expect(cur + "/a.hcl hcl a1")

	write(t, filepath.Join(dir, "v2/a.hcl"), "a2")
	write(t, filepath.Join(dir, "v2/b.hcl"), "b1")
	swap("v2")
	dirWatch.fire()
	fileWatch.fire()
	dirWatch.expect(cur+"/a.hcl hcl a2", cur+"/b.hcl hcl b1")
	fileWatch.expect(cur + "/a.hcl hcl a2")

	write(t, filepath.Join(dir, "v2/a.hcl"), "a3")
	dirWatch.fire()
	fileWatch.fire()
	dirWatch.expect(cur+"/a.hcl hcl a3", cur+"/b.hcl hcl b1")
	fileWatch.expect(cur + "/a.hcl hcl a3")
}

// TestSymlinkedDocument: a document in a directory that links elsewhere
// is watched where it leads: its directory's watch does not see that.
func TestSymlinkedDocument(t *testing.T) {
	dir := setup(t, map[string]string{"d/a.hcl": "a", "shared/web.hcl": "web1"})
	d := filepath.Join(dir, "d")
	if err := os.Symlink("../shared/web.hcl", filepath.Join(d, "web.hcl")); err != nil {
		t.Fatal(err)
	}
	c, gate := configure(t, quietLog(), []string{d}, "")
	w := start(t, c, gate)
	w.expect(d+"/a.hcl hcl a", d+"/web.hcl hcl web1")
	write(t, filepath.Join(dir, "shared/web.hcl"), "web2")
	w.fire()
	w.expect(d+"/a.hcl hcl a", d+"/web.hcl hcl web2")
}

// TestConfigMap: Kubernetes' ConfigMap volume: each file is a link
// through ..data to a timestamped directory, and an update swaps ..data
// with a rename and deletes the old directory. Both the volume's directory
// and one of its files listed alone follow the swap.
func TestConfigMap(t *testing.T) {
	dir := setup(t, map[string]string{"cm/..2024_01/web.hcl": "web1", "cm/..2024_01/dns.hcl": "dns1"})
	cm := filepath.Join(dir, "cm")
	link := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(cm, name)); err != nil {
			t.Fatal(err)
		}
	}
	link("..2024_01", "..data")
	link("..data/web.hcl", "web.hcl")
	link("..data/dns.hcl", "dns.hcl")

	c1, gate1 := configure(t, quietLog(), []string{cm}, "")
	c2, gate2 := configure(t, quietLog(), []string{filepath.Join(cm, "web.hcl")}, "")
	dirWatch, fileWatch := start(t, c1, gate1), start(t, c2, gate2)
	dirWatch.expect(cm+"/dns.hcl hcl dns1", cm+"/web.hcl hcl web1")
	fileWatch.expect(cm + "/web.hcl hcl web1")

	write(t, filepath.Join(cm, "..2024_02/web.hcl"), "web2")
	write(t, filepath.Join(cm, "..2024_02/dns.hcl"), "dns1")
	link("..2024_02", "..data_tmp")
	if err := os.Rename(filepath.Join(cm, "..data_tmp"), filepath.Join(cm, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(cm, "..2024_01")); err != nil {
		t.Fatal(err)
	}
	dirWatch.fire()
	fileWatch.fire()
	dirWatch.expect(cm+"/dns.hcl hcl dns1", cm+"/web.hcl hcl web2")
	fileWatch.expect(cm + "/web.hcl hcl web2")
}

// TestWatchTwice: the host cancels a Watch and calls it again (SIGHUP):
// the new call reads everything anew and sends the complete set, with the
// same revision for the same files.
func TestWatchTwice(t *testing.T) {
	dir := setup(t, map[string]string{"a.hcl": "a1"})
	a := filepath.Join(dir, "a.hcl")
	c, gate := configure(t, quietLog(), []string{a}, "")
	w := start(t, c, gate)
	first := w.expect(a + " hcl a1")
	if err := w.stop(); err != nil {
		t.Fatalf("Watch cancelled returned %v", err)
	}
	write(t, a, "a2")
	second := start(t, c, gate).expect(a + " hcl a2")
	third := start(t, c, gate).expect(a + " hcl a2")
	if second.Revision == first.Revision || third.Revision != second.Revision {
		t.Errorf("revisions %q, %q, %q: want a new one for new contents, the same for the same", first.Revision, second.Revision, third.Revision)
	}
}

// TestMissingPath: a listed path that does not exist when Watch starts
// fails it, naming the path; nothing is sent.
func TestMissingPath(t *testing.T) {
	dir := setup(t, map[string]string{"a.hcl": "a"})
	missing := filepath.Join(dir, "services.d")
	c, gate := configure(t, quietLog(), []string{filepath.Join(dir, "a.hcl"), missing}, "")
	w := start(t, c, gate)
	select {
	case err := <-w.done:
		w.done <- err
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("paths: %q does not exist", missing)) {
			t.Errorf("Watch = %v, want it to fail naming %s", err, missing)
		}
	case u := <-w.updates:
		t.Errorf("Watch sent %+v, want it to fail", u)
	case <-time.After(wait):
		t.Fatal("Watch neither failed nor sent")
	}
}

// TestTooLarge: a file over the loader's limit is not read: the update
// says the source is unavailable, naming it, so that xlbd keeps the
// documents it has (the set without the file would delete its services);
// once the file is fixed the whole set is sent again.
func TestTooLarge(t *testing.T) {
	dir := setup(t, map[string]string{"d/a.hcl": "a", "d/big.hcl": "b"})
	d := filepath.Join(dir, "d")
	c, gate := configure(t, quietLog(), []string{d}, "")
	w := start(t, c, gate)
	good := w.expect(d+"/a.hcl hcl a", d+"/big.hcl hcl b")

	// Sparse: the size is what counts, and it is refused unread.
	if err := os.Truncate(filepath.Join(d, "big.hcl"), maxFileSize+1); err != nil {
		t.Fatal(err)
	}
	w.fire()
	u := w.expect("unavailable: " + d + "/big.hcl is larger than the 16 MiB a configuration file may hold: not read")
	if u.Revision != good.Revision {
		t.Errorf("unavailable update's revision %q, want the last sent, %q", u.Revision, good.Revision)
	}
	write(t, filepath.Join(d, "big.hcl"), "b2")
	w.fire()
	w.expect(d+"/a.hcl hcl a", d+"/big.hcl hcl b2")
}

// TestDebounce runs the source's own timer, with no quiet period and with
// the default one: changes arrive (a slow machine may split a burst,
// which TestEditorBurst checks without timing).
func TestDebounce(t *testing.T) {
	for _, debounce := range []string{"0s", "200ms"} {
		t.Run(debounce, func(t *testing.T) {
			dir := setup(t, map[string]string{"d/a.hcl": "a1"})
			d := filepath.Join(dir, "d")
			c, _ := configure(t, quietLog(), []string{d}, debounce)
			w := start(t, c, nil)
			w.expect(d + "/a.hcl hcl a1")
			vimWrite(t, filepath.Join(d, "a.hcl"), "a2")
			w.until(d + "/a.hcl hcl a2")
			write(t, filepath.Join(d, "b.hcl"), "b")
			w.until(d+"/a.hcl hcl a2", d+"/b.hcl hcl b")
		})
	}
}
