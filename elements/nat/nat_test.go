package nat

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/control/snapshot"
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
}

func (t *tracker) TrackReply(_ *pipeline.Packet, reply *pipeline.Flow, hash uint64) {
	t.n++
	t.reply, t.hash = *reply, hash
}

func (t *tracker) ExpectReplies() { t.expect = true }

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
// would: naming real id, as a reply of VIP port vport when reply.
func (h *harness) push(frame []byte, id uint32, reply bool, vport uint16) (*pipeline.Packet, int, bool) {
	p := &h.pkt
	p.SetFrame(frame, 0, len(frame))
	h.view.StartBatch(0)
	defer h.view.EndBatch()
	h.parse.(pipeline.BatchStarter).StartBatch(0)
	if h.parse.Push(0, p) != 0 {
		return p, 0, false
	}
	p.Backend, p.Epoch = id, epoch
	if r := h.snap.Real(id, epoch); r != nil {
		p.VIP = r.VIP
	}
	if reply {
		p.Flow.Flags |= pipeline.FlowReply
		p.VIPPort = vport
	}
	h.nat.StartBatch(0)
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

// TestBad: a real gone, of the other family, or an ICMP error leaves by
// bad with its reason and unchanged.
func TestBad(t *testing.T) {
	h := newHarness(t)
	icmp := frame(net.IP{198, 51, 100, 254}, vip4.AsSlice(), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4)},
		gopacket.Payload(frame(vip4.AsSlice(), client[4], &layers.TCP{SrcPort: 80, DstPort: 40000, ACK: true})[14:42]))
	for _, tc := range []struct {
		name   string
		frame  []byte
		id     uint32
		reason string
	}{
		{"no real", tcpTo(4, vip4.AsSlice(), 40000, 80), 9, "nat.nobackend"},
		{"other family", tcpTo(4, vip4.AsSlice(), 40000, 80), realV6, "nat.family"},
		{"icmp error", icmp, realKeep, "nat.icmp_error"},
	} {
		in := append([]byte(nil), tc.frame...)
		p, port, ok := h.push(tc.frame, tc.id, false, 0)
		if !ok || port != portBad || p.Reason.String() != tc.reason || string(in[:p.Len()]) != string(p.Data()) {
			t.Errorf("%s: port %d, reason %v, frame % x from % x", tc.name, port, p.Reason, p.Data(), in)
		}
	}
}

// TestNeedsConnTrack: without a ConnTrack of its name provisioned first,
// Provision says what to declare.
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
	eps map[string][]pipeline.ServiceEndpoint
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
