// Package conntrack provides ConnTrack, the connection tracking table of a
// Maglev load balancer (Eisenbud et al., "Maglev: A Fast and Reliable
// Software Network Load Balancer", NSDI 2016, §3.3): it remembers the real
// each flow was sent to, so that a flow keeps its backend when the Maglev
// table changes (a backend added, a weight changed, a backend draining).
// As in the paper, the table is local to one packet thread (one per worker,
// shared with no one) and has a fixed size.
//
// The table is set-associative: p.Hash picks a bucket of 8 ways, a 16-bit
// tag per way avoids most full key compares, and all of it is allocated in
// Provision. Lookups, inserts and evictions never allocate.
package conntrack

import (
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/internal/hugemem"
	"github.com/xlbproject/xlb/pipeline"
)

// Ports.
const (
	inLookup = 0
	inLearn  = 1

	outHit  = 0
	outMiss = 1
)

var (
	// reasonNewFlowRate: a new flow above the worker's new_flow_rate.
	reasonNewFlowRate = pipeline.NewReason("conntrack.new_flow_rate")
	// reasonReplyUnknown: with a translator (NAT) after the table, a
	// packet that is neither for a VIP nor a reply of a flow the table
	// holds: a reply of a flow this node does not know (expired, or held
	// by another node), which must not leave untranslated.
	reasonReplyUnknown = pipeline.NewReason("conntrack.reply_unknown")
)

// Limits and defaults.
const (
	// DefaultCapacity is the number of flows a table holds by default.
	DefaultCapacity = 1 << 20
	// MaxCapacity bounds capacity: 64M flows take 4.5 GiB per worker.
	MaxCapacity = 1 << 26
	// maxTimeout keeps ages far below the 2^31 ticks (26 days) at which
	// the 32-bit last-seen clock wraps.
	maxTimeout = 24 * time.Hour
)

// ways is the associativity of a bucket.
const ways = 8

// tickShift converts the batch clock (ns) to the table's clock: a tick is
// 2^20 ns (about 1.05 ms), so a 32-bit last-seen time fits in the bucket's
// header line and still resolves timeouts finely.
const tickShift = 20

// Timeout classes, indexed into ConnTrack.timeouts.
const (
	clsTCP = iota
	clsUDP
	clsICMP
	clsOther
	clsTCPClosing // TCP after a FIN or RST
	numClasses
)

// TCP flags (RFC 9293 §3.1), at byte 13 of the TCP header.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// entry is one tracked flow: its key (the 5-tuple; the family is implied by
// the IPv4-mapped address form) and its value. It is padded to one 64-byte
// cache line so that a hit reads exactly one line besides the bucket header.
type entry struct {
	src, dst [16]byte
	rest     uint64 // SrcPort<<32 | DstPort<<16 | Proto
	vip      uint32
	real     uint32
	epoch    uint32
	// vport and rev: a reply entry (rev 1, or revSource), the reverse of
	// a flow that a translator (NAT, FullNAT) sent to a real on another
	// address or port, keyed on the reply's 5-tuple; vport is the VIP port
	// of its flow.
	vport uint16
	rev   uint8
	// pool and aux: a full-NAT source. On a flow's entry, the source
	// address's index and, in aux, the port TrackSource allocated plus
	// auxSource (0: none); on a reply entry (revSource), the same index
	// and, in aux, the hash of its flow, whose entry holds the client.
	pool uint8
	aux  uint64
}

// revSource marks a full-NAT reply entry (TrackSource).
const revSource = 2

// auxSource marks a flow entry's aux as holding a source port.
const auxSource = 1 << 16

// bucket is a header line (tags, last-seen ticks and timeout classes of its
// 8 ways: everything that lookup misses, victim choice and the sweeper need)
// followed by the ways' entries. It is 9 cache lines; slices this large are
// page-aligned by the Go allocator, so every bucket starts on a line.
type bucket struct {
	tag  [ways]uint16 // 0: the way is free
	seen [ways]uint32 // last-seen tick
	cls  [ways]uint8  // timeout class
	est  uint8        // bit w: way w's flow is established (see establishes)
	_    [7]byte
	ent  [ways]entry
}

// counters is one batch's worth of counts, published in EndBatch.
type counters struct {
	hits, misses, stale, learned, evictions, expired, untracked, replies uint64
}

