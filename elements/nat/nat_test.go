package nat

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/internal/csum"
	"github.com/xlbproject/xlb/elements/internal/csum/csumtest"
	_ "github.com/xlbproject/xlb/elements/parse"
	"github.com/xlbproject/xlb/pipeline"
)

// Reals of the test snapshot: be1 keeps the VIP's port, be2 serves on
// 8080 (ports), be6 is IPv6 and serves on 8443.
const (
	realKeep   = 1 // 10.0.0.21
	realMapped = 2 // 10.0.0.22:8080
	realV6     = 3 // 2001:db8:1::23:8443
	epoch      = 5
)

var (
	vip4   = netip.MustParseAddr("192.0.2.10")
	vip6   = netip.MustParseAddr("2001:db8::10")
	client = map[int]net.IP{4: net.ParseIP("203.0.113.7").To4(), 6: net.ParseIP("2001:db8:c::7")}
)

func testReal(id uint32, vip uint32, name, addr string) snapshot.Real {
	a := netip.MustParseAddr(addr)
	fam := uint8(4)
	if a.Is6() {
		fam = 6
	}
	return snapshot.Real{ID: id, Epoch: epoch, VIP: vip, Backend: name, Addr: a, Addr16: a.As16(), Family: fam, Weight: 1}
}

func testSnapshot() *snapshot.Snapshot {
	return snapshot.New(1, 42, []snapshot.VIP{
		{Name: "web4", Addr: vip4, Proto: 6, Ports: []uint16{80}, Reals: []uint32{realKeep, realMapped}},
		{Name: "web6", Addr: vip6, Proto: 0, Ports: []uint16{80}, Reals: []uint32{realV6}},
	}, []snapshot.Real{{},
		testReal(realKeep, 0, "be1", "10.0.0.21"),
		testReal(realMapped, 0, "be2", "10.0.0.22"),
		testReal(realV6, 1, "be6", "2001:db8:1::23"),
	})
}

// tracker stands for ConnTrack: it records the last reply tracked.
type tracker struct {
	n            int
	reply        pipeline.Flow
	hash         uint64
	expect       bool
	prefetched   int
	lastPrefetch uint64
	// full: TrackSource finds every port taken; probes counts its calls.
	full   bool
	probes int
	// run: TrackSource finds taken the ports less than run above the
	// first it was asked for (a run of allocated ports); first is it.
	run, first int
}

func (t *tracker) TrackReply(_ *pipeline.Packet, reply *pipeline.Flow, hash uint64) {
	t.n++
	t.reply, t.hash = *reply, hash
}

func (t *tracker) ExpectReplies() { t.expect = true }

// TrackSource records as TrackReply, unless full. FullNAT's other tests
// run over a real ConnTrack.
func (t *tracker) TrackSource(p *pipeline.Packet, reply *pipeline.Flow, hash uint64, _ uint8) pipeline.SourceResult {
	t.probes++
	if t.probes == 1 {
		t.first = int(reply.DstPort)
	}
	if d := int(reply.DstPort) - t.first; t.full || d >= 0 && d < t.run {
		return pipeline.SourceTaken
	}
	t.TrackReply(p, reply, hash)
	return pipeline.SourceTracked
}

func (t *tracker) Source(*pipeline.Packet) (uint16, uint8, bool) { return 0, 0, false }

func (t *tracker) PrefetchReplies(hs []uint64) {
	t.prefetched += len(hs)
	if len(hs) > 0 {
		t.lastPrefetch = hs[len(hs)-1]
	}
}

