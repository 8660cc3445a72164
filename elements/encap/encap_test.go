package encap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// The service the fixtures run against: two VIPs, each with an IPv4 and an
// IPv6 backend. Real 0 is an unused slot (Epoch 0).
const (
	realB4   = 1 // web4 -> b4 10.1.0.2
	realB6   = 2 // web4 -> b6 2001:db8:b::2
	realC4   = 3 // web6 -> c4 10.1.0.3
	realC6   = 4 // web6 -> c6 2001:db8:b::3
	epoch    = 7
	testHash = 0x0123456789abcdef // flow label: (h ^ h>>20 ^ h>>40) & 0xfffff = 0xc9630
)

func testSnapshot() *snapshot.Snapshot {
	return snapshot.New(1, 42, testVIPs(), testReals())
}

func testVIPs() []snapshot.VIP {
	return []snapshot.VIP{
		{Name: "web4", Addr: netip.MustParseAddr("192.0.2.10"), Proto: 17, Ports: []uint16{443}, Reals: []uint32{realB4, realB6}},
		{Name: "web6", Addr: netip.MustParseAddr("2001:db8:a::10"), Proto: 17, Ports: []uint16{443}, Reals: []uint32{realC4, realC6}},
	}
}

func testReals() []snapshot.Real {
	return []snapshot.Real{
		{},
		testReal(realB4, 0, "b4", "10.1.0.2"),
		testReal(realB6, 0, "b6", "2001:db8:b::2"),
		testReal(realC4, 1, "c4", "10.1.0.3"),
		testReal(realC6, 1, "c6", "2001:db8:b::3"),
	}
}

func testReal(id, vip uint32, name, addr string) snapshot.Real {
	a := netip.MustParseAddr(addr)
	fam := uint8(6)
	if a.Is4() {
		fam = 4
	}
	return snapshot.Real{ID: id, Epoch: epoch, VIP: vip, Backend: name, Addr: a, Addr16: a.As16(), Family: fam, Weight: 1}
}

// testContext is what Provision gets as worker of workers, with st.
func testContext(st *snapshot.Store, worker, workers int) *pipeline.Context {
	return pipeline.NewContext("encap", worker, workers, snapshot.ContextValues(st))
}

// newTestEncap returns a provisioned element with both sources, as after
// StartBatch. mod adjusts the configuration before provisioning.
func newTestEncap(tb testing.TB, t tunnel, mod func(*Encap)) *Encap {
	tb.Helper()
	e := newEncap(t)
	e.Source4 = "198.51.100.1"
	e.Source6 = "2001:db8:ffff::1"
	if mod != nil {
		mod(e)
	}
	if err := e.Provision(testContext(snapshot.NewStore(testSnapshot()), 0, 1)); err != nil {
		tb.Fatal(err)
	}
	start(e)
	return e
}

// start and end frame a batch as the engine does: the worker's view first
// and last, the element in between.
func start(e *Encap) {
	e.view.StartBatch(0)
	e.StartBatch(0)
}

func end(e *Encap) {
	e.EndBatch()
	e.view.EndBatch()
}

// newPacket puts frame after headroom bytes, as a source would, with the
// metadata Parse5Tuple and MaglevSelect would have written.
func newPacket(frame []byte, headroom int, l3 uint16, backend uint32) *pipeline.Packet {
	buf := make([]byte, headroom+len(frame))
	copy(buf[headroom:], frame)
	p := &pipeline.Packet{}
	p.SetFrame(buf, headroom, len(buf))
	p.L3, p.L4 = l3, 0
	p.Backend, p.Epoch, p.Hash = backend, epoch, testHash
	return p
}

func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// Input Ethernet headers: to the LB's MAC from the router's.
var (
	ethIn4 = []byte{
		0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination MAC (the LB)
		0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source MAC (the router)
		0x08, 0x00, // EtherType IPv4
	}
	ethIn6 = []byte{
		0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination MAC
		0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source MAC
		0x86, 0xdd, // EtherType IPv6
	}
	// The same headers after encapsulation: MACs untouched (TxXDP owns
	// them), EtherType of the outer family.
	ethOut4 = ethIn4
	ethOut6 = ethIn6
)

// inner4In is a client's IPv4/UDP datagram to VIP web4 (32 bytes).
var inner4In = []byte{
	0x45,       // version 4, IHL 5
	0x2a,       // TOS: DSCP 10 (AF11), ECN 10 (ECT(0))
	0x00, 0x20, // total length 32
	0x1c, 0x46, // identification
	0x40, 0x00, // flags DF, fragment offset 0
	0x40,       // TTL 64
	0x11,       // protocol UDP
	0x20, 0x4b, // header checksum
	203, 0, 113, 7, // source 203.0.113.7 (client)
	192, 0, 2, 10, // destination 192.0.2.10 (VIP)
	0x9c, 0x40, // UDP source port 40000
	0x01, 0xbb, // UDP destination port 443
	0x00, 0x0c, // UDP length 12
	0x84, 0xf7, // UDP checksum
	'p', 'i', 'n', 'g', // payload
}

// inner4Out is inner4In after the hop: TTL 63, checksum +0x0100 (RFC 1624).
var inner4Out = []byte{
	0x45, 0x2a, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, // unchanged
	0x3f,       // TTL 63
	0x11,       // protocol UDP
	0x21, 0x4b, // header checksum, updated
	203, 0, 113, 7, 192, 0, 2, 10, // addresses unchanged
	0x9c, 0x40, 0x01, 0xbb, 0x00, 0x0c, 0x84, 0xf7, 'p', 'i', 'n', 'g', // UDP unchanged
}

// inner6In is a client's IPv6/UDP datagram to VIP web6 (52 bytes).
var inner6In = []byte{
	0x6b, 0x91, 0x23, 0x45, // version 6, traffic class 0xb9 (DSCP 46 EF, ECN 01 ECT(1)), flow label 0x12345
	0x00, 0x0c, // payload length 12
	0x11,                                                                                           // next header UDP
	0x40,                                                                                           // hop limit 64
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, // source 2001:db8:c::7
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, // destination 2001:db8:a::10
	0x9c, 0x40, 0x01, 0xbb, 0x00, 0x0c, 0x27, 0x6b, // UDP 40000 -> 443, length 12, checksum
	'p', 'i', 'n', 'g', // payload
}

