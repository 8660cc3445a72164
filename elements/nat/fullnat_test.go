package nat

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/control/snapshot"
	_ "github.com/xlbproject/xlb/elements/conntrack"
	"github.com/xlbproject/xlb/elements/internal/csum/csumtest"
	"github.com/xlbproject/xlb/pipeline"
)

var (
	pool4 = netip.MustParseAddr("10.90.3.1")
	pool6 = netip.MustParseAddr("2001:db8:90::1")
)

// fullHarness is Parse5Tuple, a real ConnTrack and FullNAT over the test
// snapshot, with the pool pool4 and pool6.
type fullHarness struct {
	parse, ct pipeline.Pusher
	ctb       pipeline.BatchStarter
	cte       pipeline.BatchEnder
	fn        *FullNAT
	view      *snapshot.View
	snap      *snapshot.Snapshot
	pkt       pipeline.Packet
}

func newFullHarness(t testing.TB, logger *slog.Logger) *fullHarness {
	t.Helper()
	st := snapshot.NewStore(testSnapshot())
	ctx := pipeline.NewContext("fnat", 0, 1, snapshot.ContextValues(st))
	if logger != nil {
		ctx.Logger = logger
	}
	h := &fullHarness{snap: st.Load()}
	prov := func(name string) pipeline.Element {
		typ, _ := pipeline.Lookup(name)
		e := typ.New()
		if err := e.(pipeline.Provisioner).Provision(ctx); err != nil {
			t.Fatal(err)
		}
		return e
	}
	h.parse = prov("Parse5Tuple").(pipeline.Pusher)
	ctx.Name = "ct"
	ct := prov("ConnTrack")
	h.ct, h.ctb, h.cte = ct.(pipeline.Pusher), ct.(pipeline.BatchStarter), ct.(pipeline.BatchEnder)
	ctx.Name = "fnat"
	h.fn = &FullNAT{ConnTrack: "ct", Ports: map[string]int{"be2": 8080, "be6": 8443}, SourcePool: []string{pool4.String(), pool6.String()}}
	if err := h.fn.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	h.view = h.fn.view
	return h
}

// push runs frame through parse, ct (a miss learns real id, as
// MaglevSelect would choose it) and FullNAT at now; port is where it
// left, -1 for a drop before FullNAT.
func (h *fullHarness) push(frame []byte, id uint32, now int64) (*pipeline.Packet, int) {
	p := &h.pkt
	p.SetFrame(frame, 0, len(frame))
	h.view.StartBatch(now)
	defer h.view.EndBatch()
	h.parse.(pipeline.BatchStarter).StartBatch(now)
	h.ctb.StartBatch(now)
	defer h.cte.EndBatch()
	if !throughCT(h.parse, h.ct, p, h.snap, id) {
		return p, -1
	}
	h.fn.StartBatch(now)
	defer h.fn.EndBatch()
	return p, h.fn.Push(0, p)
}

// throughCT runs p through parse and ct as the engine would, a miss
// learning real id of s (as MaglevSelect would choose it; what learn
// returns is not looked at: the translator decides what an untracked flow
// becomes); false when the lookup or parse dropped p.
func throughCT(parse, ct pipeline.Pusher, p *pipeline.Packet, s *snapshot.Snapshot, id uint32) bool {
	if parse.Push(0, p) != 0 {
		return false
	}
	switch ct.Push(0, p) {
	case 0:
		return true
	case 1:
		p.Backend, p.Epoch = id, epoch
		p.VIP = s.Real(id, epoch).VIP
		ct.Push(1, p)
		return true
	}
	return false
}

// endpoints are a frame's addresses and ports.
func endpoints(t *testing.T, d []byte) (src, dst string) {
	t.Helper()
	if err := csumtest.Check(d); err != nil {
		t.Error(err)
	}
	pkt := gopacket.NewPacket(d, layers.LayerTypeEthernet, gopacket.Default)
	s, ds := pkt.NetworkLayer().NetworkFlow().Endpoints()
	sp, dp := pkt.TransportLayer().TransportFlow().Endpoints()
	return net.JoinHostPort(s.String(), sp.String()), net.JoinHostPort(ds.String(), dp.String())
}