// harness is a Parse5Tuple and a NAT provisioned over the test snapshot.
type harness struct {
	parse pipeline.Pusher
	nat   *NAT
	ct    *tracker
	view  *snapshot.View
	snap  *snapshot.Snapshot
	pkt   pipeline.Packet
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	st := snapshot.NewStore(testSnapshot())
	ctx := pipeline.NewContext("nat", 0, 1, snapshot.ContextValues(st))
	h := &harness{ct: &tracker{}, snap: st.Load()}
	ctx.Local(pipeline.ReplyTrackerKey{Name: "ct"}, func() any { return &pipeline.ReplyTrackerSlot{Tracker: h.ct} })
	typ, _ := pipeline.Lookup("Parse5Tuple")
	pe := typ.New()
	if err := pe.(pipeline.Provisioner).Provision(ctx); err != nil {
		t.Fatal(err)
	}
	h.parse = pe.(pipeline.Pusher)
	h.nat = &NAT{ConnTrack: "ct", Ports: map[string]int{"be2": 8080, "be6": 8443}}
	if err := h.nat.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if !h.ct.expect {
		t.Fatal("NAT did not tell ConnTrack to expect replies")
	}
	h.view = h.nat.view
	return h
}

// push parses frame and, when it parses, hands it to NAT as ConnTrack
// would: naming real id, as a reply of VIP port vport when reply; a reply
// of VIP port 0 as ConnTrack's miss does, by NAT's stateless translation
// (ok false when it has none: ConnTrack drops it).
func (h *harness) push(frame []byte, id uint32, reply bool, vport uint16) (*pipeline.Packet, int, bool) {
	p := &h.pkt
	p.SetFrame(frame, 0, len(frame))
	h.view.StartBatch(0)
	defer h.view.EndBatch()
	h.parse.(pipeline.BatchStarter).StartBatch(0)
	if h.parse.Push(0, p) != 0 {
		return p, 0, false
	}
	h.nat.StartBatch(0)
	p.Backend, p.Epoch = id, epoch
	if r := h.snap.Real(id, epoch); r != nil {
		p.VIP = r.VIP
	}
	if reply {
		p.Flow.Flags |= pipeline.FlowReply
		p.VIPPort = vport
		if vport == 0 && !h.nat.ReplyOf(p) {
			h.nat.EndBatch()
			return p, 0, false
		}
	}
	port := h.nat.Push(0, p)
	h.nat.EndBatch()
	return p, port, true
}

// frame serializes an Ethernet frame with checksums computed.
func frame(src, dst net.IP, l4 ...gopacket.SerializableLayer) []byte {
	var ip gopacket.NetworkLayer
	var proto layers.IPProtocol
	switch l := l4[0].(type) {
	case *layers.TCP:
		proto = layers.IPProtocolTCP
	case *layers.UDP:
		proto = layers.IPProtocolUDP
	case *layers.ICMPv4:
		proto = layers.IPProtocolICMPv4
	case *layers.ICMPv6:
		proto = layers.IPProtocolICMPv6
	default:
		_ = l
	}
	et := layers.EthernetTypeIPv4
	if src.To4() == nil {
		et = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src, DstIP: dst}
	} else {
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst, Flags: layers.IPv4DontFragment}
	}
	for _, l := range l4 {
		if c, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			_ = c.SetNetworkLayerForChecksum(ip)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	ls := append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et},
		ip.(gopacket.SerializableLayer)}, l4...)
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func tcpTo(family int, dst net.IP, sport, dport uint16) []byte {
	return frame(client[family], dst, &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 1024})
}

// TestZeroAllocs: translating either way allocates nothing.
func TestZeroAllocs(t *testing.T) {
	h := newHarness(t)
	fwd := tcpTo(4, vip4.AsSlice(), 40000, 80)
	rep := frame(net.IP{10, 0, 0, 22}, client[4], &layers.TCP{SrcPort: 8080, DstPort: 40000, SYN: true, ACK: true})
	buf := make([]byte, len(fwd))
	if n := testing.AllocsPerRun(1000, func() {
		copy(buf, fwd)
		h.push(buf[:len(fwd)], realMapped, false, 0)
		copy(buf, rep)
		h.push(buf[:len(rep)], realMapped, true, 80)
	}); n != 0 {
		t.Errorf("%v allocations per packet pair", n)
	}
}