// inner6Out is inner6In after the hop: hop limit 63.
var inner6Out = cat(inner6In[:7], []byte{0x3f}, inner6In[8:])

// Outer source and backend addresses as bytes.
var (
	src6 = []byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01} // 2001:db8:ffff::1
	b6   = []byte{0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02} // 2001:db8:b::2
	c6   = []byte{0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03} // 2001:db8:b::3
)

var (
	greIPv4 = []byte{0x00, 0x00, 0x08, 0x00} // GRE: no C/K/S bits, version 0, protocol type IPv4
	greIPv6 = []byte{0x00, 0x00, 0x86, 0xdd} // GRE: protocol type IPv6
)

type golden struct {
	name    string
	tunnel  tunnel
	in      []byte
	l3      uint16
	backend uint32
	want    []byte
}

var goldens = []golden{
	{"gre/v4-in-v4", tunnelGRE, cat(ethIn4, inner4In), 14, realB4, cat(ethOut4, []byte{
		0x45,       // version 4, IHL 5
		0x2a,       // TOS copied from the inner header
		0x00, 0x38, // total length 56 = 20 + 4 + 32
		0x00, 0x00, // identification: first packet of worker 0
		0x40, 0x00, // DF, copied from the inner header
		0x40,       // TTL 64 (config)
		0x2f,       // protocol 47 GRE
		0x06, 0x36, // header checksum
		198, 51, 100, 1, // source4
		10, 1, 0, 2, // backend b4
	}, greIPv4, inner4Out)},
	{"gre/v6-in-v4", tunnelGRE, cat(ethIn6, inner6In), 14, realC4, cat(ethOut4, []byte{
		0x45,       // version 4, IHL 5
		0xb9,       // TOS: the inner traffic class
		0x00, 0x4c, // total length 76 = 20 + 4 + 52
		0x00, 0x00, // identification
		0x40, 0x00, // DF: the inner is IPv6
		0x40,       // TTL 64
		0x2f,       // protocol 47 GRE
		0x05, 0x92, // header checksum
		198, 51, 100, 1, // source4
		10, 1, 0, 3, // backend c4
	}, greIPv6, inner6Out)},
	{"gre/v4-in-v6", tunnelGRE, cat(ethIn4, inner4In), 14, realB6, cat(ethOut6, []byte{
		0x62, 0xac, 0x96, 0x30, // version 6, traffic class 0x2a, flow label 0xc9630 from p.Hash
		0x00, 0x24, // payload length 36 = 4 + 32
		0x2f, // next header 47 GRE
		0x40, // hop limit 64
	}, src6, b6, greIPv4, inner4Out)},
	{"gre/v6-in-v6", tunnelGRE, cat(ethIn6, inner6In), 14, realC6, cat(ethOut6, []byte{
		0x6b, 0x9c, 0x96, 0x30, // version 6, traffic class 0xb9, flow label 0xc9630
		0x00, 0x38, // payload length 56 = 4 + 52
		0x2f, // next header 47 GRE
		0x40, // hop limit 64
	}, src6, c6, greIPv6, inner6Out)},
	{"ipip/4in4", tunnelIPIP, cat(ethIn4, inner4In), 14, realB4, cat(ethOut4, []byte{
		0x45, 0x2a, // version 4, IHL 5, TOS copied
		0x00, 0x34, // total length 52 = 20 + 32
		0x00, 0x00, // identification
		0x40, 0x00, // DF copied
		0x40,       // TTL 64
		0x04,       // protocol 4 IPv4 (RFC 2003)
		0x06, 0x65, // header checksum
		198, 51, 100, 1, // source4
		10, 1, 0, 2, // backend b4
	}, inner4Out)},
	{"ipip/6in4", tunnelIPIP, cat(ethIn6, inner6In), 14, realC4, cat(ethOut4, []byte{
		0x45, 0xb9, // version 4, IHL 5, TOS = inner traffic class
		0x00, 0x48, // total length 72 = 20 + 52
		0x00, 0x00, // identification
		0x40, 0x00, // DF: the inner is IPv6
		0x40,       // TTL 64
		0x29,       // protocol 41 IPv6 (RFC 4213)
		0x05, 0x9c, // header checksum
		198, 51, 100, 1, // source4
		10, 1, 0, 3, // backend c4
	}, inner6Out)},
	{"ipip/4in6", tunnelIPIP, cat(ethIn4, inner4In), 14, realB6, cat(ethOut6, []byte{
		0x62, 0xac, 0x96, 0x30, // version 6, traffic class 0x2a, flow label 0xc9630
		0x00, 0x20, // payload length 32
		0x04, // next header 4 IPv4 (RFC 2473)
		0x40, // hop limit 64
	}, src6, b6, inner4Out)},
	{"ipip/6in6", tunnelIPIP, cat(ethIn6, inner6In), 14, realC6, cat(ethOut6, []byte{
		0x6b, 0x9c, 0x96, 0x30, // version 6, traffic class 0xb9, flow label 0xc9630
		0x00, 0x34, // payload length 52
		0x29, // next header 41 IPv6 (RFC 2473)
		0x40, // hop limit 64
	}, src6, c6, inner6Out)},
	{"gre/vlan/v4-in-v6", tunnelGRE, cat([]byte{
		0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination MAC
		0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source MAC
		0x81, 0x00, // TPID 802.1Q
		0x00, 0x64, // PCP 0, VID 100
		0x08, 0x00, // EtherType IPv4
	}, inner4In), 18, realB6, cat([]byte{
		0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // MACs unchanged
		0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
		0x81, 0x00, 0x00, 0x64, // the tag is kept
		0x86, 0xdd, // EtherType IPv6: the outer family
		0x62, 0xac, 0x96, 0x30, // version 6, traffic class 0x2a, flow label 0xc9630
		0x00, 0x24, // payload length 36
		0x2f, // next header GRE
		0x40, // hop limit 64
	}, src6, b6, greIPv4, inner4Out)},
}