// ConnTrack is the element. Exported fields are its HCL configuration.
type ConnTrack struct {
	Capacity      int    `hcl:"capacity,optional" doc:"flows each worker's table holds, rounded up to a power of two of 8-way buckets"`
	TCPTimeout    string `hcl:"tcp_timeout,optional" doc:"idle timeout of an established TCP flow, a duration"`
	TCPFinTimeout string `hcl:"tcp_fin_timeout,optional" doc:"idle timeout of a TCP flow after a FIN or RST"`
	UDPTimeout    string `hcl:"udp_timeout,optional" doc:"idle timeout of a UDP flow"`
	ICMPTimeout   string `hcl:"icmp_timeout,optional" doc:"idle timeout of an ICMP or ICMPv6 flow"`
	OtherTimeout  string `hcl:"other_timeout,optional" doc:"idle timeout of other protocols and fragments"`
	NewFlowRate   int    `hcl:"new_flow_rate,optional" doc:"new flows each worker admits per second, above which they are dropped; 0: unlimited"`
	NewFlowBurst  int    `hcl:"new_flow_burst,optional" doc:"new flows a worker admits at once above new_flow_rate; default one second's worth"`

	// Owned by the worker; valid after Provision.
	view    *snapshot.View
	buckets []bucket
	// freeBuckets unmaps buckets (hugemem.Slice): Cleanup runs it once
	// the worker that read them has stopped.
	freeBuckets func()
	mask        uint64
	timeouts    [numClasses]int32  // ticks
	snap        *snapshot.Snapshot // the batch's, from view
	tick        uint32             // batch clock in ticks, set in StartBatch
	sweep       uint64             // next bucket the sweeper visits
	swept       uint32             // tick of the last batch that swept sweepPerTick
	entries     int64              // occupied ways
	// pubEntries is entries as last published.
	pubEntries int64
	local      counters
	// tokens is the new-flow admission bucket (new_flow_rate), refilled
	// at each batch from the batch clock; refilled is that clock.
	tokens, burst float64
	refilled      int64
	// touched keeps Prefetch's loads from being optimised away.
	touched uint64
	// queries is the mailbox of FlowTable and TrackedFlow: other
	// goroutines post, the worker serves one at a time in EndBatch (cur),
	// so the table is never read by anyone else.
	queries chan *query
	cur     *query
	// replies is set when a translator tracks replies in the table
	// (ExpectReplies): a miss that is for no VIP is then a reply, which
	// the slot's stateless translation (NAT's), when there is one, may
	// still know; else it is an unknown reply.
	replies bool
	slot    *pipeline.ReplyTrackerSlot

	// Published once per batch, read by Stats from any goroutine.
	pub struct {
		hits, misses, stale, learned, evictions, expired, untracked, replies atomic.Uint64
		entries, capacity                                                    atomic.Uint64
	}
}

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "ConnTrack",
		Doc:     "Remembers each flow's real so that it keeps it across table changes (per-worker, fixed size, per-bucket LRU).",
		Inputs:  []string{"lookup", "learn"},
		Outputs: []string{"hit", "miss"},
		Routes:  [][]int{inLookup: {outHit, outMiss}, inLearn: {outHit}},
		New: func() pipeline.Element {
			return &ConnTrack{
				Capacity:      DefaultCapacity,
				TCPTimeout:    "5m",
				TCPFinTimeout: "10s",
				UDPTimeout:    "30s",
				ICMPTimeout:   "10s",
				OtherTimeout:  "30s",
			}
		},
	})
}

// Validate checks capacity and timeouts without side effects.
func (c *ConnTrack) Validate() error {
	if c.Capacity <= 0 {
		return &pipeline.AttrError{Attr: "capacity", Msg: "must be greater than 0"}
	}
	if c.Capacity > MaxCapacity {
		return &pipeline.AttrError{Attr: "capacity", Msg: "must be at most 67108864 (64M) flows"}
	}
	if c.NewFlowRate < 0 {
		return &pipeline.AttrError{Attr: "new_flow_rate", Msg: "must be 0 (unlimited) or a number of new flows per second"}
	}
	if c.NewFlowBurst < 0 || c.NewFlowBurst > 0 && c.NewFlowRate == 0 {
		return &pipeline.AttrError{Attr: "new_flow_burst", Msg: "must be greater than 0, and needs new_flow_rate"}
	}
	_, err := c.parseTimeouts()
	return err
}

// parseTimeouts converts the timeout attributes to ticks, rounding up.
func (c *ConnTrack) parseTimeouts() ([numClasses]int32, error) {
	var t [numClasses]int32
	for _, a := range []struct {
		attr, val string
		cls       int
	}{
		{"tcp_timeout", c.TCPTimeout, clsTCP},
		{"tcp_fin_timeout", c.TCPFinTimeout, clsTCPClosing},
		{"udp_timeout", c.UDPTimeout, clsUDP},
		{"icmp_timeout", c.ICMPTimeout, clsICMP},
		{"other_timeout", c.OtherTimeout, clsOther},
	} {
		d, err := time.ParseDuration(a.val)
		if err != nil {
			return t, &pipeline.AttrError{Attr: a.attr, Msg: "must be a duration such as \"30s\" or \"5m\""}
		}
		if d <= 0 || d > maxTimeout {
			return t, &pipeline.AttrError{Attr: a.attr, Msg: "must be greater than 0 and at most 24h"}
		}
		t[a.cls] = int32((d + 1<<tickShift - 1) >> tickShift)
	}
	return t, nil
}

