package conntrack

import (
	"cmp"
	"context"
	"slices"

	"github.com/xlbproject/xlb/pipeline"
)

// Work per batch of a table scan, in buckets. A batch that carried packets
// scans few, so that a query adds microseconds to it, not milliseconds; a
// batch of an idle worker (an empty poll) has nothing to delay and scans
// many, so that a 1M-flow table (128K buckets) is read in a couple of polls.
const (
	scanBusy = 1024
	scanIdle = 65536
)

// query is one question from another goroutine. The worker writes the
// answer and closes done; the asker reads it only after done is closed.
type query struct {
	ctx context.Context
	// A flow lookup when table is false.
	table bool
	flow  pipeline.Flow
	hash  uint64

	// Table scan state, owned by the worker while it serves the query.
	next    uint64
	entries uint64
	counts  map[realKey]uint64

	tracked pipeline.TrackedFlow
	stats   pipeline.FlowTableStats
	done    chan struct{}
}

type realKey struct{ vip, real, epoch uint32 }

// FlowTable reports the live entries, the capacity and the live flows per
// VIP and backend of the table. The scan spans batches, while packets keep
// changing the table: a flow learned or expired meanwhile may be counted
// or not.
func (c *ConnTrack) FlowTable(ctx context.Context) (pipeline.FlowTableStats, error) {
	q := &query{table: true, counts: map[realKey]uint64{}}
	if err := c.ask(ctx, q); err != nil {
		return pipeline.FlowTableStats{}, err
	}
	return q.stats, nil
}

// TrackedFlow reports whether the table holds f (whose flow hash is hash)
// and to which backend a packet of f would go.
func (c *ConnTrack) TrackedFlow(ctx context.Context, f *pipeline.Flow, hash uint64) (pipeline.TrackedFlow, error) {
	q := &query{flow: *f, hash: hash}
	if err := c.ask(ctx, q); err != nil {
		return pipeline.TrackedFlow{}, err
	}
	return q.tracked, nil
}

// ask posts q to the worker and waits for its answer until ctx is done.
func (c *ConnTrack) ask(ctx context.Context, q *query) error {
	q.ctx, q.done = ctx, make(chan struct{})
	select {
	case c.queries <- q:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serve works on the query under way in the worker, at the end of a batch
// (the batch's snapshot still held): a flow lookup at once, a table scan
// a bounded number of buckets at a time. A query whose asker gave up is
// dropped.
func (c *ConnTrack) serve(idle bool) {
	q := c.cur
	if q.ctx.Err() != nil {
		c.cur = nil
		return
	}
	if !q.table {
		q.tracked = c.tracked(&q.flow, q.hash)
		c.cur = nil
		close(q.done)
		return
	}
	n := uint64(scanBusy)
	if idle {
		n = scanIdle
	}
	for end := min(q.next+n, uint64(len(c.buckets))); q.next < end; q.next++ {
		b := &c.buckets[q.next]
		for w := range ways {
			if b.tag[w] == 0 || c.idle(b, w) {
				continue
			}
			q.entries++
			// A reply entry is the reverse of a flow counted by its own.
			if e := &b.ent[w]; e.rev == 0 && keeps(c.snap, e) {
				q.counts[realKey{e.vip, e.real, e.epoch}]++
			}
		}
	}
	if q.next < uint64(len(c.buckets)) {
		return
	}
	q.stats = pipeline.FlowTableStats{Entries: q.entries, Capacity: uint64(len(c.buckets)) * ways, Flows: []pipeline.FlowCount{}}
	for k, n := range q.counts {
		// A real that left since the scan counted it has no flows now.
		if r := c.snap.Real(k.real, k.epoch); r != nil && r.VIP == k.vip {
			q.stats.Flows = append(q.stats.Flows, pipeline.FlowCount{VIP: c.snap.VIPs[k.vip].Name, Backend: r.Backend, Flows: n})
		}
	}
	slices.SortFunc(q.stats.Flows, func(a, b pipeline.FlowCount) int {
		return cmp.Or(cmp.Compare(a.VIP, b.VIP), cmp.Compare(a.Backend, b.Backend))
	})
	c.cur = nil
	close(q.done)
}

// tracked answers a flow lookup as lookup would treat a packet of f, but
// without changing the table.
func (c *ConnTrack) tracked(f *pipeline.Flow, hash uint64) pipeline.TrackedFlow {
	b := &c.buckets[hash&c.mask]
	w := find(b, tagOf(hash), f)
	switch {
	case w < 0:
		return pipeline.TrackedFlow{}
	case c.idle(b, w):
		return pipeline.TrackedFlow{Ignored: "idle"}
	}
	e := &b.ent[w]
	r := c.realOf(e)
	if r == nil {
		return pipeline.TrackedFlow{Ignored: "stale"}
	}
	return pipeline.TrackedFlow{Held: true, VIP: c.snap.VIPs[e.vip].Name, Backend: r.Backend}
}