// TestBad: a real gone or of the other family leaves by bad with its
// reason and unchanged.
func TestBad(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name   string
		frame  []byte
		id     uint32
		reason string
	}{
		{"no real", tcpTo(4, vip4.AsSlice(), 40000, 80), 9, "nat.nobackend"},
		{"other family", tcpTo(4, vip4.AsSlice(), 40000, 80), realV6, "nat.family"},
	} {
		in := append([]byte(nil), tc.frame...)
		p, port, ok := h.push(tc.frame, tc.id, false, 0)
		if !ok || port != portBad || p.Reason.String() != tc.reason || string(in[:p.Len()]) != string(p.Data()) {
			t.Errorf("%s: port %d, reason %v, frame % x from % x", tc.name, port, p.Reason, p.Data(), in)
		}
	}
}

// TestNeedsConnTrack: without a ConnTrack of its name provisioned first,
// Provision says what to declare; Validate refuses a port out of range.
// (Workers: TestStatelessWorkersRefused.)
func TestNeedsConnTrack(t *testing.T) {
	ctx := pipeline.NewContext("nat", 0, 1, snapshot.ContextValues(snapshot.NewStore(testSnapshot())))
	err := (&NAT{ConnTrack: "ct"}).Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "declare the ConnTrack first") {
		t.Errorf("Provision = %v", err)
	}
	if err := (&NAT{ConnTrack: "ct", Ports: map[string]int{"be1": 70000}}).Validate(); err == nil || !strings.Contains(err.Error(), "from 1 to 65535") {
		t.Errorf("Validate with port 70000 = %v", err)
	}
}

// steering records what NAT steers.
type steering struct {
	eps   map[string][]pipeline.ServiceEndpoint
	pools map[string][]netip.Addr
}

func (s *steering) SteerPool(owner string, addrs []netip.Addr) {
	s.pools[owner] = append([]netip.Addr(nil), addrs...)
}

func (s *steering) SteerReplies(owner string, eps []pipeline.ServiceEndpoint) {
	s.eps[owner] = append([]pipeline.ServiceEndpoint(nil), eps...)
}

// TestSteers: NAT on an interface steers each real's endpoints (its
// mapped port, or its VIP's ports; TCP and UDP for a VIP of any protocol)
// and withdraws them in Cleanup.
func TestSteers(t *testing.T) {
	st := &steering{eps: map[string][]pipeline.ServiceEndpoint{}}
	ctx := pipeline.NewContext("nat", 0, 1, snapshot.ContextValues(snapshot.NewStore(testSnapshot())))
	ctx.Local(pipeline.ReplyTrackerKey{Name: "ct"}, func() any { return &pipeline.ReplyTrackerSlot{Tracker: &tracker{}} })
	ctx.Shared(pipeline.ReplySteerKey{Interface: "eth0"}, func() any { return st })
	e := &NAT{ConnTrack: "ct", Interface: "eth0", Ports: map[string]int{"be2": 8080}}
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	ep := func(a string, port uint16, proto uint8) pipeline.ServiceEndpoint {
		return pipeline.ServiceEndpoint{Addr: netip.MustParseAddr(a), Port: port, Proto: proto}
	}
	want := []pipeline.ServiceEndpoint{ep("10.0.0.21", 80, 6), ep("10.0.0.22", 8080, 6), ep("2001:db8:1::23", 80, 6), ep("2001:db8:1::23", 80, 17)}
	if got := st.eps["nat"]; len(got) != len(want) || !equal(got, want) {
		t.Errorf("steered %v, want %v", got, want)
	}
	e.Cleanup()
	if got, ok := st.eps["nat"]; !ok || len(got) != 0 {
		t.Errorf("after Cleanup, steered %v", got)
	}
}

