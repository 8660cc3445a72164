package conntrack

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// TestQueryConcurrent asks the table while its worker runs batches: the
// race detector checks that only the worker reads the table.
func TestQueryConcurrent(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 4096 })
	pkts := make([]*pipeline.Packet, 64)
	for n := range pkts {
		pkts[n] = newPacket(flowN(n, 6, 80), mix(uint64(n)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for now := t0; ctx.Err() == nil; now += int64(time.Millisecond) {
			start(c, now)
			for n, p := range pkts {
				reset(p)
				if c.Push(inLookup, p) == outMiss {
					p.VIP, p.Backend, p.Epoch = 0, uint32(n%4), 1
					c.Push(inLearn, p)
				}
			}
			end(c)
		}
	})
	for i := range 50 {
		tab, err := c.FlowTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if tab.Entries > uint64(len(pkts)) || tab.Capacity != 4096 {
			t.Fatalf("%+v", tab)
		}
		p := pkts[i%len(pkts)]
		tf, err := c.TrackedFlow(context.Background(), &p.Flow, p.Hash)
		if err != nil {
			t.Fatal(err)
		}
		// Every flow is learned in the first batch and seen in every one.
		if i > 0 && (!tf.Held || tf.Backend != "b"+string(rune('a'+i%len(pkts)%4))) {
			t.Fatalf("flow %d: %+v", i%len(pkts), tf)
		}
	}
	cancel()
	wg.Wait()
}

// TestQueryStoppedWorker: a worker that runs no batch never answers, and
// the caller's context bounds the wait; a query given up on is skipped
// when the worker runs again, and the next one answered.
func TestQueryStoppedWorker(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 64 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.FlowTable(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("FlowTable on a stopped worker: %v", err)
	}
	p := newPacket(flowN(1, 6, 80), mix(1))
	var tf pipeline.TrackedFlow
	serveQuery(t, c, t0, func(ctx context.Context) (err error) { tf, err = c.TrackedFlow(ctx, &p.Flow, p.Hash); return err })
	if tf != (pipeline.TrackedFlow{}) {
		t.Fatalf("empty table holds %+v", tf)
	}
	if len(c.queries) != 0 || c.cur != nil {
		t.Fatalf("queries left: %d queued, current %v", len(c.queries), c.cur)
	}
}

// TestQueryStale: a flow whose real went down is an entry, but neither a
// flow of that backend nor held.
func TestQueryStale(t *testing.T) {
	reals := fourReals()
	st := snapshot.NewStore(mkSnap(1, reals...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 64 })
	p := newPacket(flowN(1, 6, 80), mix(1))
	learn(c, p, t0, 0, 2, 1)
	q := newPacket(flowN(2, 6, 80), mix(2))
	learn(c, q, t0, 0, 3, 1)
	reals[2].State = snapshot.Down
	st.Publish(mkSnap(2, reals...))
	var tab pipeline.FlowTableStats
	serveQuery(t, c, t0, func(ctx context.Context) (err error) { tab, err = c.FlowTable(ctx); return err })
	if tab.Entries != 2 || len(tab.Flows) != 1 || tab.Flows[0] != (pipeline.FlowCount{VIP: "web", Backend: "bd", Flows: 1}) {
		t.Fatalf("%+v", tab)
	}
	var tf pipeline.TrackedFlow
	serveQuery(t, c, t0, func(ctx context.Context) (err error) { tf, err = c.TrackedFlow(ctx, &p.Flow, p.Hash); return err })
	if tf != (pipeline.TrackedFlow{Ignored: "stale"}) {
		t.Fatalf("flow on a down real: %+v", tf)
	}
	// The sweeper would free an idle entry before a query posted later
	// is served: ask the worker's side directly.
	start(c, t0+int64(10*time.Minute))
	tf = c.tracked(&q.Flow, q.Hash)
	end(c)
	if tf != (pipeline.TrackedFlow{Ignored: "idle"}) {
		t.Fatalf("flow idle past its timeout: %+v", tf)
	}
}

// TestQueryBoundedWork: a batch that carried packets scans scanBusy
// buckets of a large table, an empty batch scanIdle.
func TestQueryBoundedWork(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, nil) // the default 1M flows: 128K buckets
	done := make(chan error, 1)
	go func() { _, err := c.FlowTable(context.Background()); done <- err }()
	p := newPacket(flowN(1, 6, 80), mix(1))
	for c.cur == nil {
		lookup(c, p, t0)
	}
	if c.cur.next != scanBusy {
		t.Fatalf("a busy batch scanned %d buckets, want %d", c.cur.next, scanBusy)
	}
	lookup(c, p, t0)
	if c.cur.next != 2*scanBusy {
		t.Fatalf("two busy batches scanned %d buckets, want %d", c.cur.next, 2*scanBusy)
	}
	start(c, t0)
	end(c)
	if c.cur.next != 2*scanBusy+scanIdle {
		t.Fatalf("an idle batch scanned %d buckets, want %d more", c.cur.next-2*scanBusy, scanIdle)
	}
	for c.cur != nil {
		start(c, t0)
		end(c)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
