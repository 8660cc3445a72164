package xdp

import (
	"testing"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
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
		followVIPs(st, changed, stop, func(s *snapshot.Snapshot) { synced <- s.Generation })
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