func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			e := newTestEncap(t, g.tunnel, nil)
			p := newPacket(g.in, pipeline.Headroom, g.l3, g.backend)
			if port := e.Push(0, p); port != portOut {
				t.Fatalf("port %d reason %v, want out", port, p.Reason)
			}
			if !bytes.Equal(p.Data(), g.want) {
				t.Fatalf("output\n got % x\nwant % x", p.Data(), g.want)
			}
			if p.L3 != g.l3 || int(p.L4) != len(g.want)-(len(g.in)-int(g.l3)) {
				t.Errorf("L3, L4 = %d, %d; want the outer header at %d and the inner at %d", p.L3, p.L4, g.l3, len(g.want)-(len(g.in)-int(g.l3)))
			}
			checkDecoded(t, p.Data(), g)
		})
	}
}

// checkDecoded decodes out with gopacket, an implementation independent of
// ours, and checks the outer and inner headers it finds.
func checkDecoded(t *testing.T, out []byte, g golden) {
	t.Helper()
	pkt := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	var ips []gopacket.Layer
	var gre *layers.GRE
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.IPv4, *layers.IPv6:
			ips = append(ips, l)
		case *layers.GRE:
			gre = l
		}
	}
	if len(ips) != 2 {
		t.Fatalf("gopacket found %d IP layers, want outer and inner: %v", len(ips), pkt)
	}
	if (g.tunnel == tunnelGRE) != (gre != nil) {
		t.Fatalf("GRE layer %v for tunnel %d", gre, g.tunnel)
	}
	if gre != nil && (gre.ChecksumPresent || gre.KeyPresent || gre.SeqPresent || gre.Version != 0) {
		t.Errorf("GRE has optional fields: %+v", gre)
	}
	r := testReals()[g.backend]
	switch o := ips[0].(type) {
	case *layers.IPv4:
		if r.Family != 4 || o.SrcIP.String() != "198.51.100.1" || o.DstIP.String() != r.Addr.String() || o.TTL != 64 {
			t.Errorf("outer IPv4 %v -> %v TTL %d, want 198.51.100.1 -> %v TTL 64", o.SrcIP, o.DstIP, o.TTL, r.Addr)
		}
		if int(o.Length) != len(o.Contents)+len(o.Payload) {
			t.Errorf("outer total length %d, header+payload %d", o.Length, len(o.Contents)+len(o.Payload))
		}
		if rfc1071(o.Contents) != 0 {
			t.Errorf("outer IPv4 checksum %#04x does not verify", o.Checksum)
		}
	case *layers.IPv6:
		if r.Family != 6 || o.SrcIP.String() != "2001:db8:ffff::1" || o.DstIP.String() != r.Addr.String() || o.HopLimit != 64 {
			t.Errorf("outer IPv6 %v -> %v hop limit %d", o.SrcIP, o.DstIP, o.HopLimit)
		}
		if int(o.Length) != len(o.Payload) || o.FlowLabel != 0xc9630 {
			t.Errorf("outer payload length %d (payload %d), flow label %#x", o.Length, len(o.Payload), o.FlowLabel)
		}
	}
	switch in := ips[1].(type) {
	case *layers.IPv4:
		if in.TTL != 63 || rfc1071(in.Contents) != 0 {
			t.Errorf("inner IPv4 TTL %d checksum verifies: %v", in.TTL, rfc1071(in.Contents) == 0)
		}
	case *layers.IPv6:
		if in.HopLimit != 63 {
			t.Errorf("inner hop limit %d, want 63", in.HopLimit)
		}
	}
	if pkt.Layer(layers.LayerTypeUDP) == nil {
		t.Errorf("no UDP inside: %v", pkt)
	}
}

// rfc1071 is the checksum over b computed the slow, obvious way: zero when
// b is an IPv4 header with a correct checksum.
func rfc1071(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestIPv4ChecksumAgainstRFC1071(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := make([]byte, 20)
	dst := make([]byte, 4)
	for range 10000 {
		// Random outer headers: every field that enters the sum varies.
		e := &Encap{id: uint16(rng.Uint32()), ttl: uint8(rng.Uint32())}
		binary.BigEndian.PutUint32(e.src4[:], rng.Uint32())
		e.src4U32 = binary.BigEndian.Uint32(e.src4[:])
		binary.BigEndian.PutUint32(dst, rng.Uint32())
		o := e.newOuter4(binary.BigEndian.Uint32(dst), byte(rng.Uint32()))
		e.writeIPv4(h, byte(rng.Uint32()), int(rng.Uint32N(65536)), rng.Uint32()&1 == 0, &o)
		if rfc1071(h) != 0 {
			t.Fatalf("outer header checksum does not verify: % x", h)
		}
		// The incremental TTL update leaves a checksum that verifies.
		if h[8] <= 1 {
			continue
		}
		decTTL(h, true)
		if rfc1071(h) != 0 {
			t.Fatalf("after decTTL the checksum does not verify: % x", h)
		}
	}
}

func TestTTLExceeded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		off   int // TTL offset in frame
	}{
		{"v4", cat(ethIn4, inner4In), 14 + 8},
		{"v6", cat(ethIn6, inner6In), 14 + 7},
	} {
		for _, ttl := range []byte{0, 1} {
			frame := slices.Clone(tc.frame)
			frame[tc.off] = ttl
			e := newTestEncap(t, tunnelGRE, nil)
			p := newPacket(frame, pipeline.Headroom, 14, realB4)
			if port := e.Push(0, p); port != portBad || p.Reason != dropReasons[dropTTLExceeded] {
				t.Errorf("%s TTL %d: port %d reason %v, want bad encap.ttl_exceeded", tc.name, ttl, port, p.Reason)
			}
			if !bytes.Equal(p.Data(), frame) {
				t.Errorf("%s TTL %d: a dropped packet was modified", tc.name, ttl)
			}
		}
	}
	// TTL 2 leaves with 1: the backend is the next hop.
	frame := slices.Clone(cat(ethIn4, inner4In))
	frame[14+8] = 2
	p := newPacket(frame, pipeline.Headroom, 14, realB4)
	if port := newTestEncap(t, tunnelIPIP, nil).Push(0, p); port != portOut || p.Data()[p.L4+8] != 1 {
		t.Errorf("TTL 2: port %d inner TTL %d, want out with 1", port, p.Data()[p.L4+8])
	}
}