// Provision allocates the whole table and gets the worker's view of the
// snapshots.
func (c *ConnTrack) Provision(ctx *pipeline.Context) error {
	v, err := snapshot.ViewFromContext(ctx)
	if err != nil {
		return err
	}
	slot := ctx.Local(pipeline.ReplyTrackerKey{Name: ctx.Name}, func() any { return &pipeline.ReplyTrackerSlot{} }).(*pipeline.ReplyTrackerSlot)
	slot.Tracker = c
	c.slot = slot
	return c.setup(v)
}

// setup is Provision after the view is found.
func (c *ConnTrack) setup(v *snapshot.View) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c.timeouts, _ = c.parseTimeouts()
	nb := uint64(1) << bits.Len64(uint64(c.Capacity+ways-1)/ways-1)
	c.buckets, c.freeBuckets = hugemem.Slice[bucket](int(nb))
	c.mask = nb - 1
	c.view = v
	c.queries = make(chan *query, 16)
	c.pub.capacity.Store(nb * ways)
	c.burst = float64(c.NewFlowBurst)
	if c.burst == 0 {
		c.burst = float64(c.NewFlowRate)
	}
	c.tokens = c.burst
	return nil
}

// Cleanup drops the table; it is safe after a partial Provision.
func (c *ConnTrack) Cleanup() error {
	if c.freeBuckets != nil {
		c.freeBuckets()
	}
	c.buckets, c.freeBuckets, c.view, c.snap = nil, nil, nil, nil
	return nil
}

// StartBatch takes the batch's snapshot and clock.
func (c *ConnTrack) StartBatch(now int64) {
	c.snap = c.view.Snapshot()
	c.tick = uint32(uint64(now) >> tickShift)
	if c.NewFlowRate > 0 {
		if dt := now - c.refilled; dt > 0 {
			c.tokens = min(c.burst, c.tokens+float64(dt)*float64(c.NewFlowRate)/1e9)
		}
		c.refilled = now
	}
}

// The sweeper scans buckets for idle entries. Lookups and inserts already
// treat idle entries as free; the sweep only keeps the entries gauge honest
// and bounds how long an untouched entry can live, so that the 32-bit clock
// never wraps under it. Its work follows the packets: one bucket per
// sweepEvery lookups, so that a batch of a few packets (a lightly loaded
// NIC hands over about 5) does not pay for a full batch's sweep. A batch
// that starts a new tick, and an empty batch (live sources return them when
// idle), sweep at least sweepPerTick buckets, which bounds an entry's
// unswept life by the table's size in ticks whatever the traffic.
const (
	sweepEvery   = 8
	sweepPerTick = 8
)

// sweepBudget is how many buckets the sweep of a batch of lookups visits.
func (c *ConnTrack) sweepBudget(lookups uint64) uint64 {
	n := (lookups + sweepEvery - 1) / sweepEvery
	if lookups == 0 || c.tick != c.swept {
		n = max(n, sweepPerTick)
	}
	return n
}

// EndBatch serves the query under way, sweeps a few buckets, publishes the
// batch's counters and lets go of the batch's snapshot.
func (c *ConnTrack) EndBatch() {
	// Only the worker receives: a query counted by len is there to take,
	// and len is one load, not a call, on batches without any.
	if c.cur == nil && len(c.queries) > 0 {
		c.cur = <-c.queries
	}
	if c.cur != nil {
		c.serve(c.local.hits+c.local.misses+c.local.learned == 0)
	}
	c.snap = nil
	n := c.sweepBudget(c.local.hits + c.local.misses)
	c.swept = c.tick
	for range n {
		b := &c.buckets[c.sweep]
		c.sweep = (c.sweep + 1) & c.mask
		if b.tag == ([ways]uint16{}) {
			continue
		}
		for w := range ways {
			if b.tag[w] != 0 && c.idle(b, w) {
				b.tag[w] = 0
				c.entries--
				c.local.expired++
			}
		}
	}
	// Only what changed is published: each atomic add or store is a
	// locked instruction, and with batches of a few packets a dozen of
	// them per batch cost as much as the packets' lookups.
	l := &c.local
	if *l != (counters{}) {
		for _, a := range [...]struct {
			v *atomic.Uint64
			n uint64
		}{{&c.pub.hits, l.hits}, {&c.pub.misses, l.misses}, {&c.pub.stale, l.stale}, {&c.pub.learned, l.learned},
			{&c.pub.evictions, l.evictions}, {&c.pub.expired, l.expired}, {&c.pub.untracked, l.untracked}, {&c.pub.replies, l.replies}} {
			if a.n != 0 {
				a.v.Add(a.n)
			}
		}
		*l = counters{}
	}
	if c.entries != c.pubEntries {
		c.pub.entries.Store(uint64(c.entries))
		c.pubEntries = c.entries
	}
}