func equal(a, b []pipeline.ServiceEndpoint) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPrefetch: Prefetch hands ConnTrack the hashes of the reply entries
// the batch's packets to backends will record, the replies' not, and
// allocates nothing.
func TestPrefetch(t *testing.T) {
	h := newHarness(t)
	fwd := tcpTo(4, vip4.AsSlice(), 40000, 80)
	pp, _, _ := h.push(append([]byte(nil), fwd...), realMapped, false, 0)
	p := new(pipeline.Packet)
	*p = *pp // the harness reuses its packet
	tracked := h.ct.hash
	q, _, _ := h.push(frame(net.IP{10, 0, 0, 22}, client[4], &layers.TCP{SrcPort: 8080, DstPort: 40000, ACK: true}), realMapped, true, 80)
	h.view.StartBatch(0)
	h.nat.StartBatch(0)
	h.nat.Prefetch(0, []*pipeline.Packet{p, q})
	if h.ct.prefetched != 1 || h.ct.lastPrefetch != tracked {
		t.Errorf("prefetched %d hashes, the last %#x; want 1, %#x (TrackReply's)", h.ct.prefetched, h.ct.lastPrefetch, tracked)
	}
	pkts := []*pipeline.Packet{p, q}
	if n := testing.AllocsPerRun(1000, func() { h.nat.Prefetch(0, pkts) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
	h.nat.EndBatch()
	h.view.EndBatch()
}

// icmpErrors are ICMP errors about the flow 40000 -> VIP:80 sent to be2
// (10.0.0.22:8080) or be6 ([2001:db8:1::23]:8443): from a router to the
// VIP about a reply the client did not get, and from the backend to the
// client about a packet it could not take.
func icmpErrors() (toVIP4, toClient4, toVIP6, toClient6 []byte) {
	router4, router6 := net.IP{198, 51, 100, 254}, net.ParseIP("2001:db8:ffff::1")
	be2, be6 := net.IP{10, 0, 0, 22}, net.ParseIP("2001:db8:1::23")
	quote := func(src, dst net.IP, sport, dport uint16) gopacket.Payload {
		return frame(src, dst, &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), ACK: true, Window: 9})[14:]
	}
	toVIP4 = frame(router4, vip4.AsSlice(), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: 1400}, quote(vip4.AsSlice(), client[4], 80, 40000))
	toClient4 = frame(be2, client[4], &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, quote(client[4], be2, 40000, 8080)[:28])
	toVIP6 = frame(router6, vip6.AsSlice(), &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}, append(gopacket.Payload{0, 0, 5, 0}, quote(vip6.AsSlice(), client[6], 80, 40000)...))
	toClient6 = frame(be6, client[6], &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}, append(gopacket.Payload{0, 0, 0, 0}, quote(client[6], be6, 40000, 8443)...))
	return
}