// TestFullNATRoundTrip: over IPv4 and IPv6, a client's packets reach the
// backend's address and mapped port from one source of the pool and
// port, the same for every packet of the flow and another for another
// flow; the backend's reply to that source reaches the client from
// VIP:port; a reply to a source port no flow holds is dropped as
// conntrack.reply_unknown, never sent. Checksums are checked from scratch.
func TestFullNATRoundTrip(t *testing.T) {
	h := newFullHarness(t, nil)
	for _, tc := range []struct {
		family int
		vip    netip.Addr
		id     uint32
		real   string
		pool   netip.Addr
	}{
		{4, vip4, realMapped, "10.0.0.22:8080", pool4},
		{6, vip6, realV6, "[2001:db8:1::23]:8443", pool6},
	} {
		p, port := h.push(tcpTo(tc.family, tc.vip.AsSlice(), 40000, 80), tc.id, t0)
		if port != portOut {
			t.Fatalf("IPv%d: port %d reason %v", tc.family, port, p.Reason)
		}
		src, dst := endpoints(t, p.Data())
		sa, sp, _ := net.SplitHostPort(src)
		if dst != tc.real || sa != tc.pool.String() {
			t.Fatalf("IPv%d: %s > %s, want from %s to %s", tc.family, src, dst, tc.pool, tc.real)
		}
		p, _ = h.push(tcpTo(tc.family, tc.vip.AsSlice(), 40000, 80), tc.id, t0+1)
		if again, _ := endpoints(t, p.Data()); again != src {
			t.Errorf("IPv%d: the flow's second packet from %s, its first from %s", tc.family, again, src)
		}
		p, _ = h.push(tcpTo(tc.family, tc.vip.AsSlice(), 40001, 80), tc.id, t0+1)
		if other, _ := endpoints(t, p.Data()); other == src {
			t.Errorf("IPv%d: two flows from one source %s", tc.family, src)
		}
		ra, rp, _ := net.SplitHostPort(tc.real)
		rport := uint16(mustAtoi(rp))
		reply := frame(net.ParseIP(ra), tc.pool.AsSlice(), &layers.TCP{SrcPort: layers.TCPPort(rport), DstPort: layers.TCPPort(mustAtoi(sp)), SYN: true, ACK: true, Window: 9})
		p, port = h.push(reply, 0, t0+2)
		if port != portOut {
			t.Fatalf("IPv%d reply: port %d reason %v", tc.family, port, p.Reason)
		}
		rs, rd := endpoints(t, p.Data())
		if want := net.JoinHostPort(tc.vip.String(), "80"); rs != want || rd != net.JoinHostPort(client[tc.family].String(), "40000") {
			t.Errorf("IPv%d reply: %s > %s, want %s > client:40000", tc.family, rs, rd, want)
		}
		forged := frame(net.ParseIP(ra), tc.pool.AsSlice(), &layers.TCP{SrcPort: layers.TCPPort(rport), DstPort: layers.TCPPort(mustAtoi(sp) ^ 1), ACK: true, Window: 9})
		if p, port = h.push(forged, 0, t0+2); port != -1 || p.Reason.String() != "conntrack.reply_unknown" {
			t.Errorf("IPv%d forged reply: port %d reason %v", tc.family, port, p.Reason)
		}
	}
}

// t0 is a batch clock for the tests, in ns.
const t0 = int64(1e12)

func mustAtoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// TestFullNATZeroAllocs: a flow's packet and its reply allocate nothing.
func TestFullNATZeroAllocs(t *testing.T) {
	h := newFullHarness(t, nil)
	fwd := tcpTo(4, vip4.AsSlice(), 40000, 80)
	buf := make([]byte, len(fwd))
	copy(buf, fwd)
	p, _ := h.push(buf, realMapped, t0)
	_, sp, _ := net.SplitHostPort(func() string { s, _ := endpoints(t, p.Data()); return s }())
	rep := frame(net.IP{10, 0, 0, 22}, pool4.AsSlice(), &layers.TCP{SrcPort: 8080, DstPort: layers.TCPPort(mustAtoi(sp)), ACK: true})
	if n := testing.AllocsPerRun(1000, func() {
		copy(buf, fwd)
		h.push(buf[:len(fwd)], realMapped, t0)
		copy(buf, rep)
		if _, port := h.push(buf[:len(rep)], 0, t0); port != portOut {
			t.Fatal("reply not translated")
		}
	}); n != 0 {
		t.Errorf("%v allocations per packet pair", n)
	}
}