func TestTOSAndDF(t *testing.T) {
	for _, tc := range []struct {
		name    string
		v6      bool
		tos     byte // inner TOS / traffic class
		innerDF bool
		backend uint32
		wantDF  bool
	}{
		{"v4 best effort, no DF", false, 0x00, false, realB4, false},
		{"v4 EF + CE, DF", false, 0xbb, true, realB4, true},
		{"v4 CS1 + ECT(1), no DF", false, 0x21, false, realB4, false},
		{"v4 AF41 + ECT(0) to v6", false, 0x8a, false, realB6, false},
		{"v6 EF + CE", true, 0xbb, false, realC4, true},
		{"v6 best effort not-ECT", true, 0x00, false, realC4, true},
		{"v6 AF21 + ECT(0) to v6", true, 0x4a, false, realC6, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var frame []byte
			if tc.v6 {
				frame = cat(ethIn6, inner6In)
				frame[14] = 0x60 | tc.tos>>4
				frame[15] = tc.tos<<4 | frame[15]&0x0f
			} else {
				inner := slices.Clone(inner4In)
				inner[1] = tc.tos
				inner[6] = 0
				if tc.innerDF {
					inner[6] = 0x40
				}
				inner[10], inner[11] = 0, 0
				binary.BigEndian.PutUint16(inner[10:], rfc1071(inner[:20]))
				frame = cat(ethIn4, inner)
			}
			p := newPacket(frame, pipeline.Headroom, 14, tc.backend)
			if port := newTestEncap(t, tunnelGRE, nil).Push(0, p); port != portOut {
				t.Fatalf("port %d reason %v", port, p.Reason)
			}
			o := p.Data()[p.L3:]
			if o[0]>>4 == 4 {
				if o[1] != tc.tos || (o[6]&0x40 != 0) != tc.wantDF || rfc1071(o[:20]) != 0 {
					t.Errorf("outer TOS %#02x DF %v checksum ok %v; want TOS %#02x DF %v", o[1], o[6]&0x40 != 0, rfc1071(o[:20]) == 0, tc.tos, tc.wantDF)
				}
			} else if got := o[0]<<4 | o[1]>>4; got != tc.tos {
				t.Errorf("outer traffic class %#02x, want %#02x", got, tc.tos)
			}
		})
	}
}

func TestDrops(t *testing.T) {
	v4 := cat(ethIn4, inner4In)
	badIHL := slices.Clone(v4)
	badIHL[14] = 0x44
	longTot := slices.Clone(v4)
	longTot[14+3] = 33 // total length one byte past the frame
	for _, tc := range []struct {
		name     string
		tunnel   tunnel
		mod      func(*Encap)
		frame    []byte
		headroom int
		l3       uint16
		backend  uint32
		epoch    uint32
		want     int // index in dropReasons
	}{
		{"unused real slot", tunnelGRE, nil, v4, 256, 14, 0, epoch, dropNoBackend},
		{"stale epoch", tunnelGRE, nil, v4, 256, 14, realB4, epoch + 1, dropNoBackend},
		{"real ID out of range", tunnelGRE, nil, v4, 256, 14, 99, epoch, dropNoBackend},
		{"no source6 for a v6 backend", tunnelGRE, func(e *Encap) { e.Source6 = "" }, v4, 256, 14, realB6, epoch, dropNoSource},
		{"no source4 for a v4 backend", tunnelIPIP, func(e *Encap) { e.Source4 = "" }, v4, 256, 14, realB4, epoch, dropNoSource},
		{"gre4 needs 24 bytes", tunnelGRE, nil, v4, 23, 14, realB4, epoch, dropNoHeadroom},
		{"ipip6 needs 40 bytes", tunnelIPIP, nil, v4, 39, 14, realB6, epoch, dropNoHeadroom},
		{"no headroom at all", tunnelIPIP, nil, v4, 0, 14, realB4, epoch, dropNoHeadroom},
		{"mtu, no ICMP replies", tunnelGRE, func(e *Encap) { e.MTU = 95; e.ICMPRate = 0 }, cat(ethIn6, inner6In), 256, 14, realC6, epoch, dropICMPRateLimited},
		{"mtu, no headroom for the reply", tunnelGRE, func(e *Encap) { e.MTU = 95 }, cat(ethIn6, inner6In), 47, 14, realC6, epoch, dropNoHeadroom},
		{"L3 inside Ethernet", tunnelGRE, nil, v4, 256, 13, realB4, epoch, dropMalformed},
		{"L3 past the frame", tunnelGRE, nil, v4, 256, 40, realB4, epoch, dropMalformed},
		{"EtherType disagrees with version", tunnelGRE, nil, cat(ethIn6, inner4In), 256, 14, realB4, epoch, dropMalformed},
		{"IHL 4", tunnelGRE, nil, badIHL, 256, 14, realB4, epoch, dropMalformed},
		{"total length past the frame", tunnelGRE, nil, longTot, 256, 14, realB4, epoch, dropMalformed},
		{"IPv6 header cut", tunnelGRE, nil, cat(ethIn6, inner6In)[:14+39], 256, 14, realC4, epoch, dropMalformed},
		{"IPv6 payload cut", tunnelGRE, nil, cat(ethIn6, inner6In)[:14+51], 256, 14, realC4, epoch, dropMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEncap(t, tc.tunnel, tc.mod)
			p := newPacket(tc.frame, tc.headroom, tc.l3, tc.backend)
			p.Epoch = tc.epoch
			if port := e.Push(0, p); port != portBad || p.Reason != dropReasons[tc.want] {
				t.Fatalf("port %d reason %v, want bad %v", port, p.Reason, dropReasons[tc.want])
			}
			if !bytes.Equal(p.Data(), tc.frame) || p.L3 != tc.l3 || p.L4 != 0 {
				t.Errorf("a dropped packet was modified")
			}
		})
	}
}

