package conntrack

import (
	"errors"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// sec is one second of batch clock.
const sec = int64(time.Second)

// t0 is an arbitrary start of the batch clock, far from 0 so that no test
// depends on the clock starting at 0.
const t0 = 1_700_000_000 * sec

var vipAddr = netip.MustParseAddr("192.0.2.10")

// mkReal returns real id of VIP vip, Up, with epoch 1.
func mkReal(id, vip uint32) snapshot.Real {
	a := netip.AddrFrom4([4]byte{10, 0, 1, byte(id)})
	return snapshot.Real{ID: id, Epoch: 1, VIP: vip, Backend: "b" + string(rune('a'+id)),
		Addr: a, Addr16: a.As16(), Family: 4, Weight: 1, State: snapshot.Up}
}

// mkSnap builds a snapshot with two VIPs (0: tcp/80, 1: udp/53) over reals.
func mkSnap(gen uint64, reals ...snapshot.Real) *snapshot.Snapshot {
	vips := []snapshot.VIP{
		{Name: "web", Addr: vipAddr, Proto: 6, Ports: []uint16{80}},
		{Name: "dns", Addr: vipAddr, Proto: 17, Ports: []uint16{53}},
	}
	for _, r := range reals {
		vips[r.VIP].Reals = append(vips[r.VIP].Reals, r.ID)
	}
	return snapshot.New(gen, 42, vips, reals)
}

// fourReals is reals 0..3 of VIP 0, all Up.
func fourReals() []snapshot.Real {
	return []snapshot.Real{mkReal(0, 0), mkReal(1, 0), mkReal(2, 0), mkReal(3, 0)}
}

// newCT returns a provisioned ConnTrack over store st, configured by cfg.
func newCT(t testing.TB, st *snapshot.Store, cfg func(*ConnTrack)) *ConnTrack {
	t.Helper()
	typ, ok := pipeline.Lookup("ConnTrack")
	if !ok {
		t.Fatal("ConnTrack not registered")
	}
	c := typ.New().(*ConnTrack)
	if cfg != nil {
		cfg(c)
	}
	if err := c.setup(snapshot.NewView(st)); err != nil {
		t.Fatal(err)
	}
	return c
}

// start and end frame a batch as the engine does: the worker's view first
// and last, the element in between.
func start(c *ConnTrack, now int64) {
	c.view.StartBatch(now)
	c.StartBatch(now)
}

func end(c *ConnTrack) {
	c.EndBatch()
	c.view.EndBatch()
}

// flowN returns a distinct client flow to the VIP for each n: source
// ::ffff:198.51.x.y, source port from n, destination VIP:port.
func flowN(n int, proto uint8, dport uint16) pipeline.Flow {
	f := pipeline.Flow{Proto: proto, Family: 4, SrcPort: uint16(1024 + n%50000), DstPort: dport}
	f.Src = netip.AddrFrom4([4]byte{198, 51, byte(n >> 16), byte(n >> 8)}).As16()
	f.Dst = vipAddr.As16()
	return f
}

// mix is SplitMix64's finalizer: a stand-in for Parse5Tuple's seeded hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// frameLen is an Ethernet + IPv4 + TCP header, the longest fixture here.
const frameLen = 14 + 20 + 20

// newPacket returns a packet of flow f with hash h, over a zeroed frame with
// headroom, and offsets as Parse5Tuple sets them for untagged IPv4.
func newPacket(f pipeline.Flow, h uint64) *pipeline.Packet {
	p := pipelinetest.Packet(make([]byte, frameLen))
	p.L3, p.L4 = 14, 34
	p.Flow, p.Hash = f, h
	return p
}

// reset clears what ConnTrack and MaglevSelect write, as a new packet would
// have it.
func reset(p *pipeline.Packet) { p.VIP, p.Backend, p.Epoch = 0, 0, 0 }

// lookup runs one packet through the lookup input in a batch at now.
func lookup(c *ConnTrack, p *pipeline.Packet, now int64) int {
	start(c, now)
	reset(p)
	port := c.Push(inLookup, p)
	end(c)
	return port
}

// learn runs one packet, as MaglevSelect left it, through learn at now.
func learn(c *ConnTrack, p *pipeline.Packet, now int64, vip, real, epoch uint32) int {
	start(c, now)
	p.VIP, p.Backend, p.Epoch = vip, real, epoch
	port := c.Push(inLearn, p)
	end(c)
	return port
}

// metrics returns the element's metrics by name.
func metrics(c *ConnTrack) map[string]uint64 {
	m := map[string]uint64{}
	c.Stats(func(x pipeline.Metric) { m[x.Name] = x.Value })
	return m
}

func TestLayout(t *testing.T) {
	// One line per entry and a header line per bucket: a hit touches two
	// lines, which is what the 1M-flows benchmark measures.
	if s := unsafe.Sizeof(entry{}); s != 64 {
		t.Errorf("entry is %d bytes, want 64", s)
	}
	if s := unsafe.Sizeof(bucket{}); s != 64*(1+ways) {
		t.Errorf("bucket is %d bytes, want %d", s, 64*(1+ways))
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*ConnTrack)
		attr string // "" when valid
	}{
		{"defaults", func(*ConnTrack) {}, ""},
		{"capacity 1", func(c *ConnTrack) { c.Capacity = 1 }, ""},
		{"capacity max", func(c *ConnTrack) { c.Capacity = MaxCapacity }, ""},
		{"capacity 0", func(c *ConnTrack) { c.Capacity = 0 }, "capacity"},
		{"capacity negative", func(c *ConnTrack) { c.Capacity = -5 }, "capacity"},
		{"capacity too large", func(c *ConnTrack) { c.Capacity = MaxCapacity + 1 }, "capacity"},
		{"tcp not a duration", func(c *ConnTrack) { c.TCPTimeout = "5 minutes" }, "tcp_timeout"},
		{"tcp empty", func(c *ConnTrack) { c.TCPTimeout = "" }, "tcp_timeout"},
		{"udp zero", func(c *ConnTrack) { c.UDPTimeout = "0s" }, "udp_timeout"},
		{"icmp negative", func(c *ConnTrack) { c.ICMPTimeout = "-1s" }, "icmp_timeout"},
		{"other too long", func(c *ConnTrack) { c.OtherTimeout = "25h" }, "other_timeout"},
		{"fin too long", func(c *ConnTrack) { c.TCPFinTimeout = "48h" }, "tcp_fin_timeout"},
		{"fin 24h", func(c *ConnTrack) { c.TCPFinTimeout = "24h" }, ""},
		{"ms", func(c *ConnTrack) { c.UDPTimeout = "250ms" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, _ := pipeline.Lookup("ConnTrack")
			c := typ.New().(*ConnTrack)
			tc.cfg(c)
			err := c.Validate()
			var ae *pipeline.AttrError
			switch {
			case tc.attr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.attr != "" && !errors.As(err, &ae):
				t.Fatalf("Validate() = %v, want an AttrError on %s", err, tc.attr)
			case tc.attr != "" && ae.Attr != tc.attr:
				t.Fatalf("Validate() blames %q (%v), want %q", ae.Attr, err, tc.attr)
			}
		})
	}
}