// TestFullNATExhausted: when no port of the probes is free, the packet
// leaves by bad as fullnat.ports_exhausted, unchanged, and the drops are
// logged at most every logEvery.
func TestFullNATExhausted(t *testing.T) {
	var logs bytes.Buffer
	st := snapshot.NewStore(testSnapshot())
	ctx := pipeline.NewContext("fnat", 0, 1, snapshot.ContextValues(st))
	ctx.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	tr := &tracker{full: true}
	ctx.Local(pipeline.ReplyTrackerKey{Name: "ct"}, func() any { return &pipeline.ReplyTrackerSlot{Tracker: tr} })
	typ, _ := pipeline.Lookup("Parse5Tuple")
	parse := typ.New()
	if err := parse.(pipeline.Provisioner).Provision(ctx); err != nil {
		t.Fatal(err)
	}
	e := &FullNAT{ConnTrack: "ct", SourcePool: []string{pool4.String()}}
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	push := func(now int64) {
		in := tcpTo(4, vip4.AsSlice(), 40000, 80)
		var p pipeline.Packet
		p.SetFrame(append([]byte(nil), in...), 0, len(in))
		e.view.StartBatch(now)
		parse.(pipeline.Pusher).Push(0, &p)
		p.VIP, p.Backend, p.Epoch = 0, realKeep, epoch
		e.StartBatch(now)
		port := e.Push(0, &p)
		e.EndBatch()
		e.view.EndBatch()
		if port != portBad || p.Reason.String() != "fullnat.ports_exhausted" || !bytes.Equal(p.Data(), in[:p.Len()]) {
			t.Fatalf("port %d reason %v, frame % x from % x", port, p.Reason, p.Data(), in)
		}
	}
	push(t0)
	push(t0 + 1)
	if tr.probes != maxProbes*2 {
		t.Errorf("%d probes for 2 packets, want %d", tr.probes, 2*maxProbes)
	}
	if n := strings.Count(logs.String(), "fullnat.ports_exhausted"); n != 1 || !strings.Contains(logs.String(), "dropped=1") {
		t.Errorf("%d lines:\n%s", n, logs.String())
	}
	push(t0 + logEvery)
	if n := strings.Count(logs.String(), "fullnat.ports_exhausted"); n != 2 || !strings.Contains(logs.String(), "dropped=2") {
		t.Errorf("after logEvery, %d lines:\n%s", n, logs.String())
	}
}

// TestFullNATProbesPastRuns: a run of 1,000 ports taken from the first
// candidate on (as ports allocated one after another leave them) costs a
// new flow a probe or two, not its 64 look-ups: the candidates are drawn
// independently, not counted on.
func TestFullNATProbesPastRuns(t *testing.T) {
	ctx := pipeline.NewContext("fnat", 0, 1, snapshot.ContextValues(snapshot.NewStore(testSnapshot())))
	tr := &tracker{run: 1000}
	ctx.Local(pipeline.ReplyTrackerKey{Name: "ct"}, func() any { return &pipeline.ReplyTrackerSlot{Tracker: tr} })
	e := &FullNAT{ConnTrack: "ct", SourcePool: []string{pool4.String()}}
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	var p pipeline.Packet
	p.Hash = 0x1234_5678_9abc_def0
	e.view.StartBatch(0)
	defer e.view.EndBatch()
	e.StartBatch(0)
	defer e.EndBatch()
	r := e.snap.Real(realKeep, epoch)
	if _, _, res := e.allocate(&p, r, 80, e.pool4); res != pipeline.SourceTracked || tr.probes > 3 {
		t.Errorf("allocation %v after %d probes, want tracked within 3", res, tr.probes)
	}
}

// TestFullNATValidate: the pool is source_pool, required (source4 and
// source6 are not it); a bad address or a repeated one is refused at the
// attribute.
func TestFullNATValidate(t *testing.T) {
	for _, tc := range []struct {
		e    *FullNAT
		want string
	}{
		{&FullNAT{ConnTrack: "ct", Source4: "10.0.0.1"}, "must name the node's source addresses"},
		{&FullNAT{ConnTrack: "ct", SourcePool: []string{"10.0.0.300"}}, "must hold IP addresses"},
		{&FullNAT{ConnTrack: "ct", SourcePool: []string{"10.0.0.1", "10.0.0.1"}}, "twice"},
		{&FullNAT{ConnTrack: "ct", SourcePool: []string{"10.0.0.1", "2001:db8::1"}}, ""},
	} {
		err := tc.e.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v %s %s: %v, want %q", tc.e.SourcePool, tc.e.Source4, tc.e.Source6, err, tc.want)
		}
	}
	e := FullNAT{ConnTrack: "ct", SourcePool: []string{"10.0.0.1", "2001:db8::1"}}
	if e.Validate(); len(e.pool4) != 1 || len(e.pool6) != 1 {
		t.Errorf("pools %v %v", e.pool4, e.pool6)
	}
}