func TestMTUBoundary(t *testing.T) {
	// GRE over IPv6 of a 52-byte packet is 96 bytes: mtu 96 passes (and
	// 95 does not, in TestDrops).
	e := newTestEncap(t, tunnelGRE, func(e *Encap) { e.MTU = 96 })
	if port := e.Push(0, newPacket(cat(ethIn6, inner6In), 256, 14, realC6)); port != portOut {
		t.Errorf("outer length == mtu: port %d, want out", port)
	}
}

func TestLengthOverflow(t *testing.T) {
	// A 65535-byte inner IPv4 packet cannot get a 20-byte outer IPv4 header.
	inner := make([]byte, 65535)
	copy(inner, inner4In[:20])
	binary.BigEndian.PutUint16(inner[2:], 65535)
	p := newPacket(cat(ethIn4, inner), 256, 14, realB4)
	if port := newTestEncap(t, tunnelIPIP, nil).Push(0, p); port != portBad || p.Reason != dropReasons[dropTooBig] {
		t.Errorf("port %d reason %v, want encap.too_big", port, p.Reason)
	}
}

func TestEthernetPaddingIsNotTunnelled(t *testing.T) {
	// A 46-byte minimum Ethernet payload: 32 bytes of IP, 14 of padding.
	frame := cat(ethIn4, inner4In, make([]byte, 14))
	p := newPacket(frame, 256, 14, realB4)
	if port := newTestEncap(t, tunnelIPIP, nil).Push(0, p); port != portOut {
		t.Fatalf("port %d", port)
	}
	if want := goldens[4].want; !bytes.Equal(p.Data(), want) {
		t.Errorf("got % x\nwant % x", p.Data(), want)
	}
}

func TestIdentification(t *testing.T) {
	// Worker 1 of 3 uses IDs 1, 4, 7, ...
	e := newEncap(tunnelIPIP)
	e.Source4 = "198.51.100.1"
	if err := e.Provision(testContext(snapshot.NewStore(testSnapshot()), 1, 3)); err != nil {
		t.Fatal(err)
	}
	start(e)
	for _, want := range []uint16{1, 4, 7} {
		p := newPacket(cat(ethIn4, inner4In), 256, 14, realB4)
		e.Push(0, p)
		o := p.Data()[p.L3:]
		if id := binary.BigEndian.Uint16(o[4:]); id != want || rfc1071(o[:20]) != 0 {
			t.Errorf("ID %d, want %d (checksum ok %v)", id, want, rfc1071(o[:20]) == 0)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Encap)
		attr string // "" when valid
	}{
		{"both sources", func(e *Encap) { e.Source4, e.Source6 = "192.0.2.1", "2001:db8::1" }, ""},
		{"source4 only", func(e *Encap) { e.Source4 = "192.0.2.1" }, ""},
		{"source6 only, mtu", func(e *Encap) { e.Source6 = "2001:db8::1"; e.MTU = 1500 }, ""},
		{"no source", func(e *Encap) {}, "source4"},
		{"source4 is IPv6", func(e *Encap) { e.Source4 = "2001:db8::1" }, "source4"},
		{"source4 garbage", func(e *Encap) { e.Source4 = "192.0.2" }, "source4"},
		{"source4 unspecified", func(e *Encap) { e.Source4 = "0.0.0.0" }, "source4"},
		{"source6 is IPv4", func(e *Encap) { e.Source6 = "192.0.2.1" }, "source6"},
		{"source6 v4-mapped", func(e *Encap) { e.Source6 = "::ffff:192.0.2.1" }, "source6"},
		{"source6 multicast", func(e *Encap) { e.Source6 = "ff02::1" }, "source6"},
		{"ttl 0", func(e *Encap) { e.Source4 = "192.0.2.1"; e.TTL = 0 }, "ttl"},
		{"ttl 256", func(e *Encap) { e.Source4 = "192.0.2.1"; e.TTL = 256 }, "ttl"},
		{"mtu 67", func(e *Encap) { e.Source4 = "192.0.2.1"; e.MTU = 67 }, "mtu"},
		{"mtu negative", func(e *Encap) { e.Source4 = "192.0.2.1"; e.MTU = -1 }, "mtu"},
		{"icmp_rate 0", func(e *Encap) { e.Source4 = "192.0.2.1"; e.ICMPRate = 0 }, ""},
		{"icmp_rate negative", func(e *Encap) { e.Source4 = "192.0.2.1"; e.ICMPRate = -1 }, "icmp_rate"},
		{"icmp_burst 0", func(e *Encap) { e.Source4 = "192.0.2.1"; e.ICMPBurst = 0 }, "icmp_burst"},
	} {
		e := newEncap(tunnelGRE)
		tc.mod(e)
		err := e.Validate()
		var ae *pipeline.AttrError
		switch {
		case tc.attr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.attr != "" && (!errors.As(err, &ae) || ae.Attr != tc.attr):
			t.Errorf("%s: got %v, want an error on %s", tc.name, err, tc.attr)
		}
	}
}

// metrics collects what Stats emits, keyed by name and labels.
func metrics(r pipeline.StatsReporter) map[string]uint64 {
	m := map[string]uint64{}
	r.Stats(func(x pipeline.Metric) {
		k := x.Name
		for _, l := range x.Labels {
			k += "," + l.Name + "=" + l.Value
		}
		m[k] = x.Value
	})
	return m
}

