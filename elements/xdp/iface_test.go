package xdp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// TestFollowVIPs: the follower sees every publication made while it waits,
// and, when several come during one sync, the last of them; it stops when
// told to.
func TestFollowVIPs(t *testing.T) {
	st := snapshot.NewStore(snapshot.New(0, 0, nil, nil))
	_, changed := st.Watch()
	synced := make(chan uint64)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		followVIPs(st, changed, stop, nil, func(s *snapshot.Snapshot) { synced <- s.Generation })
	}()
	next := func() uint64 {
		t.Helper()
		select {
		case g := <-synced:
			return g
		case <-time.After(10 * time.Second):
			t.Fatal("the follower did not sync a publication")
			return 0
		}
	}
	// One publication at a time: each is synced.
	for g := uint64(1); g <= 20; g++ {
		st.Publish(snapshot.New(g, 0, nil, nil))
		if got := next(); got != g {
			t.Fatalf("published generation %d, synced %d", g, got)
		}
	}
	// Publications while a sync is under way (the follower is blocked
	// handing over generation 21): the last one is synced after it.
	st.Publish(snapshot.New(21, 0, nil, nil))
	for g := uint64(22); g <= 30; g++ {
		st.Publish(snapshot.New(g, 0, nil, nil))
	}
	last := uint64(0)
	for last != 30 {
		g := next()
		if g <= last {
			t.Fatalf("synced generation %d after %d", g, last)
		}
		last = g
	}
	close(stop)
	<-done
}

// TestFollowVIPsPoke: a poke (SteerReplies) syncs the latest snapshot
// without a publication.
func TestFollowVIPsPoke(t *testing.T) {
	st := snapshot.NewStore(snapshot.New(7, 0, nil, nil))
	_, changed := st.Watch()
	synced := make(chan uint64)
	stop, done, poke := make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	go func() {
		defer close(done)
		followVIPs(st, changed, stop, poke, func(s *snapshot.Snapshot) { synced <- s.Generation })
	}()
	defer func() { close(stop); <-done }()
	f := &iface{poke: poke}
	f.SteerReplies("nat", []pipeline.ServiceEndpoint{{Port: 80, Proto: 6}})
	select {
	case g := <-synced:
		if g != 7 {
			t.Errorf("synced generation %d, want 7", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SteerReplies did not wake the follower")
	}
	if len(f.steered["nat"]) != 1 {
		t.Errorf("steered %v", f.steered)
	}
	f.SteerReplies("nat", nil)
	<-synced
	if _, ok := f.steered["nat"]; ok {
		t.Error("an empty SteerReplies left the owner's endpoints")
	}
}

// TestSteerPool: a translator's pool addresses are left out of the node's
// addresses in the reply maps while it steers them, and back in once it
// withdraws them.
func TestSteerPool(t *testing.T) {
	f := &iface{name: "test"}
	a := netip.MustParseAddr("10.90.2.250")
	f.SteerPool("fnat", []netip.Addr{a})
	if !f.pooled(a) || f.pooled(netip.MustParseAddr("10.90.2.10")) {
		t.Error("pooled does not tell the pool from the node's other addresses")
	}
	f.SteerPool("fnat", nil)
	if f.pooled(a) {
		t.Error("the pool is still steered after its owner withdrew it")
	}
}
