package all

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenConfig is the default graph; %[1]s is its source, %[2]s the
// encapsulation element type, %[3]s its sink (goldenPcap: capture files)
// and %[4]s elements a test declares after MaglevSelect's and before the
// encapsulation's. Backends of both families are in the pool so that
// every inner family meets both outer families.
const goldenConfig = `
hash_seed = 7

pipeline {
  %[1]s
  element "Parse5Tuple" "parse" {}
  element "ConnTrack" "ct" {
    capacity = 1024
  }
  element "MaglevSelect" "sel" {}
  %[4]s
  element "%[2]s" "encap" {
    source4 = "192.0.2.1"
    source6 = "2001:db8::1"
  }
  %[3]s
  element "Discard" "drop" {}
  connect = default_graph()
}

vip "tcp4" {
  address = "192.0.2.10"
  ports   = [80]
  pool    = "p"
}
vip "udp4" {
  address  = "192.0.2.10"
  protocol = "udp"
  ports    = [9000]
  pool     = "p"
}
vip "tcp6" {
  address = "2001:db8::10"
  ports   = [80]
  pool    = "p"
}
vip "udp6" {
  address  = "2001:db8::10"
  protocol = "udp"
  ports    = [9000]
  pool     = "p"
}

pool "p" {
  backend "b4-1" {
    address = "198.51.100.1"
  }
  backend "b4-2" {
    address = "198.51.100.2"
    weight  = 2
  }
  backend "b6-1" {
    address = "2001:db8:1::1"
  }
}
`

// goldenPcap are the source and the sink of the golden files.
var goldenPcap = [2]string{`element "RxPcap" "rx" {
    file = "input.pcap"
  }`, `element "TxPcap" "tx" {
    file = "output.pcap"
  }`}

// goldenInput writes a deterministic capture for one client family: TCP
// flows of several packets, UDP queries, a datagram in two fragments, an
// ICMP error quoting a flow's reply, a packet to no VIP and a truncated one.
func goldenInput(t testing.TB, path string, family int) {
	t.Helper()
	c := createCapture(t, path, family)
	defer c.close()
	write, eth, ip, ser := c.write, c.eth, c.ip, c.ser
	vip, other := net.ParseIP("192.0.2.10"), net.ParseIP("192.0.2.99")
	client := func(i int) net.IP { return net.IPv4(203, 0, 113, byte(i)) }
	if family == 6 {
		vip, other = net.ParseIP("2001:db8::10"), net.ParseIP("2001:db8::99")
		client = func(i int) net.IP { return net.ParseIP(fmt.Sprintf("2001:db8:c::%x", i)) }
	}
	// 12 TCP flows, 3 packets each, interleaved.
	for pkt := range 3 {
		for i := 1; i <= 12; i++ {
			tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + i), DstPort: 80, Seq: 1000, Window: 1024}
			switch pkt {
			case 0:
				tcp.SYN = true
			case 1:
				tcp.ACK = true
			case 2:
				tcp.ACK, tcp.PSH = true, true
			}
			var payload []byte
			if pkt == 2 {
				payload = []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n")
			}
			write(ser(eth(), ip(client(i), vip, layers.IPProtocolTCP), tcp, gopacket.Payload(payload)))
		}
	}
	// 6 UDP datagrams (to port 9000: gopacket decodes no protocol there).
	for i := 1; i <= 6; i++ {
		udp := &layers.UDP{SrcPort: layers.UDPPort(50000 + i), DstPort: 9000}
		write(ser(eth(), ip(client(100+i), vip, layers.IPProtocolUDP), udp, gopacket.Payload([]byte("query"))))
	}
	// A UDP datagram in two fragments: both must reach the same backend.
	whole := ser(eth(), ip(client(200), vip, layers.IPProtocolUDP), &layers.UDP{SrcPort: 5353, DstPort: 9000}, gopacket.Payload(bytes.Repeat([]byte{0xab}, 24)))
	body := whole[14+map[bool]int{true: 40, false: 20}[family == 6]:]
	for k, part := range [][]byte{body[:16], body[16:]} {
		if family == 6 {
			frag := []byte{17, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef}              // next header UDP, reserved, offset/M, identification
			off := uint16(k*16) | map[bool]uint16{true: 1, false: 0}[k == 0] // offset in 8-byte units <<3 | M
			frag[2], frag[3] = byte(off>>8), byte(off)
			h := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment, SrcIP: client(200), DstIP: vip}
			write(ser(eth(), h, gopacket.Payload(append(frag, part...))))
		} else {
			h := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: client(200), DstIP: vip, Id: 0x4242, FragOffset: uint16(k * 2)}
			if k == 0 {
				h.Flags = layers.IPv4MoreFragments
			}
			write(ser(eth(), h, gopacket.Payload(part)))
		}
	}
	// An ICMP error from a router on the path back, quoting the reply of
	// TCP flow 1 (vip:80 -> client(1):40001): it must follow flow 1.
	quoted := ser(ip(vip, client(1), layers.IPProtocolTCP), &layers.TCP{SrcPort: 80, DstPort: 40001, ACK: true, Window: 1})
	router := net.ParseIP("198.51.100.254")
	if family == 6 {
		router = net.ParseIP("2001:db8:ffff::1")
		write(ser(eth(), ip(router, vip, layers.IPProtocolICMPv6),
			&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)},
			gopacket.Payload(append([]byte{0, 0, 5, 0}, quoted[:48]...))))
	} else {
		write(ser(eth(), ip(router, vip, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), Seq: 1400},
			gopacket.Payload(quoted[:28])))
	}
	// To an address that is no VIP, and a frame cut inside the IP header.
	write(ser(eth(), ip(client(1), other, layers.IPProtocolTCP), &layers.TCP{SrcPort: 1, DstPort: 80, SYN: true}))
	trunc := ser(eth(), ip(client(1), vip, layers.IPProtocolTCP), &layers.TCP{SrcPort: 2, DstPort: 80, SYN: true})
	write(trunc[:14+12])
}