func TestCounters(t *testing.T) {
	st := snapshot.NewStore(testSnapshot())
	e := newEncap(tunnelGRE)
	e.Source4, e.Source6 = "198.51.100.1", "2001:db8:ffff::1"
	if err := e.Provision(testContext(st, 0, 1)); err != nil {
		t.Fatal(err)
	}
	// Batch 1: three packets to b4, one to c6, one dropped.
	start(e)
	for range 3 {
		e.Push(0, newPacket(cat(ethIn4, inner4In), 256, 14, realB4))
	}
	e.Push(0, newPacket(cat(ethIn6, inner6In), 256, 14, realC6))
	e.Push(0, newPacket(cat(ethIn6, inner6In), 256, 14, 0))
	if m := metrics(e); m["xlb_encap_packets_total"] != 0 {
		t.Errorf("counters published before EndBatch: %v", m)
	}
	end(e)
	m := metrics(e)
	for k, want := range map[string]uint64{
		"xlb_encap_packets_total":                             4,
		"xlb_encap_bytes_total":                               3*(14+56) + 14 + 40 + 4 + 52,
		"xlb_encap_backend_packets_total,vip=web4,backend=b4": 3,
		"xlb_encap_backend_bytes_total,vip=web4,backend=b4":   3 * (14 + 56),
		"xlb_encap_backend_packets_total,vip=web6,backend=c6": 1,
		"xlb_encap_backend_packets_total,vip=web4,backend=b6": 0,
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", k, got, ok, want)
		}
	}

	// A new snapshot: b4's slot now holds another real (new epoch), and a
	// sixth real appears. b4new's counters start, c6's carry on, and b4,
	// removed, keeps its row and its count.
	reals := testReals()
	reals[realB4].Epoch, reals[realB4].Backend = epoch+1, "b4new"
	reals = append(reals, testReal(5, 0, "b5", "10.1.0.5"))
	st.Publish(snapshot.New(2, 42, testVIPs(), reals))
	start(e)
	p := newPacket(cat(ethIn4, inner4In), 256, 14, 5)
	if port := e.Push(0, p); port != portOut {
		t.Fatalf("real 5: port %d reason %v", port, p.Reason)
	}
	e.Push(0, newPacket(cat(ethIn6, inner6In), 256, 14, realC6))
	end(e)
	m = metrics(e)
	for k, want := range map[string]uint64{
		"xlb_encap_backend_packets_total,vip=web4,backend=b5":    1,
		"xlb_encap_backend_packets_total,vip=web6,backend=c6":    2,
		"xlb_encap_backend_packets_total,vip=web4,backend=b4new": 0,
		"xlb_encap_backend_packets_total,vip=web4,backend=b4":    3,
		"xlb_encap_backend_bytes_total,vip=web4,backend=b4":      3 * (14 + 56),
	} {
		if got, ok := m[k]; !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", k, got, ok, want)
		}
	}

	// b4 back in its first slot (b4new removed): its count carries on
	// under the same labels, one row each.
	st.Publish(snapshot.New(3, 42, testVIPs(), testReals()))
	start(e)
	e.Push(0, newPacket(cat(ethIn4, inner4In), 256, 14, realB4))
	end(e)
	rows := 0
	e.Stats(func(x pipeline.Metric) {
		if x.Name == "xlb_encap_backend_packets_total" && x.Labels[1].Value == "b4" {
			rows++
		}
	})
	m = metrics(e)
	if got := m["xlb_encap_backend_packets_total,vip=web4,backend=b4"]; got != 4 || rows != 1 {
		t.Errorf("b4 added again: %d packets in %d rows, want 4 in 1", got, rows)
	}
	if got, ok := m["xlb_encap_backend_packets_total,vip=web4,backend=b5"]; !ok || got != 1 {
		t.Errorf("b5, removed: %d packets (present %v), want 1", got, ok)
	}
}

func TestManyBackendsInOneBatch(t *testing.T) {
	// More distinct backends in one batch than the touched list holds
	// (MaxBatch): it is flushed early instead of growing.
	const n = 3 * pipeline.MaxBatch
	reals := make([]snapshot.Real, n+1)
	vip := snapshot.VIP{Name: "many", Addr: netip.MustParseAddr("192.0.2.10")}
	for i := 1; i <= n; i++ {
		a := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
		reals[i] = testReal(uint32(i), 0, a.String(), a.String())
		vip.Reals = append(vip.Reals, uint32(i))
	}
	e := newEncap(tunnelIPIP)
	e.Source4 = "198.51.100.1"
	if err := e.Provision(testContext(snapshot.NewStore(snapshot.New(1, 0, []snapshot.VIP{vip}, reals)), 0, 1)); err != nil {
		t.Fatal(err)
	}
	start(e)
	for i := 1; i <= n; i++ {
		if port := e.Push(0, newPacket(cat(ethIn4, inner4In), 256, 14, uint32(i))); port != portOut {
			t.Fatalf("real %d: port %d", i, port)
		}
	}
	end(e)
	m := metrics(e)
	for i := 1; i <= n; i++ {
		a := reals[i].Backend
		if got := m["xlb_encap_backend_packets_total,vip=many,backend="+a]; got != 1 {
			t.Errorf("backend %s: %d packets, want 1", a, got)
		}
	}
	if m["xlb_encap_packets_total"] != n {
		t.Errorf("total %d, want %d", m["xlb_encap_packets_total"], n)
	}
}

func TestAllocs(t *testing.T) {
	type input struct {
		frame   []byte
		backend uint32
	}
	inputs := []input{
		{cat(ethIn4, inner4In), realB4},
		{cat(ethIn4, inner4In), realB6},
		{cat(ethIn6, inner6In), realC4},
		{cat(ethIn6, inner6In), realC6},
		{cat(ethIn4, inner4In), 0}, // a drop
	}
	for _, tun := range []tunnel{tunnelGRE, tunnelIPIP} {
		e := newTestEncap(t, tun, nil)
		buf := make([]byte, 512)
		var p pipeline.Packet
		i := 0
		allocs := testing.AllocsPerRun(1000, func() {
			in := inputs[i%len(inputs)]
			i++
			start(e)
			copy(buf[256:], in.frame)
			p.SetFrame(buf, 256, 256+len(in.frame))
			p.L3, p.Backend, p.Epoch, p.Hash = 14, in.backend, epoch, testHash
			e.Push(0, &p)
			end(e)
		})
		if allocs != 0 {
			t.Errorf("tunnel %d: %v allocations per packet", tun, allocs)
		}
	}
}

func BenchmarkEncap(b *testing.B) {
	for _, bc := range []struct {
		name    string
		tunnel  tunnel
		backend uint32
	}{
		{"gre4", tunnelGRE, realB4},
		{"gre6", tunnelGRE, realB6},
		{"ipip4", tunnelIPIP, realB4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newTestEncap(b, bc.tunnel, nil)
			frame := cat(ethIn4, inner4In)
			buf := make([]byte, 512)
			var p pipeline.Packet
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%pipeline.MaxBatch == 0 {
					end(e)
					start(e)
				}
				// Restore the frame (the last push rewrote its L2 and TTL).
				copy(buf[256:], frame)
				p.SetFrame(buf, 256, 256+len(frame))
				p.L3, p.Backend, p.Epoch, p.Hash = 14, bc.backend, epoch, testHash
				if e.Push(0, &p) != portOut {
					b.Fatal(p.Reason)
				}
			}
		})
	}
}