// age is how many ticks ago way w was seen. A clock that went backwards
// (two sources with different clocks in one worker) reads as age 0.
func (c *ConnTrack) age(b *bucket, w int) int32 {
	return max(int32(c.tick-b.seen[w]), 0)
}

// idle reports whether way w has outlived its idle timeout.
func (c *ConnTrack) idle(b *bucket, w int) bool {
	return c.age(b, w) > c.timeouts[b.cls[w]]
}

// tagOf takes the tag from the hash's high bits; the bucket index uses the
// low bits, so the two are independent. 0 is reserved for free ways.
func tagOf(h uint64) uint16 {
	return max(uint16(h>>48), 1)
}

func restOf(f *pipeline.Flow) uint64 {
	return uint64(f.SrcPort)<<32 | uint64(f.DstPort)<<16 | uint64(f.Proto)
}

// find returns the way of b that holds flow f, or -1.
func find(b *bucket, tag uint16, f *pipeline.Flow) int {
	rest := restOf(f)
	for w := range ways {
		if b.tag[w] == tag {
			e := &b.ent[w]
			if e.rest == rest && e.src == f.Src && e.dst == f.Dst {
				return w
			}
		}
	}
	return -1
}

// findLive is find, but an idle entry is gone: it is expired (and
// counted) and the flow found nowhere, so that the packet starts a new one.
func (c *ConnTrack) findLive(b *bucket, tag uint16, f *pipeline.Flow) int {
	w := find(b, tag, f)
	if w >= 0 && c.idle(b, w) {
		b.tag[w] = 0
		c.entries--
		c.local.expired++
		return -1
	}
	return w
}

// tcpFlags returns the TCP flags of p, if p carries a TCP header: not a
// later fragment (Parse5Tuple's L4 is then the fragment payload) and not an ICMP
// error (L4 is the ICMP header; Proto is the quoted packet's).
func tcpFlags(p *pipeline.Packet) (uint8, bool) {
	if p.Flow.Proto != 6 || p.Flow.Flags&(pipeline.FlowFragment|pipeline.FlowICMPError|pipeline.FlowLaterFragment) != 0 {
		return 0, false
	}
	d := p.Data()
	if i := int(p.L4) + 13; i < len(d) {
		return d[i], true
	}
	return 0, false
}

// classOf returns the timeout class for a packet of flow p.Flow, given the
// class its entry had (clsTCP for a new one).
//
// xlb does direct server return, so it sees only client-to-server packets:
// it cannot follow the TCP state machine (RFC 9293 §3.3.2) as a stateful
// firewall does. A client's FIN or RST is the one sign of a closing
// connection it gets; it then shortens the entry's timeout to
// tcp_fin_timeout, long enough for the client's last ACKs and for a
// half-closed connection whose client keeps acknowledging. A bare SYN on a
// closing entry is a new connection reusing the 4-tuple and restores the
// full timeout.
func classOf(p *pipeline.Packet, prev uint8) uint8 {
	switch p.Flow.Proto {
	case 6:
		f, ok := tcpFlags(p)
		switch {
		case !ok:
		case f&(tcpFIN|tcpRST) != 0:
			return clsTCPClosing
		case f&(tcpSYN|tcpACK) == tcpSYN:
			return clsTCP
		}
		return prev
	case 17:
		return clsUDP
	case 1, 58:
		return clsICMP
	}
	return clsOther
}

// Prefetch touches, for every packet of the batch, its bucket's header line
// and then the entry line its tag points at. Go has no prefetch
// instruction, but these loads are independent of each other, so the CPU
// keeps many of them in flight at once: with a table far larger than the
// caches, a batch then waits for about two memory latencies instead of two
// per packet.
//
// The header lines of the buckets that EndBatch will sweep are touched
// with the first: they are as cold, and a sweep that met them one after
// another cost as much as the batch's lookups.
func (c *ConnTrack) Prefetch(in int, pkts []*pipeline.Packet) {
	var sum uint64
	for _, p := range pkts {
		sum += uint64(c.buckets[p.Hash&c.mask].tag[0])
	}
	if in == inLookup {
		for k := range c.sweepBudget(uint64(len(pkts))) {
			sum += uint64(c.buckets[(c.sweep+k)&c.mask].tag[0])
		}
	}
	for _, p := range pkts {
		sum += c.touchEntry(p.Hash)
	}
	c.touched = sum
}

// touchEntry loads the entry line the tag of hash points at in its
// bucket, for Prefetch's second pass.
func (c *ConnTrack) touchEntry(hash uint64) uint64 {
	b := &c.buckets[hash&c.mask]
	tag := tagOf(hash)
	for w := range ways {
		if b.tag[w] == tag {
			return b.ent[w].rest
		}
	}
	return 0
}

