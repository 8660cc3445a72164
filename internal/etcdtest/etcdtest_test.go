package etcdtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ctx bounds a client call by opTimeout, as each wait for a watch event
// is: a hang fails the test instead of running into go test's -timeout.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return c
}

// event is a watch event reduced to what the tests compare.
type event struct {
	typ      mvccpb.Event_EventType
	key, val string
	rev      int64
}

func (e event) String() string {
	return fmt.Sprintf("%v %s=%q@%d", e.typ, e.key, e.val, e.rev)
}

// next returns the next n events from wc, failing on a closed channel, a
// watch error or a timeout.
func next(t *testing.T, wc clientv3.WatchChan, n int) []event {
	t.Helper()
	var got []event
	timeout := time.After(opTimeout)
	for len(got) < n {
		select {
		case r, ok := <-wc:
			if !ok {
				t.Fatalf("watch closed after %v", got)
			}
			if err := r.Err(); err != nil {
				t.Fatalf("watch: %v (after %v)", err, got)
			}
			for _, e := range r.Events {
				got = append(got, event{e.Type, string(e.Kv.Key), string(e.Kv.Value), e.Kv.ModRevision})
			}
		case <-timeout:
			t.Fatalf("watch: %d of %d events within %v: %v", len(got), n, opTimeout, got)
		}
	}
	return got
}

// quiet fails if wc delivers an event within d: a replayed or duplicated
// change.
func quiet(t *testing.T, wc clientv3.WatchChan, d time.Duration) {
	t.Helper()
	select {
	case r := <-wc:
		if len(r.Events) > 0 || r.Err() != nil {
			t.Fatalf("unexpected watch response: %v events %v, err %v", len(r.Events), r.Events, r.Err())
		}
	case <-time.After(d):
	}
}

func same(t *testing.T, what string, got, want []event) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func TestPutGetWatch(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	wc := c.Watch(ctx(t), "/xlb/", clientv3.WithPrefix())
	r1 := Put(t, c, "/xlb/a", "1")
	r2 := Put(t, c, "/xlb/b", "2")
	Put(t, c, "/other", "ignored")
	if _, err := c.Delete(ctx(t), "/xlb/a"); err != nil {
		t.Fatal(err)
	}
	g, err := c.Get(ctx(t), "/xlb/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Kvs) != 1 || string(g.Kvs[0].Key) != "/xlb/b" || string(g.Kvs[0].Value) != "2" {
		t.Fatalf("get /xlb/: %v", g.Kvs)
	}
	same(t, "watch /xlb/", next(t, wc, 3), []event{
		{mvccpb.PUT, "/xlb/a", "1", r1},
		{mvccpb.PUT, "/xlb/b", "2", r2},
		{mvccpb.DELETE, "/xlb/a", "", r2 + 2},
	})
}

// The revision is etcd's clock: a watch resumes from it, so a restart must
// keep the data and the revision, not start a new history.
func TestKillRestartKeepsDataAndRevision(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	for i := range 5 {
		Put(t, c, fmt.Sprintf("/xlb/k%d", i), fmt.Sprint(i))
	}
	before, err := c.Get(ctx(t), "/xlb/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	s.Kill()
	// The client retries a read until its deadline: a short one, since
	// this read must fail.
	down, cancel := context.WithTimeout(t.Context(), time.Second)
	_, err = c.Get(down, "/xlb/", clientv3.WithPrefix())
	cancel()
	if err == nil {
		t.Fatal("get succeeded with etcd killed")
	}
	s.Restart()
	after, err := c.Get(ctx(t), "/xlb/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Fatalf("revision %d after restart, %d before", after.Header.Revision, before.Header.Revision)
	}
	if fmt.Sprint(after.Kvs) != fmt.Sprint(before.Kvs) {
		t.Fatalf("data after restart:\n%v\nbefore:\n%v", after.Kvs, before.Kvs)
	}
}

// What the etcd source will rely on: a watch from the revision after the
// last one seen, whether the client's own watch riding through the outage
// or a new one opened after it, sees exactly the changes made since, once
// each and in order.
func TestWatchResumesAfterRestart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	live := c.Watch(ctx(t), "/xlb/", clientv3.WithPrefix())
	r1 := Put(t, c, "/xlb/a", "1")
	r2 := Put(t, c, "/xlb/b", "2")
	same(t, "before the outage", next(t, live, 2), []event{
		{mvccpb.PUT, "/xlb/a", "1", r1},
		{mvccpb.PUT, "/xlb/b", "2", r2},
	})
	last := r2

	s.Kill()
	s.Restart()
	// The changes made while no watcher is connected: the live watch's
	// client may not have reconnected yet.
	other := s.Client(t)
	r3 := Put(t, other, "/xlb/a", "3")
	if _, err := other.Delete(ctx(t), "/xlb/b"); err != nil {
		t.Fatal(err)
	}
	r5 := Put(t, other, "/xlb/c", "5")
	want := []event{
		{mvccpb.PUT, "/xlb/a", "3", r3},
		{mvccpb.DELETE, "/xlb/b", "", r3 + 1},
		{mvccpb.PUT, "/xlb/c", "5", r5},
	}
	if r3 != last+1 {
		t.Fatalf("first revision after the restart %d, want %d", r3, last+1)
	}

	same(t, "the watch that rode through the outage", next(t, live, 3), want)
	resumed := c.Watch(ctx(t), "/xlb/", clientv3.WithPrefix(), clientv3.WithRev(last+1))
	same(t, "a watch resumed from the last revision seen", next(t, resumed, 3), want)

	r6 := Put(t, c, "/xlb/d", "6")
	after := []event{{mvccpb.PUT, "/xlb/d", "6", r6}}
	same(t, "the live watch after", next(t, live, 1), after)
	same(t, "the resumed watch after", next(t, resumed, 1), after)
	quiet(t, live, 200*time.Millisecond)
	quiet(t, resumed, 200*time.Millisecond)
}
