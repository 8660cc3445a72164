package nat

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/elements/internal/csum/csumtest"
	"github.com/xlbproject/xlb/pipeline"
)

// errorAbout is the ICMP error from sends about ip (an IP packet), to
// its source: Port Unreachable (ICMPv6 Destination Unreachable, port)
// quoting ip whole.
func errorAbout(from net.IP, ip []byte) []byte {
	if ip[0]>>4 == 4 {
		return frame(from, net.IP(ip[12:16]), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(ip))
	}
	return frame(from, net.IP(ip[8:24]), &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}, append(gopacket.Payload{0, 0, 0, 0}, ip...))
}

// TestFullNATICMPError: over IPv4 and IPv6, ICMP errors about a flow
// FullNAT sent cross it both ways (RFC 5508 §4.2). A router's
// Fragmentation Needed / Packet Too Big to the VIP about a reply reaches
// the backend from the flow's source, quoting backend:port -> source:port
// (the reply as the backend sent it), its MTU kept; the backend's Port
// Unreachable to the source about the flow's packet reaches the client
// from the VIP, quoting the client's packet as the client sent it, byte
// for byte. Every checksum, the quote's and ICMPv6's pseudo-header
// included, is right. An error about a flow with no source is dropped as
// fullnat.icmp_unknown (from the client's side) or
// conntrack.reply_unknown (from the backend's), and an echo as
// fullnat.icmp.
func TestFullNATICMPError(t *testing.T) {
	h := newFullHarness(t, nil)
	toVIP4, _, toVIP6, _ := icmpErrors()
	for _, tc := range []struct {
		family int
		vip    netip.Addr
		id     uint32
		real   net.IP
		bport  string
		toVIP  []byte
		echo   gopacket.SerializableLayer
	}{
		{4, vip4, realMapped, net.IP{10, 0, 0, 22}, "8080", toVIP4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}},
		{6, vip6, realV6, net.ParseIP("2001:db8:1::23"), "8443", toVIP6, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}},
	} {
		in := tcpTo(tc.family, tc.vip.AsSlice(), 40000, 80)
		p, port := h.push(append([]byte(nil), in...), tc.id, t0)
		if port != portOut {
			t.Fatalf("IPv%d: port %d reason %v", tc.family, port, p.Reason)
		}
		sent := append([]byte(nil), p.Data()...)
		source, _ := endpoints(t, sent)
		real := net.JoinHostPort(tc.real.String(), tc.bport)

		// From the client's side: to the backend, from the source.
		p, port = h.push(append([]byte(nil), tc.toVIP...), 0, t0+1)
		if port != portOut {
			t.Fatalf("IPv%d error to the VIP: port %d reason %v", tc.family, port, p.Reason)
		}
		d := p.Data()
		if err := csumtest.Check(d); err != nil {
			t.Errorf("IPv%d error to the VIP: %v", tc.family, err)
		}
		src, dst := addrs(d)
		if sa, _, _ := net.SplitHostPort(source); src != sa || dst != tc.real.String() {
			t.Errorf("IPv%d error to the VIP: %s > %s, want from the source %s to %s", tc.family, src, dst, source, tc.real)
		}
		qs, qd := checkQuote(t, p)
		if qs != real || qd != source {
			t.Errorf("IPv%d error to the VIP: quotes %s > %s, want %s > %s", tc.family, qs, qd, real, source)
		}
		if !bytes.Equal(d[p.L4+4:p.L4+8], tc.toVIP[p.L4+4:p.L4+8]) {
			t.Errorf("IPv%d error to the VIP: MTU % x, was % x", tc.family, d[p.L4+4:p.L4+8], tc.toVIP[p.L4+4:p.L4+8])
		}

		// From the backend's side: to the client, from the VIP.
		p, port = h.push(errorAbout(tc.real, sent[14:]), 0, t0+1)
		if port != portOut {
			t.Fatalf("IPv%d error from the backend: port %d reason %v", tc.family, port, p.Reason)
		}
		d = p.Data()
		if err := csumtest.Check(d); err != nil {
			t.Errorf("IPv%d error from the backend: %v", tc.family, err)
		}
		if src, dst := addrs(d); src != tc.vip.String() || dst != client[tc.family].String() {
			t.Errorf("IPv%d error from the backend: %s > %s, want from the VIP to the client", tc.family, src, dst)
		}
		checkQuote(t, p)
		if q := d[p.L4+8:]; !bytes.Equal(q, in[14:14+len(q)]) {
			t.Errorf("IPv%d error from the backend: quotes\n% x\nwant the client's packet\n% x", tc.family, q, in[14:14+len(q)])
		}

		// Errors about no flow FullNAT knows, and an echo.
		router := net.IP(tc.toVIP[14+12 : 14+16])
		if tc.family == 6 {
			router = net.IP(tc.toVIP[14+8 : 14+24])
		}
		other := errorAbout(router, frame(tc.vip.AsSlice(), client[tc.family], &layers.TCP{SrcPort: 80, DstPort: 40001, ACK: true})[14:])
		if p, port = h.push(other, tc.id, t0+1); port != portBad || p.Reason.String() != "fullnat.icmp_unknown" {
			t.Errorf("IPv%d error about an unknown flow: port %d reason %v", tc.family, port, p.Reason)
		}
		unsent := append([]byte(nil), sent...)
		unsent[len(unsent)-20+1]++ // the source port: one no flow holds
		forged := errorAbout(tc.real, unsent[14:])
		if p, port = h.push(forged, 0, t0+1); port != -1 || p.Reason.String() != "conntrack.reply_unknown" {
			t.Errorf("IPv%d backend's error about an unknown source: port %d reason %v", tc.family, port, p.Reason)
		}
		// An echo reaches FullNAT only for a VIP of every port, which
		// the test snapshot has not: it is handed to it directly.
		p = &h.pkt
		echo := frame(client[tc.family], tc.vip.AsSlice(), tc.echo, gopacket.Payload{0, 7, 0, 1})
		p.SetFrame(echo, 0, len(echo))
		if port = h.parse.Push(0, p); port != 0 {
			t.Fatalf("IPv%d echo: parse port %d reason %v", tc.family, port, p.Reason)
		}
		p.VIP, p.Backend, p.Epoch = h.snap.Real(tc.id, epoch).VIP, tc.id, epoch
		h.view.StartBatch(t0 + 1)
		h.fn.StartBatch(t0 + 1)
		port = h.fn.Push(0, p)
		h.fn.EndBatch()
		h.view.EndBatch()
		if port != portBad || p.Reason.String() != "fullnat.icmp" {
			t.Errorf("IPv%d echo: port %d reason %v", tc.family, port, p.Reason)
		}
	}
}