func TestCapacityRounding(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	for _, tc := range []struct{ capacity, want int }{
		{1, 8}, {8, 8}, {9, 16}, {17, 32}, {1000, 1024}, {1024, 1024}, {1025, 2048}, {DefaultCapacity, DefaultCapacity},
	} {
		c := newCT(t, st, func(c *ConnTrack) { c.Capacity = tc.capacity })
		if got := int(metrics(c)["xlb_conntrack_capacity"]); got != tc.want || len(c.buckets)*ways != tc.want {
			t.Errorf("capacity %d: table holds %d (%d buckets), want %d", tc.capacity, got, len(c.buckets), tc.want)
		}
	}
}

func TestHitMissLearn(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, nil)
	p := newPacket(flowN(1, 6, 80), mix(1))

	if port := lookup(c, p, t0); port != outMiss {
		t.Fatalf("first lookup: port %d, want miss", port)
	}
	if port := learn(c, p, t0, 0, 2, 1); port != outHit {
		t.Fatalf("learn: port %d, want hit", port)
	}
	if port := lookup(c, p, t0+sec); port != outHit {
		t.Fatalf("second lookup: port %d, want hit", port)
	}
	if p.VIP != 0 || p.Backend != 2 || p.Epoch != 1 {
		t.Errorf("hit wrote VIP %d backend %d epoch %d, want 0 2 1", p.VIP, p.Backend, p.Epoch)
	}

	// Learning again overwrites: MaglevSelect picked another real.
	learn(c, p, t0+2*sec, 0, 3, 1)
	if port := lookup(c, p, t0+3*sec); port != outHit || p.Backend != 3 {
		t.Fatalf("after relearn: port %d backend %d, want hit on 3", port, p.Backend)
	}

	// Another flow in the same bucket with the same tag is a different
	// entry: only the full key decides.
	q := newPacket(flowN(2, 6, 80), mix(1))
	if port := lookup(c, q, t0+3*sec); port != outMiss {
		t.Fatalf("same hash, other flow: port %d, want miss", port)
	}

	want := map[string]uint64{
		"xlb_conntrack_hits_total":      2,
		"xlb_conntrack_misses_total":    2,
		"xlb_conntrack_stale_total":     0,
		"xlb_conntrack_learned_total":   2,
		"xlb_conntrack_evictions_total": 0,
		"xlb_conntrack_entries":         1,
	}
	got := metrics(c)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