// PrefetchReplies is Prefetch for the reply entries a translator is about
// to record (TrackReply) with these hashes: their buckets are as cold as
// the lookups', and elsewhere in the table.
func (c *ConnTrack) PrefetchReplies(hashes []uint64) {
	var sum uint64
	for _, h := range hashes {
		sum += uint64(c.buckets[h&c.mask].tag[0])
	}
	for _, h := range hashes {
		sum += c.touchEntry(h)
	}
	c.touched += sum
}

// Push looks a packet up (input lookup) or records the real MaglevSelect
// chose for it (input learn).
//
// A lookup is a hit when the flow has a live entry whose real may still
// carry it: same ID and epoch in the current snapshot, Up or Draining, and
// still a member of the entry's VIP. An idle or stale entry is freed so
// that the learn that follows (or any new flow) can take its way.
func (c *ConnTrack) Push(in int, p *pipeline.Packet) int {
	var port [1]uint8
	if c.PushBatch(in, []*pipeline.Packet{p}, port[:]) == 1 {
		return int(port[0])
	}
	if in == inLearn {
		return c.learn(p)
	}
	return c.lookup(p)
}

// PushBatch is Push for what cannot be dropped: a learn that
// new_flow_rate cannot refuse, a lookup's hit, and a miss without a
// translator after the table (ExpectReplies). A hit is decided here, not
// in a function of its own, to spare every packet a call. PushBatch stops
// at an idle or stale entry, a full-NAT reply whose flow is gone, or a
// miss that may be an unknown reply: lookup decides those.
func (c *ConnTrack) PushBatch(in int, pkts []*pipeline.Packet, ports []uint8) int {
	ports = ports[:len(pkts)]
	if in == inLearn {
		for i, p := range pkts {
			if c.NewFlowRate > 0 && c.tokens < 1 {
				return i
			}
			ports[i] = uint8(c.learn(p))
		}
		return len(pkts)
	}
	// Hits and misses are counted here and added to c.local once: an
	// increment there per packet is a load and a store.
	var hits, misses uint64
	n := len(pkts)
	for i, p := range pkts {
		b := &c.buckets[p.Hash&c.mask]
		w := find(b, tagOf(p.Hash), &p.Flow)
		if w < 0 {
			if c.replies {
				n = i
				break
			}
			misses++
			ports[i] = outMiss
			continue
		}
		// peer writes nothing when it fails.
		e := &b.ent[w]
		if c.idle(b, w) || !keeps(c.snap, e) || e.rev == revSource && !c.peer(p, e) {
			n = i
			break
		}
		p.VIP, p.Backend, p.Epoch = e.vip, e.real, e.epoch
		if e.rev != 0 {
			p.Flow.Flags |= pipeline.FlowReply
			p.VIPPort = e.vport
		}
		// The header line is written only when something in it changes:
		// the clock moves once a tick, not once a packet, and a line
		// left clean need not be written back when it leaves the cache.
		if b.seen[w] != c.tick {
			b.seen[w] = c.tick
		}
		// Only a SYN, a FIN or a RST can change a TCP flow's class
		// (classOf): other packets spare the call.
		if f, ok := tcpFlags(p); ok && f&(tcpSYN|tcpFIN|tcpRST) != 0 {
			if cls := classOf(p, b.cls[w]); cls != b.cls[w] {
				b.cls[w] = cls
			}
		}
		if b.est&(1<<w) == 0 && establishes(p) {
			b.est |= 1 << w
		}
		hits++
		ports[i] = outHit
	}
	c.local.hits += hits
	c.local.misses += misses
	return n
}

// lookup is Push's lookup for what PushBatch leaves: it frees an idle or
// stale entry (the learn that follows, or any new flow, can take its
// way) and drops a full-NAT reply whose flow is gone and, with a
// translator after the table, a packet for no VIP.
func (c *ConnTrack) lookup(p *pipeline.Packet) int {
	b := &c.buckets[p.Hash&c.mask]
	w := find(b, tagOf(p.Hash), &p.Flow)
	if w < 0 {
		return c.miss(p)
	}
	if c.idle(b, w) {
		b.tag[w] = 0
		c.entries--
		c.local.expired++
		return c.miss(p)
	}
	if !keeps(c.snap, &b.ent[w]) {
		b.tag[w] = 0
		c.entries--
		c.local.stale++
		return c.miss(p)
	}
	// A full-NAT reply whose flow, which allocated the source, is gone
	// (expired or evicted first): the reply's client is unknown.
	c.local.misses++
	p.Reason = reasonReplyUnknown
	return pipeline.Drop
}

// miss counts a lookup that found no usable entry and sends it to
// selection; with a translator after the table, a packet for no VIP is a
// reply: one the translator knows statelessly (a flow of another worker
// or node) leaves by hit as its reply entry's would, else it is an
// unknown reply, dropped here (selection would drop it as for no VIP, but
// an operator must tell one from the other).
func (c *ConnTrack) miss(p *pipeline.Packet) int {
	c.local.misses++
	if c.replies {
		if _, ok := c.snap.LookupVIP(&p.Flow); !ok {
			return c.reply(p)
		}
	}
	return outMiss
}