// TestFullNATSteersPool: on an interface, FullNAT steers its reals'
// endpoints and its pool, and withdraws both in Cleanup.
func TestFullNATSteersPool(t *testing.T) {
	st := &steering{eps: map[string][]pipeline.ServiceEndpoint{}, pools: map[string][]netip.Addr{}}
	ctx := pipeline.NewContext("fnat", 0, 1, snapshot.ContextValues(snapshot.NewStore(testSnapshot())))
	ctx.Local(pipeline.ReplyTrackerKey{Name: "ct"}, func() any { return &pipeline.ReplyTrackerSlot{Tracker: &tracker{}} })
	ctx.Shared(pipeline.ReplySteerKey{Interface: "eth0"}, func() any { return st })
	e := &FullNAT{ConnTrack: "ct", Interface: "eth0", SourcePool: []string{pool4.String(), pool6.String()}}
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.pools["fnat"]; len(got) != 2 || got[0] != pool4 || got[1] != pool6 {
		t.Errorf("pool steered %v", got)
	}
	if len(st.eps["fnat"]) == 0 {
		t.Error("no endpoints steered")
	}
	e.Cleanup()
	if len(st.pools["fnat"]) != 0 || len(st.eps["fnat"]) != 0 {
		t.Errorf("after Cleanup, steered %v and %v", st.eps["fnat"], st.pools["fnat"])
	}
}