func TestIdleTimeouts(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.OtherTimeout = "45s" })
	for i, tc := range []struct {
		name    string
		proto   uint8
		timeout int64
	}{
		{"tcp", 6, 300 * sec},
		{"udp", 17, 30 * sec},
		{"icmp", 1, 10 * sec},
		{"icmpv6", 58, 10 * sec},
		{"gre is other", 47, 45 * sec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPacket(flowN(i, tc.proto, 0), mix(uint64(i)))
			learn(c, p, t0, 0, 1, 1)
			// Just before the timeout: a hit, which refreshes last-seen.
			at := t0 + tc.timeout - 10*int64(time.Millisecond)
			if port := lookup(c, p, at); port != outHit {
				t.Fatalf("lookup %v after learn: port %d, want hit", time.Duration(at-t0), port)
			}
			// Past the timeout since the learn, but not since that hit.
			at += 20 * int64(time.Millisecond)
			if port := lookup(c, p, at); port != outHit {
				t.Fatalf("lookup %v after learn: port %d, want hit (the last hit refreshed it)", time.Duration(at-t0), port)
			}
			// Idle for the timeout plus a bit since the last hit: a miss.
			if port := lookup(c, p, at+tc.timeout+10*int64(time.Millisecond)); port != outMiss {
				t.Fatalf("lookup idle %v: port %d, want miss", time.Duration(tc.timeout), port)
			}
		})
	}
	if got := metrics(c)["xlb_conntrack_expired_total"]; got != 5 {
		t.Errorf("expired = %d, want 5", got)
	}
}

// tcpFrame is an Ethernet + IPv4 + TCP packet from client 198.51.100.7:40000
// to the VIP 192.0.2.10:80, with the TCP flags byte set by setFlags.
var tcpFrame = []byte{
	// Ethernet: dst MAC, src MAC, EtherType IPv4.
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
	0x08, 0x00,
	// IPv4: version 4 IHL 5, DSCP 0, total length 40,
	0x45, 0x00, 0x00, 0x28,
	// identification 0, flags DF, fragment offset 0,
	0x00, 0x00, 0x40, 0x00,
	// TTL 64, protocol 6 (TCP), checksum (not checked here),
	0x40, 0x06, 0x00, 0x00,
	// source 198.51.100.7, destination 192.0.2.10.
	198, 51, 100, 7,
	192, 0, 2, 10,
	// TCP: source port 40000, destination port 80,
	0x9c, 0x40, 0x00, 0x50,
	// sequence number, acknowledgment number,
	0x00, 0x00, 0x00, 0x01,
	0x00, 0x00, 0x00, 0x00,
	// data offset 5, flags (byte 13 of the TCP header; offset 47), window,
	0x50, 0x00, 0xff, 0xff,
	// checksum, urgent pointer.
	0x00, 0x00, 0x00, 0x00,
}