// capture writes a test's input capture, one client family, one
// millisecond apart from a fixed date.
type capture struct {
	t      testing.TB
	f      *os.File
	w      *pcapgo.Writer
	now    time.Time
	family int
}

func createCapture(t testing.TB, path string, family int) *capture {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	return &capture{t: t, f: f, w: w, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), family: family}
}

func (c *capture) close() { c.f.Close() }

func (c *capture) write(data []byte) {
	c.now = c.now.Add(time.Millisecond)
	if err := c.w.WritePacket(gopacket.CaptureInfo{Timestamp: c.now, CaptureLength: len(data), Length: len(data)}, data); err != nil {
		c.t.Fatal(err)
	}
}

func (c *capture) eth() *layers.Ethernet {
	et := layers.EthernetTypeIPv4
	if c.family == 6 {
		et = layers.EthernetTypeIPv6
	}
	return &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et}
}

func (c *capture) ip(src, dst net.IP, proto layers.IPProtocol) gopacket.SerializableLayer {
	if c.family == 6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src, DstIP: dst, TrafficClass: 0x28}
	}
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst, Flags: layers.IPv4DontFragment, TOS: 0x28}
}

// ser serializes ls with lengths and checksums computed.
func (c *capture) ser(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	var network gopacket.NetworkLayer
	for _, l := range ls {
		if n, ok := l.(gopacket.NetworkLayer); ok {
			network = n
		}
		if cs, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok && network != nil {
			_ = cs.SetNetworkLayerForChecksum(network)
		}
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		c.t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// TestGolden runs one capture per client family through the default graph
// with each encapsulation and compares the output capture byte for byte and
// the counters line for line with testdata/golden. Run with -update to
// rewrite them after an intended change, and review the diff.
func TestGolden(t *testing.T) {
	for _, family := range []int{4, 6} {
		for _, enc := range []string{"GREEncap", "IPIPEncap"} {
			name := fmt.Sprintf("ipv%d-%s", family, strings.ToLower(strings.TrimSuffix(enc, "Encap")))
			t.Run(name, func(t *testing.T) {
				runGolden(t, name, family, enc, fmt.Sprintf(goldenConfig, goldenPcap[0], enc, goldenPcap[1], ""))
			})
		}
	}
}

// TestGoldenNoSource6: the IPv4 capture with GRE, the encapsulation given
// source4 only. The pool's IPv6 backend gets no packet: those Maglev
// chooses for it are dropped as encap.nosource (the element warns of it
// in its log), the rest leave as in ipv4-gre.
func TestGoldenNoSource6(t *testing.T) {
	src := fmt.Sprintf(goldenConfig, goldenPcap[0], "GREEncap", goldenPcap[1], "")
	noSource6 := strings.Replace(src, `source6 = "2001:db8::1"`, "", 1)
	if noSource6 == src {
		t.Fatal("goldenConfig no longer sets source6; update this test")
	}
	runGolden(t, "ipv4-gre-nosource6", 4, "GREEncap", noSource6)
}

// runGolden runs the capture of one client family through the graph of
// src and compares the output capture byte for byte and the counters line
// for line with testdata/golden/name.*.
func runGolden(t *testing.T, name string, family int, enc, src string) {
	dir := t.TempDir()
	goldenInput(t, filepath.Join(dir, "input.pcap"), family)
	out, counters, ctl := runCapture(t, dir, src)
	checkOutput(t, filepath.Join(dir, "input.pcap"), out, enc, ctl.Snapshot())
	compareGoldenFiles(t, name, out, counters)
}

// runCapture runs the graph of src (RxPcap on dir/input.pcap, TxPcap to
// dir/output.pcap) to the capture's end, checks that every packet was
// counted once, and returns the output capture, the counters as text and
// the controller.
func runCapture(t *testing.T, dir, src string) (out, counters []byte, ctl *control.Controller) {
	t.Helper()
	rt, ctl := startGraph(t, filepath.Join(dir, "golden.hcl"), src, pipeline.Options{})
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Closing flushes the output capture.
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	stats := rt.Stats()
	checkCounted(t, stats)
	var text bytes.Buffer
	if err := pipeline.WriteText(&text, stats); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(filepath.Join(dir, "output.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	return out, text.Bytes(), ctl
}

// compareGoldenFiles compares a run's output capture and counters with
// testdata/golden/name.pcap and name.counters.
func compareGoldenFiles(t *testing.T, name string, out, counters []byte) {
	t.Helper()
	compareGolden(t, filepath.Join("testdata", "golden", name+".pcap"), out)
	compareGolden(t, filepath.Join("testdata", "golden", name+".counters"), counters)
}

// startGraph loads src as the file at path, applies its service to a new
// controller and starts its graph over the controller's store (added to
// opts.Values), to be closed when the test ends.
func startGraph(tb testing.TB, path, src string, opts pipeline.Options) (*pipeline.Runtime, *control.Controller) {
	tb.Helper()
	g, ctl := loadGraph(tb, path, src)
	opts.Values = snapshot.WithStore(opts.Values, ctl.Store())
	rt, err := g.Start(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Close() })
	return rt, ctl
}

// loadGraph loads src as the file at path and applies its service to a new
// controller; the caller starts the graph over the controller's store.
func loadGraph(tb testing.TB, path, src string) (*pipeline.Graph, *control.Controller) {
	tb.Helper()
	f, diags := xhcl.Load(path, []byte(src), xhcl.Options{})
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	ctl := control.New()
	if err := ctl.Apply(&f.Service); err != nil {
		tb.Fatal(err)
	}
	return f.Graph, ctl
}

// checkCounted checks that every packet a source put in the graph was
// counted once: consumed by one element or dropped by one, the drops in
// the engine's counter only, under the element that dropped them.
func checkCounted(t *testing.T, stats []pipeline.ElementStats) {
	t.Helper()
	var in, out uint64
	for _, s := range stats {
		if len(s.In) == 0 {
			for _, p := range s.Out {
				in += p.Packets
			}
		}
		in += s.Emitted
		out += s.Consumed + s.Dropped
		var dropped uint64
		for _, m := range s.Metrics {
			switch {
			case m.Name == pipeline.DropMetric && len(m.Labels) == 2 && m.Labels[0] == (pipeline.Label{Name: "element", Value: s.Name}):
				dropped += m.Value
			case strings.Contains(m.Name, "drop"):
				t.Errorf("%s reports %s: drops are the engine's to count", s.Name, m.Name)
			}
		}
		if dropped != s.Dropped {
			t.Errorf("%s: %d drops by reason, %d in all", s.Name, dropped, s.Dropped)
		}
	}
	if in == 0 || out != in {
		t.Errorf("%d packets entered the graph and %d were consumed or dropped", in, out)
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./elements/all -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		if strings.HasSuffix(path, ".counters") {
			t.Errorf("%s differs:\n--- got\n%s--- want\n%s", path, got, want)
		} else {
			t.Errorf("%s differs (%d bytes, want %d); decode both with tshark -r to compare", path, len(got), len(want))
		}
	}
}

// checkOutput decodes every output packet with gopacket, independently of
// the elements: the outer header goes from the configured source to a
// backend of the pool, the tunnel protocol is the configured one, the
// encapsulated packet is the input packet with its TTL one lower, and every
// packet of one flow (fragments and ICMP errors included) reaches the same
// backend.
func checkOutput(t *testing.T, inputPath string, out []byte, enc string, snap *snapshot.Snapshot) {
	t.Helper()
	backends := map[netip.Addr]bool{}
	for _, r := range snap.Reals.All() {
		backends[r.Addr] = true
	}
	inputs := map[string]bool{} // inner IP packets with TTL decremented, as written
	inF, err := os.Open(inputPath)
	if err != nil {
		t.Fatal(err)
	}
	defer inF.Close()
	ir, err := pcapgo.NewReader(inF)
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, _, err := ir.ReadPacketData()
		if err != nil {
			break
		}
		if len(data) < 14+20 {
			continue
		}
		ipPkt := append([]byte(nil), data[14:]...)
		// Cut the Ethernet minimum-size padding: it is not part of the
		// datagram, and xlb does not forward it.
		if ipPkt[0]>>4 == 4 {
			ipPkt = ipPkt[:min(len(ipPkt), int(ipPkt[2])<<8|int(ipPkt[3]))]
		} else {
			ipPkt = ipPkt[:min(len(ipPkt), 40+(int(ipPkt[4])<<8|int(ipPkt[5])))]
		}
		if ipPkt[0]>>4 == 4 {
			ipPkt[8]--
			// The checksum moves by +0x0100 in one's complement.
			sum := uint32(ipPkt[10])<<8 | uint32(ipPkt[11])
			sum += 0x0100
			sum = (sum & 0xffff) + sum>>16
			ipPkt[10], ipPkt[11] = byte(sum>>8), byte(sum)
		} else {
			ipPkt[7]--
		}
		inputs[string(ipPkt)] = true
	}

	r, err := pcapgo.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	flowBackend := map[string]netip.Addr{}
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		n++
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if el := pkt.ErrorLayer(); el != nil {
			t.Fatalf("packet %d does not decode: %v", n, el.Error())
		}
		var outerSrc, outerDst netip.Addr
		var tunnelProto layers.IPProtocol
		var inner []byte
		switch l := pkt.Layers()[1].(type) {
		case *layers.IPv4:
			outerSrc, _ = netip.AddrFromSlice(l.SrcIP.To4())
			outerDst, _ = netip.AddrFromSlice(l.DstIP.To4())
			tunnelProto, inner = l.Protocol, l.Payload
			if want := ipv4Checksum(data[14 : 14+int(l.IHL)*4]); want != 0 {
				t.Errorf("packet %d: outer IPv4 checksum is wrong", n)
			}
		case *layers.IPv6:
			outerSrc, _ = netip.AddrFromSlice(l.SrcIP)
			outerDst, _ = netip.AddrFromSlice(l.DstIP)
			tunnelProto, inner = l.NextHeader, l.Payload
		default:
			t.Fatalf("packet %d: layer 2 is %T", n, l)
		}
		if !backends[outerDst] {
			t.Errorf("packet %d goes to %v, which is no backend", n, outerDst)
		}
		if want := map[bool]string{true: "192.0.2.1", false: "2001:db8::1"}[outerDst.Is4()]; outerSrc.String() != want {
			t.Errorf("packet %d: outer source %v, want %s", n, outerSrc, want)
		}
		if enc == "GREEncap" {
			if tunnelProto != layers.IPProtocolGRE {
				t.Fatalf("packet %d: protocol %v, want GRE", n, tunnelProto)
			}
			inner = inner[4:]
		} else if tunnelProto != layers.IPProtocolIPv4 && tunnelProto != layers.IPProtocolIPv6 {
			t.Fatalf("packet %d: protocol %v, want IPIP", n, tunnelProto)
		}
		if !inputs[string(inner)] {
			t.Errorf("packet %d: the encapsulated packet is not an input packet with its TTL decremented", n)
		}
		key := flowKey(inner)
		if prev, ok := flowBackend[key]; ok && prev != outerDst {
			t.Errorf("packet %d: flow %s went to %v and now to %v", n, key, prev, outerDst)
		}
		flowBackend[key] = outerDst
	}
	if n == 0 {
		t.Fatal("no packet in the output")
	}
}

// flowKey names the client flow an inner packet belongs to: the 5-tuple,
// except that fragments, which carry no ports after the first, are grouped
// by their addresses (TestGoldenFragments checks that they follow their
// flow) and ICMP errors use the quoted packet's flow, reversed.
func flowKey(inner []byte) string {
	pkt := gopacket.NewPacket(inner, map[bool]gopacket.LayerType{true: layers.LayerTypeIPv4, false: layers.LayerTypeIPv6}[inner[0]>>4 == 4], gopacket.Default)
	var src, dst net.IP
	switch l := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		src, dst = l.SrcIP, l.DstIP
		if l.Flags&layers.IPv4MoreFragments != 0 || l.FragOffset != 0 {
			return fmt.Sprintf("frag %v>%v", src, dst)
		}
	case *layers.IPv6:
		src, dst = l.SrcIP, l.DstIP
		if pkt.Layer(layers.LayerTypeIPv6Fragment) != nil {
			return fmt.Sprintf("frag %v>%v", src, dst)
		}
	}
	if tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		if pkt.Layer(layers.LayerTypeICMPv4) != nil || pkt.Layer(layers.LayerTypeICMPv6) != nil {
			// Quoted reply vip:80 -> client:port: the client flow is the reverse.
			q := pkt.Layers()
			for i := len(q) - 1; i >= 0; i-- {
				if n, ok := q[i].(gopacket.NetworkLayer); ok {
					f := n.NetworkFlow()
					return fmt.Sprintf("tcp %v:%d>%v:%d", f.Dst(), tcp.DstPort, f.Src(), tcp.SrcPort)
				}
			}
		}
		return fmt.Sprintf("tcp %v:%d>%v:%d", src, tcp.SrcPort, dst, tcp.DstPort)
	}
	if udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		return fmt.Sprintf("udp %v:%d>%v:%d", src, udp.SrcPort, dst, udp.DstPort)
	}
	return fmt.Sprintf("other %v>%v", src, dst)
}

// ipv4Checksum returns the one's complement sum of a header including its
// checksum field: 0 when the checksum is right.
func ipv4Checksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