// FuzzPushFullNAT: whatever frame Parse5Tuple passes and real a new flow
// learns, FullNAT over a real ConnTrack either leaves it unchanged on bad
// with a reason, or sends it to the real's address and (mapped) port from
// an address of the pool and a port of the range, nothing else changed
// but checksums, right when they were (computed from scratch); an ICMP
// error about a flow with a source reaches its backend from the source,
// quoting the flow's reply. The backend's answer (the frame sent, its
// addresses and ports swapped, which keeps its checksums) then reaches
// the client from VIP:port, and the backend's Port Unreachable about the
// frame sent reaches the client quoting the client's packet as it was.
func FuzzPushFullNAT(f *testing.F) {
	v4, v6 := vip4.AsSlice(), vip6.AsSlice()
	f.Add(tcpTo(4, v4, 40000, 80), uint32(realKeep))
	f.Add(tcpTo(4, v4, 40000, 80), uint32(realMapped))
	f.Add(tcpTo(6, v6, 40000, 80), uint32(realV6))
	f.Add(frame(client[4], v4, &layers.UDP{SrcPort: 5353, DstPort: 80}, gopacket.Payload("q")), uint32(realMapped))
	f.Add(frame(client[4], v4, &layers.UDP{SrcPort: 5353, DstPort: 80}), uint32(realKeep)) // no checksum
	f.Add(frame(client[6], v6, &layers.UDP{SrcPort: 5353, DstPort: 80}, gopacket.Payload("q")), uint32(realV6))
	f.Add(frame(client[4], v4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}), uint32(realKeep)) // echo: fullnat.proto
	f.Add(tcpTo(4, v4, 40000, 80), uint32(realV6))                                                                            // other family
	toVIP4, _, toVIP6, _ := icmpErrors()
	f.Add(toVIP4, uint32(realMapped)) // about the flow of the first seed but one: to its backend
	f.Add(toVIP6, uint32(realV6))     // about the third seed's flow
	h := newFullHarness(f, nil)
	now := t0
	f.Fuzz(func(t *testing.T, data []byte, id uint32) {
		if h.snap.Real(id, epoch) == nil {
			id = realKeep
		}
		now += 1e6
		buf := append([]byte(nil), data...)
		p, port := h.push(buf, id, now)
		if port < 0 {
			return
		}
		d := p.Data()
		in := data[:len(d)]
		if port == portBad {
			if p.Reason == pipeline.ReasonNone || !bytes.Equal(d, in) {
				t.Fatalf("dropped with reason %v, frame % x from % x", p.Reason, d, in)
			}
			return
		}
		if port != portOut {
			t.Fatalf("port %d", port)
		}
		good := csumtest.Check(in) == nil
		if err := csumtest.Check(d); good && err != nil {
			t.Fatalf("%v: % x from % x", err, d, in)
		}
		fl := p.Flow
		if fl.Flags&pipeline.FlowReply != 0 {
			return // a frame that happened to be a reply: the round trip checks them
		}
		v4 := fl.Family == 4
		l3, l4 := int(p.L3), int(p.L4)
		later := fl.Flags&pipeline.FlowLaterFragment != 0
		so, do := addrOffsets(v4)
		n := map[bool]int{true: 4, false: 16}[v4]
		r := h.snap.Real(p.Backend, p.Epoch)
		pool := map[bool]netip.Addr{true: pool4, false: pool6}[v4]
		addr := func(off int) netip.Addr { a, _ := netip.AddrFromSlice(d[l3+off : l3+off+n]); return a }
		if addr(do) != r.Addr || addr(so) != pool {
			t.Fatalf("%v > %v, want %v > %v", addr(so), addr(do), pool, r.Addr)
		}
		if fl.Flags&pipeline.FlowICMPError != 0 {
			// An error about a flow with a source, to its backend: the
			// quote (when there are ports, and it is not a later
			// fragment's) is the reply the backend sent, to that source.
			sport, _, _ := h.fn.ct.Source(p)
			q := d[l4+8:]
			qhl := map[bool]int{true: int(q[0]&0x0f) << 2, false: 40}[v4]
			if later || fl.Flags&pipeline.FlowFragment != 0 || len(q) < qhl+4 {
				return
			}
			qa := func(off int) netip.Addr { a, _ := netip.AddrFromSlice(q[off : off+n]); return a }
			if qa(so) != r.Addr || qa(do) != pool || be16(q[qhl+2:]) != sport {
				t.Fatalf("quotes %v > %v:%d, want %v > %v:%d", qa(so), qa(do), be16(q[qhl+2:]), r.Addr, pool, sport)
			}
			return
		}
		changed := map[int]bool{}
		mark := func(off, n int) {
			for i := off; i < off+n; i++ {
				changed[i] = true
			}
		}
		mark(l3+so, n)
		mark(l3+do, n)
		if v4 {
			mark(l3+10, 2)
		}
		if !later {
			mark(l4, 4)
			mark(l4+map[uint8]int{6: 16, 17: 6}[fl.Proto], 2)
			want := fl.DstPort
			if bp := h.fn.Ports[r.Backend]; bp != 0 {
				want = uint16(bp)
			}
			if got := be16(d[l4+2:]); got != want {
				t.Fatalf("sent to port %d, want %d", got, want)
			}
			if got := be16(d[l4:]); got < firstSourcePort {
				t.Fatalf("sent from port %d", got)
			}
		}
		for i := range d {
			if !changed[i] && d[i] != in[i] {
				t.Fatalf("byte %d changed: % x from % x", i, d, in)
			}
		}
		frag := later || v4 && be16(d[l3+6:])&0x3fff != 0 || !v4 && d[l3+6] != fl.Proto
		if frag || !good {
			return
		}
		// The backend's answer: addresses and ports swapped.
		rep := append([]byte(nil), d...)
		copy(rep[l3+so:], d[l3+do:l3+do+n])
		copy(rep[l3+do:], d[l3+so:l3+so+n])
		copy(rep[l4:], d[l4+2:l4+4])
		copy(rep[l4+2:], d[l4:l4+2])
		q, port := h.push(rep, 0, now)
		if port != portOut {
			t.Fatalf("reply: port %d reason %v", port, q.Reason)
		}
		rd := q.Data()
		if err := csumtest.Check(rd); err != nil {
			t.Fatalf("reply: %v", err)
		}
		vip := h.snap.VIPs[r.VIP].Addr
		ca, _ := netip.AddrFromSlice(fl.Src[16-n:])
		if a, _ := netip.AddrFromSlice(rd[l3+so : l3+so+n]); a != vip || be16(rd[l4:]) != fl.DstPort {
			t.Fatalf("reply from %v:%d, want %v:%d", a, be16(rd[l4:]), vip, fl.DstPort)
		}
		if a, _ := netip.AddrFromSlice(rd[l3+do : l3+do+n]); a != ca || be16(rd[l4+2:]) != fl.SrcPort {
			t.Fatalf("reply to %v:%d, want %v:%d", a, be16(rd[l4+2:]), ca, fl.SrcPort)
		}
		// The backend's Port Unreachable about the frame sent reaches the
		// client quoting, byte for byte, the packet the client sent.
		q, port = h.push(errorAbout(r.Addr.AsSlice(), d[l3:]), 0, now)
		if port != portOut {
			t.Fatalf("backend's error: port %d reason %v", port, q.Reason)
		}
		if err := csumtest.Check(q.Data()); err != nil {
			t.Fatalf("backend's error: %v", err)
		}
		qd := q.Data()[q.L4+8:]
		sent := append([]byte(nil), in[l3:l3+len(qd)]...)
		// A transport checksum of 0xffff and one of 0 are the same one's
		// complement sum, which the incremental updates there and back
		// (RFC 1624) may give in its other form (a client's TCP 0xffff
		// comes back 0; an IPv6 UDP 0, which RFC 8200 forbids, 0xffff).
		// Over IPv4 a UDP 0 means none, and is kept.
		c := l4 - l3 + map[uint8]int{protoTCP: 16, protoUDP: 6}[fl.Proto]
		if len(qd) >= c+2 && !(v4 && fl.Proto == protoUDP) && be16(sent[c:])^be16(qd[c:]) == 0xffff && be16(qd[c:])%0xffff == 0 {
			sent[c], sent[c+1] = qd[c], qd[c+1]
		}
		if !bytes.Equal(qd, sent) {
			t.Fatalf("backend's error quotes\n% x\nnot the client's\n% x", qd, sent)
		}
	})
}