// tcpFlagsAt is the offset of the TCP flags byte in tcpFrame.
const tcpFlagsAt = 14 + 20 + 13

// tcpPacket returns tcpFrame as Parse5Tuple leaves it.
func tcpPacket() *pipeline.Packet {
	p := pipelinetest.Packet(tcpFrame)
	p.L3, p.L4 = 14, 34
	p.Flow = pipeline.Flow{Proto: 6, Family: 4, SrcPort: 40000, DstPort: 80}
	p.Flow.Src = netip.MustParseAddr("198.51.100.7").As16()
	p.Flow.Dst = vipAddr.As16()
	p.Hash = mix(7)
	return p
}

func setFlags(p *pipeline.Packet, f uint8) { p.Data()[tcpFlagsAt] = f }

// step is a lookup with TCP flags at a time after the learn, and whether it
// should hit.
type step struct {
	flags uint8
	at    int64
	hit   bool
}

func TestTCPClosing(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, nil) // tcp 5m, fin 10s
	const ms = int64(time.Millisecond)
	for _, tc := range []struct {
		name       string
		learnFlags uint8
		steps      []step
	}{
		{"fin shortens", tcpSYN, []step{
			{tcpACK, 60 * sec, true},
			{tcpFIN | tcpACK, 120 * sec, true},
			{tcpACK, 129 * sec, true},        // the client's last ACK
			{tcpACK, 139*sec + 10*ms, false}, // 10s idle after it
		}},
		{"rst shortens", tcpSYN, []step{
			{tcpRST, 1 * sec, true},
			{tcpACK, 11*sec + 10*ms, false},
		}},
		{"fin on the first packet", tcpFIN | tcpACK, []step{
			{tcpACK, 10*sec + 10*ms, false},
		}},
		{"syn reopens", tcpSYN, []step{
			{tcpFIN, 1 * sec, true},
			{tcpSYN, 5 * sec, true},
			{tcpACK, 60 * sec, true},
		}},
		{"syn-ack does not reopen", tcpSYN, []step{
			{tcpFIN, 1 * sec, true},
			{tcpSYN | tcpACK, 5 * sec, true},
			{tcpACK, 15*sec + 10*ms, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tcpPacket()
			p.Flow.SrcPort++ // a fresh flow for each case
			p.Hash++
			setFlags(p, tc.learnFlags)
			learn(c, p, t0, 0, 1, 1)
			for i, s := range tc.steps {
				setFlags(p, s.flags)
				port := lookup(c, p, t0+s.at)
				if (port == outHit) != s.hit {
					t.Fatalf("step %d (flags %#x at %v): port %d, want hit=%v", i, s.flags, time.Duration(s.at), port, s.hit)
				}
			}
		})
	}

	// Only a real TCP header is read: a fragment's L4 is fragment payload
	// and an ICMP error's is the ICMP header, whatever byte sits there.
	for _, flag := range []uint8{pipeline.FlowFragment, pipeline.FlowICMPError} {
		p := tcpPacket()
		p.Flow.Flags = flag
		p.Flow.SrcPort, p.Flow.DstPort = 0, 0
		p.Hash = mix(uint64(100 + flag))
		setFlags(p, tcpFIN|tcpRST)
		learn(c, p, t0, 0, 1, 1)
		if port := lookup(c, p, t0+60*sec); port != outHit {
			t.Errorf("flow flags %#x: FIN byte was read as TCP flags", flag)
		}
	}
}

// sameBucket returns hashes for n distinct tags in bucket 0 of c.
func sameBucket(c *ConnTrack, n int) []uint64 {
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = uint64(i+1)<<48 | uint64(len(c.buckets))*uint64(i)
	}
	return hs
}