// TestICMPError: an ICMP error about a flow is translated as the flow's
// packets are, its quote as the other direction's: a router's error to
// the VIP reaches be2 quoting be2:8080 -> client, and be2's error to the
// client leaves quoting client -> VIP:80; every checksum, the quote's
// included, is right.
func TestICMPError(t *testing.T) {
	h := newHarness(t)
	toVIP4, toClient4, toVIP6, toClient6 := icmpErrors()
	for _, tc := range []struct {
		name        string
		frame       []byte
		id          uint32
		reply       bool
		outer, from string // the outer address rewritten, the quote's source
		port        uint16 // the quote's port rewritten
	}{
		{"to the VIP", toVIP4, realMapped, false, "10.0.0.22", "10.0.0.22", 8080},
		{"to the client", toClient4, realMapped, true, "192.0.2.10", "203.0.113.7", 80},
		{"IPv6 to the VIP", toVIP6, realV6, false, "2001:db8:1::23", "2001:db8:1::23", 8443},
		{"IPv6 to the client", toClient6, realV6, true, "2001:db8::10", "2001:db8:c::7", 80},
	} {
		p, port, ok := h.push(append([]byte(nil), tc.frame...), tc.id, tc.reply, 80)
		if !ok || port != portOut {
			t.Errorf("%s: parsed %v, port %d, reason %v", tc.name, ok, port, p.Reason)
			continue
		}
		d := p.Data()
		if err := csumtest.Check(d); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		pkt := gopacket.NewPacket(d, layers.LayerTypeEthernet, gopacket.Default)
		src, dst := pkt.NetworkLayer().NetworkFlow().Endpoints()
		if outer := map[bool]string{false: dst.String(), true: src.String()}[tc.reply]; outer != tc.outer {
			t.Errorf("%s: outer address %s, want %s", tc.name, outer, tc.outer)
		}
		l4 := d[p.L4+8:]
		v4 := p.Flow.Family == 4
		qhl := 40
		if v4 {
			qhl = 20
			if csum.Sum(0, l4[:20]) != 0xffff {
				t.Errorf("%s: the quote's IPv4 header checksum is wrong", tc.name)
			}
		}
		qsrc := netip.AddrFrom16([16]byte(l4[8:24]))
		if v4 {
			qsrc = netip.AddrFrom4([4]byte(l4[12:16]))
		}
		qp := be16(l4[qhl:])
		if tc.reply {
			qp = be16(l4[qhl+2:])
		}
		if qsrc.String() != tc.from || qp != tc.port {
			t.Errorf("%s: quote from %s, port %d; want %s, %d", tc.name, qsrc, qp, tc.from, tc.port)
		}
		// A whole quote (all but toClient4's) has its transport checksum
		// checked as a frame of its own.
		if tot := qhl + 20; len(l4) >= tot {
			et := map[bool][]byte{true: {8, 0}, false: {0x86, 0xdd}}[v4]
			if err := csumtest.Check(append(append(make([]byte, 12), et...), l4[:tot]...)); err != nil {
				t.Errorf("%s: the quote: %v", tc.name, err)
			}
		}
	}
}

// TestICMPErrorFragments: the later fragment of an ICMP error, which
// Parse5Tuple gives its first fragment's flow (an ICMP error's) but which
// has no ICMP header, gets its address rewritten only.
func TestICMPErrorFragments(t *testing.T) {
	h := newHarness(t)
	toVIP4, _, _, _ := icmpErrors()
	ip := toVIP4[14:]
	body := ip[20:] // ICMP header and quote: 8 + 40 bytes
	first := append(append([]byte(nil), toVIP4[:14+20]...), body[:32]...)
	later := append(append([]byte(nil), toVIP4[:14+20]...), body[32:]...)
	for _, fr := range []struct {
		b   []byte
		off uint16
	}{{first, 0x2000}, {later, 4}} { // MF, offset 0; offset 4 (32 bytes)
		fr.b[14+2], fr.b[14+3] = byte((20+len(fr.b)-34)>>8), byte(20+len(fr.b)-34)
		fr.b[14+6], fr.b[14+7] = byte(fr.off>>8), byte(fr.off)
		fr.b[14+10], fr.b[14+11] = 0, 0
		c := csum.Checksum(0, fr.b[14:34])
		fr.b[14+10], fr.b[14+11] = byte(c>>8), byte(c)
	}
	if _, port, ok := h.push(first, realMapped, false, 0); !ok || port != portOut {
		t.Fatalf("first fragment: parsed %v, port %d", ok, port)
	}
	in := append([]byte(nil), later...)
	p, port, ok := h.push(later, realMapped, false, 0)
	if !ok || port != portOut || p.Flow.Flags&pipeline.FlowICMPError == 0 {
		t.Fatalf("later fragment: parsed %v, port %d, flags %#x", ok, port, p.Flow.Flags)
	}
	d := p.Data()
	if err := csumtest.Check(d); err != nil {
		t.Error(err)
	}
	if got := netip.AddrFrom4([4]byte(d[14+16 : 14+20])); got.String() != "10.0.0.22" {
		t.Errorf("later fragment to %s", got)
	}
	if string(d[34:]) != string(in[34:len(d)]) {
		t.Errorf("the later fragment's payload changed: % x from % x", d[34:], in[34:])
	}
}