// addrs are a frame's IP addresses.
func addrs(d []byte) (src, dst string) {
	s, ds := gopacket.NewPacket(d, layers.LayerTypeEthernet, gopacket.Default).NetworkLayer().NetworkFlow().Endpoints()
	return s.String(), ds.String()
}

// checkQuote returns the endpoints of the TCP segment quoted whole in
// ICMP error p, whose IPv4 header checksum and TCP checksum it checks.
func checkQuote(t *testing.T, p *pipeline.Packet) (src, dst string) {
	t.Helper()
	q := p.Data()[p.L4+8:]
	et := []byte{0x86, 0xdd}
	if p.Flow.Family == 4 {
		et = []byte{8, 0}
	}
	f := append(append(make([]byte, 12), et...), q...)
	if err := csumtest.Check(f); err != nil {
		t.Errorf("the quote: %v", err)
	}
	return endpoints(t, f)
}

// TestFullNATICMPZeroAllocs: translating ICMP errors both ways allocates
// nothing.
func TestFullNATICMPZeroAllocs(t *testing.T) {
	h := newFullHarness(t, nil)
	toVIP4, _, _, _ := icmpErrors()
	p, _ := h.push(tcpTo(4, vip4.AsSlice(), 40000, 80), realMapped, t0)
	fromBackend := errorAbout(net.IP{10, 0, 0, 22}, append([]byte(nil), p.Data()[14:]...))
	buf := make([]byte, 256)
	if n := testing.AllocsPerRun(1000, func() {
		for _, f := range [][]byte{toVIP4, fromBackend} {
			copy(buf, f)
			if p, port := h.push(buf[:len(f)], realMapped, t0); port != portOut {
				t.Fatalf("port %d reason %v", port, p.Reason)
			}
		}
	}); n != 0 {
		t.Errorf("%v allocations per pair of errors", n)
	}
}
