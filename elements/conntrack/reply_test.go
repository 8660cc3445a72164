package conntrack

import (
	"context"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// replyOf is the reply of flow f from real r on port bport, as a
// translator (NAT) records it.
func replyOf(f pipeline.Flow, r snapshot.Real, bport uint16) pipeline.Flow {
	return pipeline.Flow{Src: r.Addr16, Dst: f.Src, SrcPort: bport, DstPort: f.SrcPort, Proto: f.Proto, Family: f.Family}
}

// TestReplyEntries: a reply entry that a translator tracked makes the
// reply a hit, marked FlowReply with its flow's VIP, real and VIP port; a
// reply no entry holds is dropped as conntrack.reply_unknown once a
// translator expects replies (a miss before); a client's packet still
// misses into selection; the reply entries are not counted as flows of
// their backend.
func TestReplyEntries(t *testing.T) {
	reals := fourReals()
	st := snapshot.NewStore(mkSnap(1, reals...))
	c := newCT(t, st, nil)
	f := flowN(1, 6, 80)
	p := newPacket(f, mix(1))
	learn(c, p, t0, 0, 2, 1)
	rf := replyOf(f, reals[2], 8080)
	q := newPacket(rf, mix(1000))
	if port := lookup(c, q, t0); port != outMiss {
		t.Fatalf("reply before a translator expects replies: port %d, want miss", port)
	}
	c.ExpectReplies()
	if port := lookup(c, q, t0); port != pipeline.Drop || q.Reason != reasonReplyUnknown {
		t.Fatalf("unknown reply: port %d reason %v, want a conntrack.reply_unknown drop", port, q.Reason)
	}
	if port := lookup(c, newPacket(flowN(2, 6, 80), mix(2)), t0); port != outMiss {
		t.Fatalf("new client flow: port %d, want miss", port)
	}
	start(c, t0)
	c.TrackReply(p, &rf, mix(1000))
	end(c)
	q = newPacket(rf, mix(1000))
	if port := lookup(c, q, t0+sec); port != outHit || q.Flow.Flags&pipeline.FlowReply == 0 || q.VIP != 0 || q.Backend != 2 || q.Epoch != 1 || q.VIPPort != 80 {
		t.Fatalf("reply: port %d flags %#x VIP %d real %d/%d VIP port %d", port, q.Flow.Flags, q.VIP, q.Backend, q.Epoch, q.VIPPort)
	}
	if port := lookup(c, p, t0+sec); port != outHit || p.Flow.Flags&pipeline.FlowReply != 0 {
		t.Fatalf("client's packet: port %d flags %#x", port, p.Flow.Flags)
	}
	var ft pipeline.FlowTableStats
	serveQuery(t, c, t0+sec, func(ctx context.Context) (err error) { ft, err = c.FlowTable(ctx); return err })
	if ft.Entries != 2 || len(ft.Flows) != 1 || ft.Flows[0].Flows != 1 {
		t.Errorf("flow table %+v, want 2 entries and 1 flow", ft)
	}
	if c.pub.replies.Load() != 1 {
		t.Errorf("replies_total %d, want 1", c.pub.replies.Load())
	}
}

// TestReplyEntryFollowsFlow: tracking again refreshes the entry (it
// outlives an idle timeout while its flow's packets come) and moves it
// with its flow to another real.
func TestReplyEntryFollowsFlow(t *testing.T) {
	reals := fourReals()
	st := snapshot.NewStore(mkSnap(1, reals...))
	c := newCT(t, st, func(c *ConnTrack) { c.TCPTimeout = "10s" })
	c.ExpectReplies()
	f := flowN(1, 6, 80)
	p := newPacket(f, mix(1))
	rf := replyOf(f, reals[2], 80)
	for s := int64(0); s <= 30; s += 5 {
		start(c, t0+s*sec)
		p.VIP, p.Backend, p.Epoch = 0, 2, 1
		c.TrackReply(p, &rf, mix(1000))
		end(c)
	}
	q := newPacket(rf, mix(1000))
	if port := lookup(c, q, t0+35*sec); port != outHit || q.Backend != 2 {
		t.Fatalf("reply after 35 s of tracking: port %d real %d", port, q.Backend)
	}
	start(c, t0+36*sec)
	p.Backend = 3
	c.TrackReply(p, &rf, mix(1000))
	end(c)
	if port := lookup(c, q, t0+36*sec); port != outHit || q.Backend != 3 {
		t.Fatalf("reply after its flow moved: port %d real %d", port, q.Backend)
	}
	if port := lookup(c, q, t0+60*sec); port != pipeline.Drop {
		t.Fatalf("reply after its entry's timeout: port %d", port)
	}
}

// TestTrackReplyZeroAllocs: tracking a reply allocates nothing.
func TestTrackReplyZeroAllocs(t *testing.T) {
	reals := fourReals()
	c := newCT(t, snapshot.NewStore(mkSnap(1, reals...)), nil)
	f := flowN(1, 6, 80)
	p := newPacket(f, mix(1))
	rf := replyOf(f, reals[2], 80)
	start(c, t0)
	defer end(c)
	if n := testing.AllocsPerRun(1000, func() { c.TrackReply(p, &rf, mix(1000)) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// TestSourceEntries: a full-NAT source (TrackSource) is recorded on the
// flow's entry (Source) and in a reply entry that makes the reply a hit
// with the flow's client as Peer; another flow cannot take the same reply
// 5-tuple (the port is taken) while the flow can refresh it; once the
// flow's entry no longer holds the source (the flow moved to another
// real), its reply is an unknown reply, dropped.
func TestSourceEntries(t *testing.T) {
	reals := fourReals()
	st := snapshot.NewStore(mkSnap(1, reals...))
	c := newCT(t, st, nil)
	c.ExpectReplies()
	f := flowN(1, 6, 80)
	p := newPacket(f, mix(1))
	learn(c, p, t0, 0, 2, 1)
	pool := netip.MustParseAddr("10.90.3.1").As16()
	rf := pipeline.Flow{Src: reals[2].Addr16, Dst: pool, SrcPort: 80, DstPort: 5000, Proto: 6, Family: 4}
	start(c, t0)
	if _, _, ok := c.Source(p); ok {
		t.Error("a new flow has a source")
	}
	if c.TrackSource(p, &rf, mix(1000), 3) != pipeline.SourceTracked {
		t.Fatal("TrackSource refused a free port")
	}
	if port, pi, ok := c.Source(p); !ok || port != 5000 || pi != 3 {
		t.Errorf("Source = %d, %d, %v; want 5000, 3, true", port, pi, ok)
	}
	end(c)
	q := newPacket(flowN(2, 6, 80), mix(2))
	learn(c, q, t0, 0, 2, 1)
	start(c, t0)
	if c.TrackSource(q, &rf, mix(1000), 3) != pipeline.SourceTaken {
		t.Error("another flow took a port in use")
	}
	if c.TrackSource(p, &rf, mix(1000), 3) != pipeline.SourceTracked {
		t.Error("the flow could not refresh its own source")
	}
	end(c)
	r := newPacket(rf, mix(1000))
	if port := lookup(c, r, t0+sec); port != outHit || r.Flow.Flags&pipeline.FlowReply == 0 || r.Peer != f.Src || r.PeerPort != f.SrcPort || r.VIPPort != 80 || r.Backend != 2 {
		t.Fatalf("reply: port %d reason %v flags %#x peer %v:%d VIP port %d real %d", port, r.Reason, r.Flow.Flags, netip.AddrFrom16(r.Peer), r.PeerPort, r.VIPPort, r.Backend)
	}
	learn(c, p, t0+sec, 0, 3, 1)
	r = newPacket(rf, mix(1000))
	if port := lookup(c, r, t0+sec); port != pipeline.Drop || r.Reason != reasonReplyUnknown {
		t.Errorf("reply of a flow that moved: port %d reason %v, want a conntrack.reply_unknown drop", port, r.Reason)
	}
	start(c, t0+sec)
	if _, _, ok := c.Source(p); ok {
		t.Error("a flow that moved to another real kept its source")
	}
	end(c)
}

// TestSourceRepliesKeepFlow: a full-NAT flow whose client falls silent
// while its replies go on (a download the client no longer
// acknowledges, a UDP stream) lives as long as the replies: each reply
// refreshes the flow's entry, which it needs for the client's address.
func TestSourceRepliesKeepFlow(t *testing.T) {
	reals := fourReals()
	c := newCT(t, snapshot.NewStore(mkSnap(1, reals...)), nil)
	c.ExpectReplies()
	f := flowN(1, 6, 80)
	p := newPacket(f, mix(1))
	learn(c, p, t0, 0, 2, 1)
	rf := pipeline.Flow{Src: reals[2].Addr16, Dst: netip.MustParseAddr("10.90.3.1").As16(), SrcPort: 80, DstPort: 5000, Proto: 6, Family: 4}
	start(c, t0)
	if c.TrackSource(p, &rf, mix(1000), 0) != pipeline.SourceTracked {
		t.Fatal("TrackSource refused a free port")
	}
	end(c)
	for m := int64(1); m <= 12; m++ { // the TCP timeout is 5 minutes
		r := newPacket(rf, mix(1000))
		if port := lookup(c, r, t0+m*60*sec); port != outHit || r.Peer != f.Src {
			t.Fatalf("reply after %d minutes of replies only: port %d reason %v", m, port, r.Reason)
		}
	}
}

// TestSourceUntracked: a flow whose bucket is full of established flows
// (learn forwards it untracked) gets no source: TrackSource records no
// reply entry and says SourceUntracked, so that a translator drops the
// packet rather than send what no reply can come back to. A tracked flow
// whose reply entry's bucket is full is SourceUntracked too, without a
// source.
func TestSourceUntracked(t *testing.T) {
	reals := fourReals()
	c := newCT(t, snapshot.NewStore(mkSnap(1, reals...)), func(c *ConnTrack) { c.Capacity = 16 })
	c.ExpectReplies()
	fill := func(bucket uint64) {
		for i := range uint64(ways) {
			p := newPacket(flowN(100+int(bucket)*ways+int(i), 6, 80), bucket|(i+1)<<8)
			learn(c, p, t0, 0, 2, 1)
			if port := lookup(c, p, t0); port != outHit { // its second packet: established
				t.Fatalf("filler %d: port %d", i, port)
			}
		}
	}
	fill(0)
	pool := netip.MustParseAddr("10.90.3.1").As16()
	p := newPacket(flowN(1, 6, 80), 0|9<<8) // bucket 0, full
	learn(c, p, t0, 0, 2, 1)
	rf := pipeline.Flow{Src: reals[2].Addr16, Dst: pool, SrcPort: 80, DstPort: 5000, Proto: 6, Family: 4}
	start(c, t0)
	if got := c.TrackSource(p, &rf, 1|9<<8, 0); got != pipeline.SourceUntracked {
		t.Errorf("a flow of a full bucket: %v, want SourceUntracked", got)
	}
	end(c)
	if n := c.pub.replies.Load(); n != 0 {
		t.Errorf("%d reply entries recorded for an untracked flow", n)
	}
	// A flow of bucket 1, whose reply entry would go to bucket 0.
	q := newPacket(flowN(2, 6, 80), 1|10<<8)
	learn(c, q, t0, 0, 2, 1)
	start(c, t0)
	if got := c.TrackSource(q, &rf, 0|10<<8, 0); got != pipeline.SourceUntracked {
		t.Errorf("a reply entry of a full bucket: %v, want SourceUntracked", got)
	}
	if _, _, ok := c.Source(q); ok {
		t.Error("a flow whose reply entry is untracked has a source")
	}
	end(c)
}

// TestSourceRetakesEvicted: a new flow whose entry a later new flow of
// the same batch evicted (learn runs for the whole batch before the
// translator) gets its entry back from TrackSource, and its source, as
// long as its bucket has a way that is not an established flow's.
func TestSourceRetakesEvicted(t *testing.T) {
	reals := fourReals()
	c := newCT(t, snapshot.NewStore(mkSnap(1, reals...)), func(c *ConnTrack) { c.Capacity = 8 })
	c.ExpectReplies()
	start(c, t0)
	var ps []*pipeline.Packet
	for i := range uint64(ways + 1) { // one more new flow than the bucket holds
		p := newPacket(flowN(200+int(i), 6, 80), (i+1)<<8)
		p.VIP, p.Backend, p.Epoch = 0, 2, 1
		c.Push(inLearn, p)
		ps = append(ps, p)
	}
	p := ps[0] // evicted by the last: all were seen at the same tick
	if _, _, ok := c.Source(p); ok {
		t.Fatal("the evicted flow has an entry")
	}
	rf := pipeline.Flow{Src: reals[2].Addr16, Dst: netip.MustParseAddr("10.90.3.1").As16(), SrcPort: 80, DstPort: 5000, Proto: 6, Family: 4}
	if got := c.TrackSource(p, &rf, 1<<40, 0); got != pipeline.SourceTracked {
		t.Fatalf("an evicted flow's source: %v, want SourceTracked", got)
	}
	if port, _, ok := c.Source(p); !ok || port != 5000 {
		t.Errorf("Source = %d, %v after TrackSource", port, ok)
	}
	end(c)
}