func TestEvictionLRU(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 64 })
	hs := sameBucket(c, 3*ways)
	pkts := make([]*pipeline.Packet, len(hs))
	for i, h := range hs {
		pkts[i] = newPacket(flowN(i, 6, 80), h)
	}
	// Fill the bucket: flow i learned at second i.
	for i := range ways {
		learn(c, pkts[i], t0+int64(i)*sec, 0, 1, 1)
	}
	// Flow 0 is seen again, so flow 1 is now the least recently seen.
	if lookup(c, pkts[0], t0+10*sec) != outHit {
		t.Fatal("flow 0 missed")
	}
	learn(c, pkts[ways], t0+11*sec, 0, 2, 1)
	for i := 0; i <= ways; i++ {
		want := outHit
		if i == 1 {
			want = outMiss
		}
		if port := lookup(c, pkts[i], t0+12*sec); port != want {
			t.Errorf("flow %d: port %d, want %d", i, port, want)
		}
	}
	if got := metrics(c)["xlb_conntrack_evictions_total"]; got != 1 {
		t.Errorf("evictions = %d, want 1", got)
	}

	// Every flow of the bucket has now been seen twice: established. A
	// full bucket of established flows refuses a new flow: it leaves by
	// hit on MaglevSelect's choice, untracked, and evicts no one.
	for i := ways + 1; i < len(pkts); i++ {
		now := t0 + int64(20+i)*sec
		if port := learn(c, pkts[i], now, 0, 3, 1); port != outHit || pkts[i].Backend != 3 {
			t.Fatalf("learn flow %d: port %d backend %d", i, port, pkts[i].Backend)
		}
		if port := lookup(c, pkts[i], now); port != outMiss {
			t.Fatalf("flow %d after a refused learn: port %d", i, port)
		}
	}
	m := metrics(c)
	if m["xlb_conntrack_entries"] != ways || m["xlb_conntrack_evictions_total"] != 1 || m["xlb_conntrack_untracked_total"] != uint64(len(pkts)-ways-1) {
		t.Errorf("metrics %v, want %d entries, 1 eviction, %d untracked", m, ways, len(pkts)-ways-1)
	}
	for i := 0; i <= ways; i++ {
		if i != 1 && lookup(c, pkts[i], t0+60*sec) != outHit {
			t.Errorf("established flow %d lost", i)
		}
	}
}

// TestFloodKeepsEstablished fills a bucket with established flows but
// one, then sends a flood of new flows (bare SYNs, each seen once and
// then retransmitted) to it: they churn through the one way that is not
// established, and every established flow keeps its entry and real.
func TestFloodKeepsEstablished(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 64 })
	hs := sameBucket(c, 100)
	pkts := make([]*pipeline.Packet, len(hs))
	for i, h := range hs {
		pkts[i] = newPacket(flowN(i, 6, 80), h)
	}
	now := t0
	for i := range ways - 1 {
		learn(c, pkts[i], now, 0, 1, 1)
		if lookup(c, pkts[i], now) != outHit { // an ACK: established
			t.Fatalf("flow %d missed", i)
		}
	}
	for i := ways - 1; i < len(pkts); i++ {
		now += sec / 100
		syn := pkts[i]
		syn.Data()[syn.L4+13] = tcpSYN
		if port := learn(c, syn, now, 0, 2, 1); port != outHit {
			t.Fatalf("learn flood flow %d: port %d", i, port)
		}
		if lookup(c, syn, now) != outHit { // the retransmitted SYN
			t.Fatalf("flood flow %d not learned", i)
		}
	}
	for i := range ways - 1 {
		if lookup(c, pkts[i], now) != outHit || pkts[i].Backend != 1 {
			t.Errorf("established flow %d lost its entry (backend %d)", i, pkts[i].Backend)
		}
	}
	m := metrics(c)
	if flood := uint64(len(pkts) - ways); m["xlb_conntrack_evictions_total"] != flood || m["xlb_conntrack_untracked_total"] != 0 {
		t.Errorf("metrics %v, want %d evictions, none untracked", m, flood)
	}
}

