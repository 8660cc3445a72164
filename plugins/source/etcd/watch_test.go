package main

import (
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestWatch: the complete set at once, at the read's revision, then one
// update per change (a transaction of several is one), each the complete
// set at that change's revision; keys outside the prefix are not seen.
// The format is sniffed from the value.
func TestWatch(t *testing.T) {
	etcd, c := startEtcd(t)
	etcdtest.Put(t, c, "/xlb/services/web", `vip "web" {}`)
	etcdtest.Put(t, c, "/xlb/services/api", " \n\t{\"vip\": {}}")
	etcdtest.Put(t, c, "/xlb/services-old/x", "ignored: another prefix")
	r := etcdtest.Put(t, c, "/other", "ignored")
	src, _ := newTestSource(t, settingsJSON(etcd.Endpoints()))
	w := startStream(t, src.Watch)
	want(t, w.next(t), r, "etcd:/xlb/services/api(json)= \n\t{\"vip\": {}} etcd:/xlb/services/web(hcl)=vip \"web\" {}")

	r = etcdtest.Put(t, c, "/xlb/services/web", `vip "web" { port = 80 }`)
	want(t, w.next(t), r, "etcd:/xlb/services/api(json)= \n\t{\"vip\": {}} etcd:/xlb/services/web(hcl)=vip \"web\" { port = 80 }")
	r = del(t, c, "/xlb/services/api")
	want(t, w.next(t), r, `etcd:/xlb/services/web(hcl)=vip "web" { port = 80 }`)
	etcdtest.Put(t, c, "/other", "still ignored")

	tx, err := c.Txn(opCtx(t)).Then(
		clientv3.OpPut("/xlb/services/a", "{}"),
		clientv3.OpPut("/xlb/services/b", ""),
		clientv3.OpDelete("/xlb/services/web"),
		clientv3.OpPut("/other", "ignored"),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	// An empty value is a document with no blocks.
	want(t, w.next(t), tx.Header.Revision, "etcd:/xlb/services/a(json)={} etcd:/xlb/services/b(hcl)=")
	w.quiet(t, 300*time.Millisecond)
}

// TestWatchAgain: a Watch called again after the last was cancelled (the
// host's SIGHUP) reads everything anew and sends the complete set.
func TestWatchAgain(t *testing.T) {
	etcd, c := startEtcd(t)
	r := etcdtest.Put(t, c, "/xlb/services/web", "a")
	src, _ := newTestSource(t, settingsJSON(etcd.Endpoints()))
	w := startStream(t, src.Watch)
	want(t, w.next(t), r, "etcd:/xlb/services/web(hcl)=a")
	w.stop()
	r = etcdtest.Put(t, c, "/other", "x")
	w = startStream(t, src.Watch)
	want(t, w.next(t), r, "etcd:/xlb/services/web(hcl)=a")
	w.quiet(t, 300*time.Millisecond)
}

// TestOutageKill: with etcd killed, an Unavailable update (once, however
// long the outage); with etcd back, the complete set again (which ends
// the outage on the host's side), then each change as before, nothing
// replayed.
func TestOutageKill(t *testing.T) {
	etcd, c := startEtcd(t)
	r := etcdtest.Put(t, c, "/xlb/services/web", "1")
	src, log := newTestSource(t, settingsJSON(etcd.Endpoints()))
	w := startStream(t, src.Watch)
	want(t, w.next(t), r, "etcd:/xlb/services/web(hcl)=1")

	etcd.Kill()
	u := w.next(t)
	if u.Unavailable == "" || len(u.Documents) != 0 || !strings.HasPrefix(u.Unavailable, "etcd unreachable: ") {
		t.Fatalf("after the kill: %+v, want an Unavailable update", u)
	}
	t.Logf("unavailable: %s", u.Unavailable)
	// Several probes fail meanwhile: still one update, one warning.
	w.quiet(t, 2*probeInterval+3*time.Second)
	if n := strings.Count(log.String(), "etcd does not answer"); n != 1 {
		t.Errorf("%d warnings for one outage, want 1:\n%s", n, log.String())
	}

	etcd.Restart()
	want(t, w.next(t), r, "etcd:/xlb/services/web(hcl)=1")
	// The set is sent before the resumed watch is established, so changes
	// made before that arrive together, by design (as TestOutageResumes
	// shows): one change at a time, each awaited, shows them one by one.
	r2 := etcdtest.Put(t, c, "/xlb/services/web", "2")
	want(t, w.next(t), r2, "etcd:/xlb/services/web(hcl)=2")
	r3 := etcdtest.Put(t, c, "/xlb/services/api", "3")
	want(t, w.next(t), r3, "etcd:/xlb/services/api(hcl)=3 etcd:/xlb/services/web(hcl)=2")
	w.quiet(t, 300*time.Millisecond)
}

// TestOutageResumes: changes made in etcd while the plugin cannot reach it
// arrive once it can, through a watch resumed from the revision after the
// last one sent: one update, at the revision of the last change under the
// prefix (a fresh read would report the store's revision, here a later
// change outside the prefix), and nothing before it replayed (a watch
// from the last revision sent, not the one after, would send that
// revision again).
func TestOutageResumes(t *testing.T) {
	etcd, c := startEtcd(t)
	proxy := etcdtest.NewProxy(t, etcd)
	etcdtest.Put(t, c, "/xlb/services/a", "1")
	r := etcdtest.Put(t, c, "/xlb/services/b", "1")
	src, _ := newTestSource(t, settingsJSON(proxy.Endpoints()))
	w := startStream(t, src.Watch)
	want(t, w.next(t), r, "etcd:/xlb/services/a(hcl)=1 etcd:/xlb/services/b(hcl)=1")

	// An outage with no change: the set again when back, and nothing else.
	proxy.Cut()
	if u := w.next(t); u.Unavailable == "" {
		t.Fatalf("after the cut: %s", show(u))
	}
	proxy.Restore()
	want(t, w.next(t), r, "etcd:/xlb/services/a(hcl)=1 etcd:/xlb/services/b(hcl)=1")
	w.quiet(t, 2*probeInterval)

	// An outage with changes.
	proxy.Cut()
	if u := w.next(t); u.Unavailable == "" {
		t.Fatalf("after the cut: %s", show(u))
	}
	etcdtest.Put(t, c, "/xlb/services/a", "2")
	del(t, c, "/xlb/services/b")
	last := etcdtest.Put(t, c, "/xlb/services/c", "3")
	etcdtest.Put(t, c, "/other", "a later change outside the prefix")
	proxy.Restore()
	// The set it had, which ends the outage, then the changes.
	want(t, w.next(t), r, "etcd:/xlb/services/a(hcl)=1 etcd:/xlb/services/b(hcl)=1")
	want(t, w.next(t), last, "etcd:/xlb/services/a(hcl)=2 etcd:/xlb/services/c(hcl)=3")
	w.quiet(t, 2*probeInterval)
}

// TestCompacted: when the revisions after the last one sent were compacted
// during an outage, the plugin says so and reads the prefix anew.
func TestCompacted(t *testing.T) {
	etcd, c := startEtcd(t)
	proxy := etcdtest.NewProxy(t, etcd)
	r := etcdtest.Put(t, c, "/xlb/services/a", "1")
	src, log := newTestSource(t, settingsJSON(proxy.Endpoints()))
	w := startStream(t, src.Watch)
	want(t, w.next(t), r, "etcd:/xlb/services/a(hcl)=1")

	proxy.Cut()
	if u := w.next(t); u.Unavailable == "" {
		t.Fatalf("after the cut: %s", show(u))
	}
	etcdtest.Put(t, c, "/xlb/services/a", "2")
	etcdtest.Put(t, c, "/xlb/services/b", "2")
	now := etcdtest.Put(t, c, "/other", "x")
	if _, err := c.Compact(opCtx(t), now); err != nil {
		t.Fatal(err)
	}
	proxy.Restore()
	want(t, w.next(t), r, "etcd:/xlb/services/a(hcl)=1")
	// The fresh read's revision: the store's.
	want(t, w.next(t), now, "etcd:/xlb/services/a(hcl)=2 etcd:/xlb/services/b(hcl)=2")
	if !strings.Contains(log.String(), "etcd compacted the revisions the watch resumed from: reading the prefix anew") {
		t.Errorf("no word of the compaction in the log:\n%s", log.String())
	}
	r = etcdtest.Put(t, c, "/xlb/services/b", "3")
	want(t, w.next(t), r, "etcd:/xlb/services/a(hcl)=2 etcd:/xlb/services/b(hcl)=3")
	w.quiet(t, 300*time.Millisecond)
}

// TestUnreachableAtStart: a Watch with etcd not there says so, and sends
// the set once etcd serves.
func TestUnreachableAtStart(t *testing.T) {
	etcd, c := startEtcd(t)
	r := etcdtest.Put(t, c, "/xlb/services/a", "1")
	proxy := etcdtest.NewProxy(t, etcd)
	proxy.Cut()
	src, _ := newTestSource(t, settingsJSON(proxy.Endpoints()))
	w := startStream(t, src.Watch)
	if u := w.next(t); u.Unavailable == "" {
		t.Fatalf("with etcd cut off: %s", show(u))
	}
	proxy.Restore()
	want(t, w.next(t), r, "etcd:/xlb/services/a(hcl)=1")
}

// TestReconfigure: a Configure with another prefix while a Watch runs
// makes that Watch read the new prefix; the same settings again change
// nothing.
func TestReconfigure(t *testing.T) {
	etcd, c := startEtcd(t)
	etcdtest.Put(t, c, "/xlb/services/a", "1")
	r := etcdtest.Put(t, c, "/xlb/other/b", "2")
	cfg := settingsJSON(etcd.Endpoints())
	src, _ := newTestSource(t, cfg)
	w := startStream(t, src.Watch)
	want(t, w.next(t), r, "etcd:/xlb/services/a(hcl)=1")
	if err := src.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	w.quiet(t, 300*time.Millisecond)
	if err := src.Configure(settingsJSON(etcd.Endpoints(), "prefix", `"/xlb/other/"`)); err != nil {
		t.Fatal(err)
	}
	want(t, w.next(t), r, "etcd:/xlb/other/b(hcl)=2")
}