// testFrames are what Parse5Tuple and MaglevSelect would hand Encap.
var testFrames = []struct {
	frame   []byte
	backend uint32
}{
	{cat(ethIn4, inner4In), realB4},
	{cat(ethIn6, inner6In), realC6},
	{cat(ethIn4, inner4In), 0}, // no such real: bad
}

// graphOptions configures the element with source4 and the usual IPv6
// source, with the store's values (nil for none).
func graphOptions(source4 string, values map[any]any) pipelinetest.Options {
	return pipelinetest.Options{Values: values, Configure: func(el pipeline.Element) error {
		el.(*Encap).Source4, el.(*Encap).Source6 = source4, "2001:db8:ffff::1"
		return nil
	}}
}

func TestInGraph(t *testing.T) {
	for _, tc := range []struct{ typ, want4, want6 string }{
		{"GREEncap", "gre/v4-in-v4", "gre/v6-in-v6"},
		{"IPIPEncap", "ipip/4in4", "ipip/6in6"},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			if _, err := pipelinetest.Start(t, tc.typ, graphOptions("198.51.100.1", nil)); err == nil || !strings.Contains(err.Error(), "snapshot") {
				t.Errorf("Start without a snapshot store: %v, want an error naming the snapshot", err)
			}
			h := pipelinetest.New(t, tc.typ, graphOptions("198.51.100.1", snapshot.ContextValues(snapshot.NewStore(testSnapshot()))))
			var pkts []*pipeline.Packet
			for _, f := range testFrames {
				pkts = append(pkts, newPacket(f.frame, pipeline.Headroom, 14, f.backend))
			}
			out := h.Push(0, pkts...)
			var tx [][]byte
			for _, p := range out["out"] {
				tx = append(tx, p.Data())
			}
			want := map[string][]byte{}
			for _, g := range goldens {
				want[g.name] = g.want
			}
			// The second packet of the worker gets outer IPv4 ID 1, but it
			// goes over IPv6 here, so both match the fixtures.
			if len(tx) != 2 || !bytes.Equal(tx[0], want[tc.want4]) || !bytes.Equal(tx[1], want[tc.want6]) {
				t.Errorf("tx got % x", tx)
			}
			if len(out["bad"]) != 1 {
				t.Errorf("drop got %d packets, want 1", len(out["bad"]))
			}
			var metrics []string
			for _, m := range h.Stats().Metrics {
				if len(m.Labels) == 2 && m.Value > 0 {
					metrics = append(metrics, fmt.Sprintf("%s %s/%s %d", m.Name, m.Labels[0].Value, m.Labels[1].Value, m.Value))
				}
			}
			slices.Sort(metrics)
			wantMetrics := []string{
				"xlb_encap_backend_bytes_total web4/b4 " + strconv.Itoa(len(want[tc.want4])),
				"xlb_encap_backend_bytes_total web6/c6 " + strconv.Itoa(len(want[tc.want6])),
				"xlb_encap_backend_packets_total web4/b4 1",
				"xlb_encap_backend_packets_total web6/c6 1",
			}
			if !slices.Equal(metrics, wantMetrics) {
				t.Errorf("metrics\n%s\nwant\n%s", strings.Join(metrics, "\n"), strings.Join(wantMetrics, "\n"))
			}
		})
	}
}

func TestBuildReportsConfig(t *testing.T) {
	_, err := pipelinetest.Start(t, "IPIPEncap", graphOptions("not-an-address", nil))
	var errs pipeline.Errors
	if !errors.As(err, &errs) || !strings.Contains(errs.Error(), "source4 must be a unicast IPv4 address") {
		t.Errorf("Build: %v", err)
	}
}

// A new snapshot that shares the last one's chunks of reals keeps their
// counters without looking at them again; a chunk is looked at again when
// a VIP changed place (a real names its VIP by index), so the labels
// follow: here web4 and web6 swap names, and b4's packets count under
// web6 from then on.
func TestCountersSharedReals(t *testing.T) {
	s1 := testSnapshot()
	st := snapshot.NewStore(s1)
	e := newEncap(tunnelGRE)
	e.Source4, e.Source6 = "198.51.100.1", "2001:db8:ffff::1"
	if err := e.Provision(testContext(st, 0, 1)); err != nil {
		t.Fatal(err)
	}
	start(e)
	e.Push(0, newPacket(cat(ethIn4, inner4In), 256, 14, realB4))
	end(e)
	before := e.byReal[0]

	st.Publish(snapshot.NewFrom(2, 42, testVIPs(), s1.Reals))
	start(e)
	e.Push(0, newPacket(cat(ethIn4, inner4In), 256, 14, realB4))
	end(e)
	if e.byReal[0] != before {
		t.Error("the counters of a shared chunk were looked up again")
	}
	if got := metrics(e)["xlb_encap_backend_packets_total,vip=web4,backend=b4"]; got != 2 {
		t.Errorf("b4 packets %d, want 2", got)
	}

	swapped := testVIPs()
	swapped[0].Name, swapped[1].Name = swapped[1].Name, swapped[0].Name
	st.Publish(snapshot.NewFrom(3, 42, swapped, s1.Reals))
	start(e)
	e.Push(0, newPacket(cat(ethIn4, inner4In), 256, 14, realB4))
	end(e)
	m := metrics(e)
	if got, ok := m["xlb_encap_backend_packets_total,vip=web6,backend=b4"]; got != 1 || m["xlb_encap_backend_packets_total,vip=web4,backend=b4"] != 2 {
		t.Errorf("after the VIPs swapped names: b4 under web6 %d (present %v), want 1, and 2 kept under web4: %v", got, ok, m)
	}
}