// reply is miss for a reply: a hit marked FlowReply when the stateless
// translation knows it, else a drop. Apart from miss, so that the tunnel
// modes' misses do not carry its code.
func (c *ConnTrack) reply(p *pipeline.Packet) int {
	if s := c.slot; s != nil && s.Stateless != nil && s.Stateless.ReplyOf(p) {
		p.Flow.Flags |= pipeline.FlowReply
		return outHit
	}
	p.Reason = reasonReplyUnknown
	return pipeline.Drop
}

// ExpectReplies tells the table that a translator tracks replies in it
// (see miss). Called from the translator's Provision.
func (c *ConnTrack) ExpectReplies() { c.replies = true }

// TrackReply records, or refreshes, the reply entry of p's flow: the
// reverse of the flow as the translator sent it, keyed on reply (hashed
// as Parse5Tuple hashes the reply's packets, so that their lookup finds
// it), with p's VIP, real and destination port. It runs for every packet
// the translator sends, so that the reply entry lives as long as the flow
// does even when replies are rare, and comes back after an eviction. It
// takes a way as learn does, without new_flow_rate's admission: p's flow
// was admitted already.
func (c *ConnTrack) TrackReply(p *pipeline.Packet, reply *pipeline.Flow, hash uint64) {
	b := &c.buckets[hash&c.mask]
	tag := tagOf(hash)
	w := c.findLive(b, tag, reply)
	cls := uint8(clsTCP)
	if w >= 0 {
		cls = b.cls[w]
	} else {
		if w = c.victim(b); w < 0 {
			c.local.untracked++
			return
		}
		claim(b, w, tag, reply, 1)
		c.local.replies++
	}
	e := &b.ent[w]
	if e.vip != p.VIP || e.real != p.Backend || e.epoch != p.Epoch || e.vport != p.Flow.DstPort {
		e.vip, e.real, e.epoch, e.vport = p.VIP, p.Backend, p.Epoch, p.Flow.DstPort
	}
	if b.seen[w] != c.tick {
		b.seen[w] = c.tick
	}
	if cls = classOf(p, cls); cls != b.cls[w] {
		b.cls[w] = cls
	}
}

// TrackSource records the reply entry of p's flow for a full-NAT
// translator, as TrackReply does, unless another live entry holds reply's
// 5-tuple (the port is taken: SourceTaken) or p's flow has no entry and
// its bucket no room for one (full of established flows:
// SourceUntracked, recording nothing). The reply entry refers to p's flow by its hash and to the
// source by pool; p's flow entry records the source (Source), so that
// the flow keeps it. A reply entry its bucket has no room for
// (SourceUntracked) is counted in untracked_total, as TrackReply's.
func (c *ConnTrack) TrackSource(p *pipeline.Packet, reply *pipeline.Flow, hash uint64, pool uint8) pipeline.SourceResult {
	fb := &c.buckets[p.Hash&c.mask]
	fw := find(fb, tagOf(p.Hash), &p.Flow)
	if fw < 0 {
		// Not learned (its bucket full of established flows), or
		// evicted since by a new flow: learn runs for a whole batch
		// before the translator does. Taken back as learn takes a way,
		// or untracked still.
		if fw = c.victim(fb); fw < 0 {
			return pipeline.SourceUntracked
		}
		claim(fb, fw, tagOf(p.Hash), &p.Flow, 0)
		fe := &fb.ent[fw]
		fe.vip, fe.real, fe.epoch = p.VIP, p.Backend, p.Epoch
		fb.seen[fw] = c.tick
		fb.cls[fw] = classOf(p, clsTCP)
	}
	b := &c.buckets[hash&c.mask]
	w := find(b, tagOf(hash), reply)
	if w >= 0 && !c.idle(b, w) {
		e := &b.ent[w]
		if e.rev != revSource || e.aux != p.Hash || e.pool != pool || e.vip != p.VIP || e.real != p.Backend || e.epoch != p.Epoch {
			return pipeline.SourceTaken
		}
	}
	// In one bucket with its reply entry, a new flow's entry must not be
	// the way the reply entry takes: both just seen, the least recently
	// seen of the bucket may be either. It is held as established
	// meanwhile, which victim spares.
	held := fb == b && fb.est&(1<<fw) == 0
	if held {
		fb.est |= 1 << fw
	}
	c.TrackReply(p, reply, hash)
	if held {
		fb.est &^= 1 << fw
	}
	if w = find(b, tagOf(hash), reply); w < 0 {
		return pipeline.SourceUntracked // a full bucket
	}
	e := &b.ent[w]
	if e.rev != revSource || e.aux != p.Hash || e.pool != pool {
		e.rev, e.aux, e.pool = revSource, p.Hash, pool
	}
	fe := &fb.ent[fw]
	if a := auxSource | uint64(reply.DstPort); fe.aux != a || fe.pool != pool {
		fe.aux, fe.pool = a, pool
	}
	return pipeline.SourceTracked
}

