package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/etcdtest"
	"github.com/xlbproject/xlb/plugins/sdk"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func status(node, rev string) sdk.NodeStatus {
	return sdk.NodeStatus{Node: node, Revision: rev, ConfigDigest: "cd-" + rev,
		VIPs: []sdk.VIPDigest{{Name: "web", Table: "t", Backends: "b"}}, Updated: time.Unix(1700000000, 0).UTC()}
}

func publish(t *testing.T, src *source, st sdk.NodeStatus) {
	t.Helper()
	if err := src.Publish(opCtx(t), st); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// stored returns the node state at key and its lease; "" when absent.
func stored(t *testing.T, c *clientv3.Client, key string) (string, clientv3.LeaseID) {
	t.Helper()
	r, err := c.Get(opCtx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return "", 0
	}
	var st sdk.NodeStatus
	if err := json.Unmarshal(r.Kvs[0].Value, &st); err != nil {
		t.Fatalf("%s holds %q: %v", key, r.Kvs[0].Value, err)
	}
	return st.Node + "@" + st.Revision, clientv3.LeaseID(r.Kvs[0].Lease)
}

// eventually polls stored until it is w.
func eventually(t *testing.T, c *clientv3.Client, key, w string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got, _ := stored(t, c, key)
		if got == w {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q within %v", key, got, w, waitTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPublishLease: the state is stored as JSON at status_prefix + node
// under a lease of lease_ttl, replaced by the next; it goes lease_ttl
// after the plugin can no longer renew the lease, and comes back, on a new
// lease, when it can.
func TestPublishLease(t *testing.T) {
	etcd, c := startEtcd(t)
	proxy := etcdtest.NewProxy(t, etcd)
	src, log := newTestSource(t, settingsJSON(proxy.Endpoints(), "lease_ttl", `"2s"`))
	publish(t, src, status("lb1", "7"))
	got, lease := stored(t, c, "/xlb/status/lb1")
	if got != "lb1@7" || lease == 0 {
		t.Fatalf("stored %q under lease %x", got, lease)
	}
	ttl, err := c.TimeToLive(opCtx(t), lease)
	if err != nil || ttl.GrantedTTL != 2 {
		t.Fatalf("lease: %+v, %v; want a TTL of 2s", ttl, err)
	}
	r, _ := c.Get(opCtx(t), "/xlb/status/lb1")
	want := status("lb1", "7")
	var back sdk.NodeStatus
	if err := json.Unmarshal(r.Kvs[0].Value, &back); err != nil || fmt.Sprint(back) != fmt.Sprint(want) {
		t.Fatalf("stored %s: %v", r.Kvs[0].Value, err)
	}
	publish(t, src, status("lb1", "8"))
	if got, l := stored(t, c, "/xlb/status/lb1"); got != "lb1@8" || l != lease {
		t.Fatalf("after a second Publish: %q under lease %x, want lb1@8 under %x", got, l, lease)
	}
	// Kept alive well past its TTL.
	time.Sleep(3 * time.Second)
	if got, _ := stored(t, c, "/xlb/status/lb1"); got != "lb1@8" {
		t.Fatalf("after 3s: %q", got)
	}

	proxy.Cut()
	eventually(t, c, "/xlb/status/lb1", "")
	// Published while away: stored when back.
	short, cancel := context.WithTimeout(t.Context(), time.Second)
	if err := src.Publish(short, status("lb1", "9")); err == nil {
		t.Error("Publish with etcd out of reach succeeded")
	}
	cancel()
	proxy.Restore()
	eventually(t, c, "/xlb/status/lb1", "lb1@9")
	if _, l := stored(t, c, "/xlb/status/lb1"); l == lease || l == 0 {
		t.Errorf("stored again under lease %x, the old one was %x", l, lease)
	}
	if !strings.Contains(log.String(), "cannot store this node's state") {
		t.Errorf("no warning of the failed Publish:\n%s", log.String())
	}
}

// TestPublishAfterRestart: a state published while etcd is down is stored
// once it is back.
func TestPublishAfterRestart(t *testing.T) {
	etcd, c := startEtcd(t)
	src, _ := newTestSource(t, settingsJSON(etcd.Endpoints(), "lease_ttl", `"2s"`))
	publish(t, src, status("lb1", "1"))
	etcd.Kill()
	short, cancel := context.WithTimeout(t.Context(), time.Second)
	if err := src.Publish(short, status("lb1", "2")); err == nil {
		t.Error("Publish with etcd killed succeeded")
	}
	cancel()
	// Longer than the lease: the client gives it up and takes a new one.
	time.Sleep(3 * time.Second)
	etcd.Restart()
	eventually(t, c, "/xlb/status/lb1", "lb1@2")
}

// TestWatchPeers: every node's state, this node's included (with its
// shards), at once and after each change; a value that is not a node
// state is left out and logged; a node whose plugin is reconfigured
// elsewhere revokes its lease and leaves at once.
func TestWatchPeers(t *testing.T) {
	etcd, c := startEtcd(t)
	cfg := settingsJSON(etcd.Endpoints())
	a, alog := newTestSource(t, cfg)
	b, _ := newTestSource(t, cfg)
	etcdtest.Put(t, c, "/xlb/status/junk", "not json")
	publish(t, a, status("lb1", "1"))
	w := startStream(t, a.WatchPeers)
	nodes := func(u sdk.PeersUpdate) string {
		if u.Unavailable != "" {
			return "unavailable"
		}
		var out []string
		for _, n := range u.Nodes {
			out = append(out, n.Node+"@"+n.Revision)
			if len(n.Shards) > 0 {
				out[len(out)-1] += "/" + strings.Join(n.Shards, ",")
			}
		}
		return strings.Join(out, " ")
	}
	if got := nodes(w.next(t)); got != "lb1@1" {
		t.Fatalf("peers %q, want lb1@1", got)
	}
	lb2 := status("lb2", "1")
	lb2.Shards = []string{"b", "c"}
	publish(t, b, lb2)
	if got := nodes(w.next(t)); got != "lb1@1 lb2@1/b,c" {
		t.Fatalf("peers %q", got)
	}
	publish(t, a, status("lb1", "2"))
	if got := nodes(w.next(t)); got != "lb1@2 lb2@1/b,c" {
		t.Fatalf("peers %q", got)
	}
	if n := strings.Count(alog.String(), "a node state that does not decode is left out"); n != 1 {
		t.Errorf("%d warnings of the junk value, want 1:\n%s", n, alog.String())
	}
	if err := b.Configure(settingsJSON(etcd.Endpoints(), "status_prefix", `"/xlb/status2/"`)); err != nil {
		t.Fatal(err)
	}
	if got := nodes(w.next(t)); got != "lb1@2" {
		t.Fatalf("peers %q after lb2 left", got)
	}

	etcd.Kill()
	if u := w.next(t); u.Unavailable == "" {
		t.Fatalf("with etcd killed: %q", nodes(u))
	}
	etcd.Restart()
	if got := nodes(w.next(t)); got != "lb1@2" {
		t.Fatalf("peers %q after the restart", got)
	}
}