// TestNewFlowRate checks the admission bucket: a burst of new_flow_burst
// flows, then new_flow_rate per second, the others dropped with a reason;
// flows already tracked pass whatever the rate.
func TestNewFlowRate(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.NewFlowRate, c.NewFlowBurst = 100, 10 })
	admitted := 0
	p := func(n int) *pipeline.Packet { return newPacket(flowN(n, 17, 53), mix(uint64(n))) }
	// 50 new flows in one batch at t0: the burst passes.
	start(c, t0)
	for n := range 50 {
		q := p(n)
		q.VIP, q.Backend, q.Epoch = 0, 1, 1
		switch port := c.Push(inLearn, q); port {
		case outHit:
			admitted++
		case pipeline.Drop:
			if q.Reason != reasonNewFlowRate {
				t.Fatalf("flow %d dropped for %v", n, q.Reason)
			}
		default:
			t.Fatalf("flow %d: port %d", n, port)
		}
	}
	end(c)
	if admitted != 10 {
		t.Errorf("%d flows admitted at once, want the burst of 10", admitted)
	}
	// 50 ms later: 5 more tokens. An admitted flow's packets still pass.
	admitted = 0
	for n := 50; n < 100; n++ {
		if learn(c, p(n), t0+sec/20, 0, 1, 1) == outHit {
			admitted++
		}
	}
	if admitted != 5 {
		t.Errorf("%d flows admitted after 50ms, want 5", admitted)
	}
	if lookup(c, p(0), t0+sec/20) != outHit || learn(c, p(0), t0+sec/20, 0, 1, 1) != outHit {
		t.Error("a tracked flow was refused")
	}
}

func TestIdleWayBeforeLiveEviction(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 8 })
	hs := sameBucket(c, ways+1)
	// Seven TCP flows at t0 (5m timeout), then one UDP flow at t0+1s
	// (30s timeout): at t0+60s the UDP way is idle but the most recent.
	var pkts []*pipeline.Packet
	for i := range ways {
		proto, at := uint8(6), t0
		if i == ways-1 {
			proto, at = 17, t0+sec
		}
		pkts = append(pkts, newPacket(flowN(i, proto, 80), hs[i]))
		learn(c, pkts[i], at, 0, 1, 1)
	}
	n := newPacket(flowN(ways, 6, 80), hs[ways])
	learn(c, n, t0+60*sec, 0, 1, 1)
	for i := range ways - 1 {
		if lookup(c, pkts[i], t0+61*sec) != outHit {
			t.Errorf("live TCP flow %d was evicted", i)
		}
	}
	m := metrics(c)
	if m["xlb_conntrack_evictions_total"] != 0 || m["xlb_conntrack_expired_total"] != 1 {
		t.Errorf("evictions %d expired %d, want 0 and 1", m["xlb_conntrack_evictions_total"], m["xlb_conntrack_expired_total"])
	}
}

func TestRealChanges(t *testing.T) {
	with := func(f func(rs []snapshot.Real) []snapshot.Real) *snapshot.Snapshot {
		return mkSnap(2, f(fourReals())...)
	}
	for _, tc := range []struct {
		name  string
		snap  *snapshot.Snapshot
		hit   bool
		stale bool
	}{
		{"unchanged", with(func(rs []snapshot.Real) []snapshot.Real { return rs }), true, false},
		{"draining keeps its flows", with(func(rs []snapshot.Real) []snapshot.Real {
			rs[2].State, rs[2].Weight = snapshot.Draining, 0
			return rs
		}), true, false},
		{"down", with(func(rs []snapshot.Real) []snapshot.Real { rs[2].State = snapshot.Down; return rs }), false, true},
		{"id reused by another real", with(func(rs []snapshot.Real) []snapshot.Real {
			rs[2].Epoch, rs[2].Backend = 2, "newcomer"
			return rs
		}), false, true},
		{"slot unused", with(func(rs []snapshot.Real) []snapshot.Real { rs[2].Epoch = 0; return rs }), false, true},
		{"id beyond the reals", with(func(rs []snapshot.Real) []snapshot.Real { return rs[:2] }), false, true},
		{"real now serves another vip", with(func(rs []snapshot.Real) []snapshot.Real { rs[2].VIP = 1; return rs }), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := snapshot.NewStore(mkSnap(1, fourReals()...))
			c := newCT(t, st, nil)
			p := newPacket(flowN(5, 6, 80), mix(5))
			learn(c, p, t0, 0, 2, 1)
			if lookup(c, p, t0+sec) != outHit {
				t.Fatal("no hit before the change")
			}
			st.Publish(tc.snap)
			port := lookup(c, p, t0+2*sec)
			if (port == outHit) != tc.hit {
				t.Fatalf("port %d, want hit=%v", port, tc.hit)
			}
			if got := metrics(c)["xlb_conntrack_stale_total"]; (got == 1) != tc.stale {
				t.Errorf("stale = %d, want stale=%v", got, tc.stale)
			}
			if tc.hit {
				return
			}
			// The miss goes to MaglevSelect, which picks a usable real; the
			// flow then sticks to it.
			learn(c, p, t0+2*sec, 0, 1, 1)
			if lookup(c, p, t0+3*sec) != outHit || p.Backend != 1 {
				t.Errorf("after relearn: backend %d, want a hit on 1", p.Backend)
			}
		})
	}
}