// TestFullNATUntracked: a new flow whose ConnTrack bucket is full of
// established flows, which ConnTrack forwards untracked, is dropped by
// FullNAT as fullnat.untracked, not sent: no entry would hold its
// source, so its replies would be unknown. The bucket is filled with 8
// flows of the same bucket, each established by a second packet.
func TestFullNATUntracked(t *testing.T) {
	h := newFullHarness(t, nil)
	// ConnTrack's default table: 1M flows in buckets of 8.
	const mask = 1<<20/8 - 1
	flow := func(a byte, port uint16) pipeline.Flow {
		return pipeline.Flow{Src: netip.AddrFrom4([4]byte{203, 0, 113, a}).As16(), Dst: vip4.As16(), SrcPort: port, DstPort: 80, Proto: protoTCP, Family: 4}
	}
	target := flow(7, 40000)
	p, _ := h.push(tcpTo(4, vip4.AsSlice(), 40000, 80), realMapped, t0)
	if want := h.fn.key.Hash(&target); p.Hash != want {
		t.Fatalf("Parse5Tuple's hash %#x, the test's %#x", p.Hash, want)
	}
	bucket := p.Hash & mask
	// A new flow, of another client, for the bucket: the target's first
	// packet took a way already, which a client's flow that sent one
	// packet only gives up to an established one.
	filled := 0
	for a := byte(1); filled < 8 && a < 255; a++ {
		for port := uint16(1024); filled < 8 && port < 65535; port++ {
			f := flow(a, port)
			if h.fn.key.Hash(&f)&mask != bucket || a == 7 {
				continue
			}
			syn := frame(net.IP(f.Src[12:]), vip4.AsSlice(), &layers.TCP{SrcPort: layers.TCPPort(port), DstPort: 80, SYN: true, Window: 9})
			ack := frame(net.IP(f.Src[12:]), vip4.AsSlice(), &layers.TCP{SrcPort: layers.TCPPort(port), DstPort: 80, ACK: true, Window: 9})
			for _, fr := range [][]byte{syn, ack} {
				if q, port := h.push(fr, realKeep, t0+1); port != portOut {
					t.Fatalf("filler %d: port %d reason %v", filled, port, q.Reason)
				}
			}
			filled++
		}
	}
	if filled < 8 {
		t.Fatalf("found %d flows of the bucket", filled)
	}
	// The target's entry was evicted (not established); its next SYN
	// finds the bucket full of established flows.
	p, port := h.push(tcpTo(4, vip4.AsSlice(), 40000, 80), realMapped, t0+2)
	if port != portBad || p.Reason.String() != "fullnat.untracked" {
		t.Errorf("a flow ConnTrack could not store: port %d reason %v, want a fullnat.untracked drop", port, p.Reason)
	}
}