// Source returns the source TrackSource recorded on p's flow entry.
func (c *ConnTrack) Source(p *pipeline.Packet) (uint16, uint8, bool) {
	b := &c.buckets[p.Hash&c.mask]
	w := find(b, tagOf(p.Hash), &p.Flow)
	if w < 0 {
		return 0, 0, false
	}
	e := &b.ent[w]
	if e.rev != 0 || e.aux&auxSource == 0 || e.vip != p.VIP || e.real != p.Backend || e.epoch != p.Epoch {
		return 0, 0, false
	}
	return uint16(e.aux), e.pool, true
}

// peer writes the client of full-NAT reply entry e's flow to p, from the
// flow's entry, found by the hash e holds: it must still be the flow of
// e's real that holds e's source. It reports false when there is none,
// and refreshes the flow's entry when there is.
func (c *ConnTrack) peer(p *pipeline.Packet, e *entry) bool {
	b := &c.buckets[e.aux&c.mask]
	tag := tagOf(e.aux)
	want := auxSource | uint64(p.Flow.DstPort)
	for w := range ways {
		if b.tag[w] != tag {
			continue
		}
		fe := &b.ent[w]
		if fe.rev == 0 && fe.aux == want && fe.pool == e.pool && fe.real == e.real && fe.epoch == e.epoch && fe.vip == e.vip && !c.idle(b, w) {
			p.Peer, p.PeerPort = fe.src, uint16(fe.rest>>32)
			// The reply keeps its flow's entry alive, which it needs,
			// when the client falls silent (a UDP stream, a download).
			if b.seen[w] != c.tick {
				b.seen[w] = c.tick
			}
			return true
		}
	}
	return false
}

// establishes reports whether p, a packet after its flow's first, makes
// the flow established: safe from eviction by new flows (see victim).
// With direct server return only the client's side is seen, so this is
// what it shows of a handshake completed: a second packet, which for TCP
// must carry no SYN (a retransmitted SYN completes nothing, and a SYN
// flood's spoofed sources never send the ACK). ICMP errors come from
// routers, not from the client, and establish nothing; neither do TCP
// fragments, whose flags are not at hand.
func establishes(p *pipeline.Packet) bool {
	if p.Flow.Flags&pipeline.FlowICMPError != 0 {
		return false
	}
	if p.Flow.Proto != 6 {
		return true
	}
	f, ok := tcpFlags(p)
	return ok && f&tcpSYN == 0
}

// keeps reports whether e's real may still carry e's flow: same ID and
// epoch in snapshot s (the batch's), Up or Draining, and still a member of
// e's VIP. It is small enough to inline into Push.
func keeps(s *snapshot.Snapshot, e *entry) bool {
	if int(e.real) >= s.Reals.Len() {
		return false
	}
	// Snapshot.Real's tests, written out: through it keeps would not inline.
	r := s.Reals.At(e.real)
	return r.Epoch == e.epoch && e.epoch != 0 && r.KeepsFlows() && r.VIP == e.vip
}

// realOf returns the real of e when it keeps e's flow, nil otherwise.
func (c *ConnTrack) realOf(e *entry) *snapshot.Real {
	if !keeps(c.snap, e) {
		return nil
	}
	return c.snap.Reals.At(e.real)
}

// learn inserts or overwrites p's entry with p.VIP/p.Backend/p.Epoch and
// returns the port p leaves by.
//
// A new flow is first admitted by the worker's token bucket (new_flow_rate):
// above the rate it is dropped (conntrack.new_flow_rate), so that a flood
// of new flows costs the backends and the table no more than the rate.
// Then it takes, in order: a free way, the least recently seen idle way,
// and else evicts the least recently seen live flow that is not
// established. A bucket whose 8 ways all hold live established flows
// refuses it: the packet is forwarded on MaglevSelect's choice, untracked
// (counted in untracked_total), as VPP lb does with every full bucket.
//
// Katran's per-CPU LRU evicts whatever is oldest, established flows
// included, so a SYN flood at several times the table's size flushes every
// established flow, which then moves when the Maglev table changes. Here a
// flood can only churn the ways of other non-established flows. Refused
// flows are forwarded rather than dropped because a full bucket is a fact
// of the table's geometry, not of the traffic: at half the capacity about
// one flow in 120 lands in a bucket of more than 8 (Poisson, mean 4), and
// it still reaches the backend the Maglev table gives it.
func (c *ConnTrack) learn(p *pipeline.Packet) int {
	b := &c.buckets[p.Hash&c.mask]
	tag := tagOf(p.Hash)
	w := c.findLive(b, tag, &p.Flow)
	cls := uint8(clsTCP)
	if w >= 0 {
		cls = b.cls[w]
		// find read this entry's line: comparing it costs nothing. A
		// new entry is only written, never read, so that its line's
		// fetch does not stall the packet (a load of the old real there
		// cost the miss path 60 ns).
		if e := &b.ent[w]; e.real != p.Backend || e.epoch != p.Epoch || e.vip != p.VIP {
			e.aux = 0 // a source allocated for another real is not this one's
		}
	} else {
		if c.NewFlowRate > 0 {
			if c.tokens < 1 {
				p.Reason = reasonNewFlowRate
				return pipeline.Drop
			}
			c.tokens--
		}
		if w = c.victim(b); w < 0 {
			c.local.untracked++
			return outHit
		}
		claim(b, w, tag, &p.Flow, 0)
	}
	e := &b.ent[w]
	e.vip, e.real, e.epoch = p.VIP, p.Backend, p.Epoch
	b.seen[w] = c.tick
	b.cls[w] = classOf(p, cls)
	c.local.learned++
	return outHit
}