func TestSweeperRemovesIdle(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 1024 })
	for i := range 500 {
		learn(c, newPacket(flowN(i, 17, 53), mix(uint64(i))), t0, 1, 0, 1)
	}
	if got := metrics(c)["xlb_conntrack_entries"]; got < 450 || got > 500 {
		t.Fatalf("entries = %d after 500 flows, want about 500", got)
	}
	// Empty batches past the UDP timeout: one full sweep of the buckets.
	for range len(c.buckets)/sweepPerTick + 1 {
		start(c, t0+31*sec)
		end(c)
	}
	if m := metrics(c); m["xlb_conntrack_entries"] != 0 || m["xlb_conntrack_expired_total"] == 0 {
		t.Errorf("entries %d expired %d after a sweep, want 0 and > 0", m["xlb_conntrack_entries"], m["xlb_conntrack_expired_total"])
	}
}

// TestSweepFollowsPackets: the sweep's work follows the batch's packets, one
// bucket per sweepEvery lookups, with sweepPerTick buckets when a batch
// starts a new tick or is empty. It used to sweep sweepPerBatch buckets
// whatever the batch's size, which cost about 88 ns per packet with the
// 5-packet batches of issue 13.
func TestSweepFollowsPackets(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 1 << 16 })
	batch := func(now int64, pkts int) uint64 {
		before := c.sweep
		start(c, now)
		for i := range pkts {
			c.Push(inLookup, newPacket(flowN(i, 6, 80), mix(uint64(i))))
		}
		end(c)
		return (c.sweep - before) & c.mask
	}
	batch(t0, 64)
	for _, tc := range []struct {
		name string
		now  int64
		pkts int
		want uint64
	}{
		{"1 packet, same tick", t0, 1, 1},
		{"5 packets, same tick", t0, 5, 1},
		{"9 packets, same tick", t0, 9, 2},
		{"64 packets, same tick", t0, 64, 8},
		{"empty, same tick", t0, 0, sweepPerTick},
		{"1 packet, next tick", t0 + 2<<tickShift, 1, sweepPerTick},
		{"1 packet, that tick again", t0 + 2<<tickShift, 1, 1},
	} {
		if got := batch(tc.now, tc.pkts); got != tc.want {
			t.Errorf("%s: swept %d buckets, want %d", tc.name, got, tc.want)
		}
	}
}

func TestAllocs(t *testing.T) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))
	c := newCT(t, st, func(c *ConnTrack) { c.Capacity = 1024 })
	hit := tcpPacket()
	miss := newPacket(flowN(9, 17, 53), mix(9))
	start(c, t0)
	hit.VIP, hit.Backend, hit.Epoch = 0, 1, 1
	c.Push(inLearn, hit)
	// A table that admits one new flow per second: past the first, learns
	// of new flows are refused.
	limited := newCT(t, st, func(c *ConnTrack) { c.Capacity, c.NewFlowRate = 1024, 1 })
	start(limited, t0)
	news := make([]*pipeline.Packet, 200)
	for n := range news {
		news[n] = newPacket(flowN(n, 17, 53), mix(uint64(n)))
	}
	var n int
	for name, f := range map[string]func(){
		"lookup hit":  func() { c.Push(inLookup, hit) },
		"lookup miss": func() { c.Push(inLookup, miss) },
		"learn":       func() { c.Push(inLearn, hit) },
		"batch":       func() { end(c); start(c, t0) },
		"learn new, over the rate": func() {
			n++
			limited.Push(inLearn, news[n])
		},
	} {
		if a := testing.AllocsPerRun(100, f); a != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", name, a)
		}
	}
}