func TestStatsWhileRunning(t *testing.T) {
	// Stats runs on another goroutine while the worker pushes and picks
	// up new snapshots; the race detector checks the publication.
	st := snapshot.NewStore(testSnapshot())
	e := newEncap(tunnelGRE)
	e.Source4, e.Source6 = "198.51.100.1", "2001:db8:ffff::1"
	if err := e.Provision(testContext(st, 0, 1)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			metrics(e)
		}
	}()
	for i := range 200 {
		if i%50 == 0 {
			st.Publish(snapshot.New(uint64(i), 42, testVIPs(), testReals()))
		}
		start(e)
		e.Push(0, newPacket(cat(ethIn4, inner4In), 256, 14, realB4))
		end(e)
	}
	<-done
	if got := metrics(e)["xlb_encap_backend_packets_total,vip=web4,backend=b4"]; got != 200 {
		t.Errorf("b4 packets %d, want 200 (kept across snapshots of the same real)", got)
	}
}

// TestWarnNoSource: worker 0 warns, once per change of the list, of the
// backends whose family has no outer source (here IPv6 backends without
// source6, which an IPv4 VIP's pool can hold too); other workers stay
// silent, and a configuration with both sources warns of nothing.
func TestWarnNoSource(t *testing.T) {
	for _, tc := range []struct {
		name           string
		source6        string
		worker         int
		want, wantNone string
	}{
		{"no source6", "", 0, "backends=\"b6 2001:db8:b::2, c6 2001:db8:b::3\"", ""},
		{"no source6, worker 1", "", 1, "", "level"},
		{"both sources", "2001:db8:ffff::1", 0, "", "level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			st := snapshot.NewStore(testSnapshot())
			ctx := testContext(st, tc.worker, 2)
			ctx.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			e := newEncap(tunnelGRE)
			e.Source4, e.Source6 = "198.51.100.1", tc.source6
			if err := e.Provision(ctx); err != nil {
				t.Fatal(err)
			}
			start(e)
			end(e)
			// A new generation with the same backends: nothing new to say.
			st.Publish(snapshot.New(2, 42, testVIPs(), testReals()))
			start(e)
			end(e)
			got := logs.String()
			if tc.want != "" && (!strings.Contains(got, tc.want) || strings.Count(got, "\n") != 1 || !strings.Contains(got, "encap.nosource")) {
				t.Errorf("log:\n%s\nwant one line naming %s and encap.nosource", got, tc.want)
			}
			if tc.wantNone != "" && strings.Contains(got, tc.wantNone) {
				t.Errorf("log:\n%s\nwant nothing", got)
			}
		})
	}
}

// TestMoveL2 checks moveL2 against copy for every link-layer length and a
// source before, overlapping or after the destination's end.
func TestMoveL2(t *testing.T) {
	for l3 := 0; l3 <= 30; l3++ {
		for from := 0; from <= 44; from++ {
			d := make([]byte, from+l3+8)
			for i := range d {
				d[i] = byte(i + 1)
			}
			want := slices.Clone(d)
			copy(want[:l3], want[from:from+l3])
			moveL2(d, from, l3)
			if !bytes.Equal(d, want) {
				t.Fatalf("l3 %d from %d: % x, want % x", l3, from, d, want)
			}
		}
	}
}

// TestOuterFollowsReloads pushes packets to every real ID, current epoch
// and last, after each of a series of reloads that share chunks of reals
// with the last snapshot, shrink the reals and grow them again, and change
// a real's address, epoch or family: the per-real outer headers Push keeps
// (adoptOuter) must give what encap gives from the snapshot's reals.
func TestOuterFollowsReloads(t *testing.T) {
	real4 := func(id, ep uint32, addr string) snapshot.Real {
		r := testReal(id, 0, fmt.Sprint("r", id), addr)
		r.Epoch = ep
		return r
	}
	var reals []snapshot.Real
	for id := range uint32(300) {
		reals = append(reals, real4(id, 1, fmt.Sprintf("10.2.%d.%d", id>>8, id&255)))
	}
	reals[0] = snapshot.Real{}
	vips := testVIPs()
	st := snapshot.NewStore(snapshot.New(1, 42, vips, reals))
	edit := func(n int, set ...snapshot.Real) {
		ed := st.Load().Reals.Edit(n)
		for _, r := range set {
			ed.Set(r.ID, r)
		}
		s := st.Load()
		st.Publish(snapshot.NewFrom(s.Generation+1, 42, vips, ed.Done()))
	}
	e, ref := newEncap(tunnelGRE), newEncap(tunnelGRE)
	for _, x := range []*Encap{e, ref} {
		x.Source4, x.Source6 = "198.51.100.1", "2001:db8:ffff::1"
		if err := x.Provision(testContext(st, 0, 1)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string) {
		t.Helper()
		start(e)
		start(ref)
		for id := range uint32(700) {
			for ep := uint32(1); ep <= 3; ep++ {
				p := newPacket(cat(ethIn4, inner4In), 64, 14, id)
				q := newPacket(cat(ethIn4, inner4In), 64, 14, id)
				p.Epoch, q.Epoch = ep, ep
				port := e.Push(0, p)
				var want int
				if r := ref.snap.Real(id, ep); r != nil {
					want = ref.encap(q, r, q.Data())
				} else {
					want = ref.drop(q, dropNoBackend)
				}
				if port != want || p.Reason != q.Reason || !bytes.Equal(p.Data(), q.Data()) {
					t.Fatalf("%s: real %d epoch %d: port %d reason %v, want port %d reason %v\n% x\n% x",
						step, id, ep, port, p.Reason, want, q.Reason, p.Data(), q.Data())
				}
			}
		}
		end(e)
		end(ref)
	}
	check("first")
	edit(300, real4(7, 2, "10.9.9.7")) // chunk 0 new, chunk 1 shared
	check("address and epoch")
	edit(300, real4(280, 3, "2001:db8:c::1")) // chunk 1 new, chunk 0 shared
	check("family")
	edit(200) // chunk 1 gone
	check("shrunk")
	edit(600, real4(280, 2, "10.9.9.28"), real4(599, 1, "10.9.9.99")) // chunks 1 and 2 new
	check("grown")
}