// claim makes way w of b the entry of flow f (rev 0) or of a reply
// (rev 1), not established, its value for the caller to write.
func claim(b *bucket, w int, tag uint16, f *pipeline.Flow, rev uint8) {
	e := &b.ent[w]
	e.src, e.dst, e.rest = f.Src, f.Dst, restOf(f)
	e.rev, e.aux = rev, 0
	b.tag[w] = tag
	b.est &^= 1 << w
}

// victim picks the way a new flow takes and counts what it displaces, or
// returns -1 when every way holds a live established flow.
func (c *ConnTrack) victim(b *bucket) int {
	idleW, idleAge := -1, int32(-1)
	liveW, liveAge := -1, int32(-1)
	for w := range ways {
		if b.tag[w] == 0 {
			c.entries++
			return w
		}
		a := c.age(b, w)
		if a > c.timeouts[b.cls[w]] {
			if a > idleAge {
				idleW, idleAge = w, a
			}
		} else if b.est&(1<<w) == 0 && a > liveAge {
			liveW, liveAge = w, a
		}
	}
	if idleW >= 0 {
		c.local.expired++
		return idleW
	}
	if liveW >= 0 {
		c.local.evictions++
	}
	return liveW
}

// Stats reports the counters published at the end of the last batch.
func (c *ConnTrack) Stats(emit func(pipeline.Metric)) {
	for _, m := range []struct {
		name, help string
		v          *atomic.Uint64
		gauge      bool
	}{
		{"xlb_conntrack_entries", "Flows in the table (idle ones until swept or reused).", &c.pub.entries, true},
		{"xlb_conntrack_capacity", "Flows the table can hold.", &c.pub.capacity, true},
		{"xlb_conntrack_hits_total", "Lookups that found a live flow with a usable real.", &c.pub.hits, false},
		{"xlb_conntrack_misses_total", "Lookups sent to backend selection (stale ones included).", &c.pub.misses, false},
		{"xlb_conntrack_stale_total", "Lookups that found a flow whose real is gone, down or moved.", &c.pub.stale, false},
		{"xlb_conntrack_learned_total", "Flows inserted or updated after backend selection.", &c.pub.learned, false},
		{"xlb_conntrack_evictions_total", "Live flows not yet established evicted by a new flow (least recently seen of a full bucket).", &c.pub.evictions, false},
		{"xlb_conntrack_untracked_total", "New flows forwarded untracked: every way of their bucket held a live established flow.", &c.pub.untracked, false},
		{"xlb_conntrack_expired_total", "Idle flows removed (by lookup, reuse or the sweeper).", &c.pub.expired, false},
		{"xlb_conntrack_replies_total", "Reply entries inserted for a translator (NAT): the reverse of a flow, so that its replies are hits.", &c.pub.replies, false},
	} {
		emit(pipeline.Metric{Name: m.name, Help: m.help, Value: m.v.Load(), Gauge: m.gauge})
	}
}

var (
	_ pipeline.FlowTracker   = (*ConnTrack)(nil)
	_ pipeline.ReplyTracker  = (*ConnTrack)(nil)
	_ pipeline.Pusher        = (*ConnTrack)(nil)
	_ pipeline.BatchPusher   = (*ConnTrack)(nil)
	_ pipeline.Validator     = (*ConnTrack)(nil)
	_ pipeline.Provisioner   = (*ConnTrack)(nil)
	_ pipeline.Cleaner       = (*ConnTrack)(nil)
	_ pipeline.BatchStarter  = (*ConnTrack)(nil)
	_ pipeline.BatchEnder    = (*ConnTrack)(nil)
	_ pipeline.StatsReporter = (*ConnTrack)(nil)
)
var _ pipeline.Prefetcher = (*ConnTrack)(nil)
