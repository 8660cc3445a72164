// Command gen writes examples/offline/input.pcap, the deterministic capture
// the offline example replays: client traffic to three VIPs mixed with
// fragments, ICMP errors, traffic to no VIP and malformed frames, so that
// every path of the default graph and most drop reasons are exercised.
//
//	go run ./examples/offline/gen -o examples/offline/input.pcap
//
// The file is classic pcap (draft-ietf-opsawg-pcap), little-endian,
// microsecond timestamps, Ethernet, snap length 65535. Packets are 1 ms
// apart from 2026-01-01T00:00:00Z; addresses, ports, sequence numbers and
// the interleaving of flows come from a fixed seed, so the output is the
// same byte for byte on every run (TestInputUpToDate checks the committed
// file). Every frame goes from 02:00:00:00:00:01 (the router) to
// 02:00:00:00:00:02 (xlb); frames are zero-padded to the 60-byte Ethernet
// minimum (gopacket's Ethernet serialization does it), as a NIC receives
// them, except where a malformed case cuts them shorter.
//
// VIPs: 192.0.2.10 tcp/80 and udp/53, 2001:db8::10 tcp/80. Clients:
// 203.0.113.0/24 and 2001:db8:c::/64, source ports 1024-65535. What it
// writes, in packets:
//
//	tcp4     800  200 TCP flows to 192.0.2.10:80: SYN, ACK, request, FIN
//	tcp6     320   80 TCP flows to [2001:db8::10]:80, the same four packets
//	udp4     240  120 DNS flows to 192.0.2.10:53: a query and its retry
//	frag4     36   12 UDP datagrams to 192.0.2.10:53 of 3 IPv4 fragments;
//	               every fourth arrives last fragment first
//	frag6     16    8 UDP datagrams to [2001:db8::10]:53 of 2 fragments
//	               (Fragment extension header); 2001:db8::10 serves udp/53
//	               only if the configuration declares it
//	icmp4      4  fragmentation needed (type 3 code 4, MTU 1400) from
//	               198.51.100.1 to 192.0.2.10, quoting 192.0.2.10:80 ->
//	               client of an existing tcp4 flow (two quote 8 bytes of
//	               TCP, two the full header and some data)
//	icmp6      4  packet too big (MTU 1280) from 2001:db8:ffff::1 to
//	               2001:db8::10, quoting [2001:db8::10]:80 -> client of an
//	               existing tcp6 flow
//	novip     30  to 192.0.2.99 (no VIP): 10 TCP flows (SYN, ACK) and 10
//	               DNS queries
//	malformed 16  two of each: truncated Ethernet header (10 bytes);
//	               truncated IPv4 header (12 bytes); IP version 5 under
//	               EtherType IPv4; IHL 4; IPv4 total length 1500 with 60
//	               captured; TCP header of 10 bytes; IPv6 with a chain of
//	               16 Destination Options headers before TCP; ARP request
//	               for 192.0.2.10
//	total   1466
//
// In the malformed IPv4 cases the header checksum is recomputed after the
// damage, so each frame has exactly one thing wrong.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Categories, in the order they are reported.
var categories = []string{"tcp4", "tcp6", "udp4", "frag4", "frag6", "icmp4", "icmp6", "novip", "malformed"}

var (
	start     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	routerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	xlbMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	vip4      = net.IP{192, 0, 2, 10}
	novip4    = net.IP{192, 0, 2, 99}
	vip6      = net.ParseIP("2001:db8::10")
	router4   = net.IP{198, 51, 100, 1}
	router6   = net.ParseIP("2001:db8:ffff::1")
)

// flow is a sequence of packets that must go out in order; packets of
// different flows interleave.
type flow struct {
	cat   string
	kind  string // which malformed case
	pkts  [][]byte
	next  int
	after *flow // not started before after has sent a packet
}

type generator struct {
	rng   *rand.Rand
	ports map[string]bool // client address and port in use
}

func main() {
	out := flag.String("o", "input.pcap", "output file")
	flag.Parse()
	f, err := os.Create(*out)
	if err == nil {
		var counts map[string]int
		counts, err = generate(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			total := 0
			for _, c := range categories {
				fmt.Printf("%-9s %5d\n", c, counts[c])
				total += counts[c]
			}
			fmt.Printf("%-9s %5d\n", "total", total)
			fmt.Printf("wrote %s\n", *out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// record is one packet of the capture.
type record struct {
	cat  string
	kind string
	ts   time.Time
	data []byte
}

// generate writes the capture to w and returns the packet count per
// category.
func generate(w io.Writer) (map[string]int, error) {
	bw := bufio.NewWriter(w)
	pw := pcapgo.NewWriter(bw)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, r := range build() {
		ci := gopacket.CaptureInfo{Timestamp: r.ts, CaptureLength: len(r.data), Length: len(r.data)}
		if err := pw.WritePacket(ci, r.data); err != nil {
			return nil, err
		}
		counts[r.cat]++
	}
	return counts, bw.Flush()
}

// build returns the capture's packets in order.
func build() []record {
	g := &generator{rng: rand.New(rand.NewPCG(2026, 1)), ports: map[string]bool{}}

	var flows []*flow
	var tcp4, tcp6 []*flow
	var quotes4, quotes6 [][]byte // the VIP -> client packet each ICMP error quotes
	for range 200 {
		f, q := g.tcpFlow(false)
		tcp4, quotes4 = append(tcp4, f), append(quotes4, q)
	}
	for range 80 {
		f, q := g.tcpFlow(true)
		tcp6, quotes6 = append(tcp6, f), append(quotes6, q)
	}
	flows = append(flows, tcp4...)
	flows = append(flows, tcp6...)
	for range 120 {
		flows = append(flows, g.dnsFlow("udp4", vip4, 2))
	}
	for i := range 12 {
		flows = append(flows, g.frag4(i, i%4 == 3))
	}
	for i := range 8 {
		flows = append(flows, g.frag6(i))
	}
	for range 10 {
		flows = append(flows, g.novipTCP())
		flows = append(flows, g.dnsFlow("novip", novip4, 1))
	}
	flows = append(flows, g.malformed()...)
	g.rng.Shuffle(len(flows), func(i, j int) { flows[i], flows[j] = flows[j], flows[i] })

	// ICMP errors follow the flow they quote: queued right behind it and
	// held until it has started.
	for i := range 4 {
		n := g.rng.IntN(len(tcp4))
		flows = insertAfter(flows, tcp4[n], g.icmp4(quotes4[n], i < 2))
		n = g.rng.IntN(len(tcp6))
		flows = insertAfter(flows, tcp6[n], g.icmp6(quotes6[n]))
	}

	var out []record
	const window = 16 // flows in progress at once
	var active []*flow
	ts := start
	for len(flows) > 0 || len(active) > 0 {
		for len(active) < window && len(flows) > 0 {
			active = append(active, flows[0])
			flows = flows[1:]
		}
		i := g.rng.IntN(len(active))
		f := active[i]
		if f.after != nil && f.after.next == 0 {
			for j, a := range active {
				if a == f.after {
					i, f = j, a
				}
			}
		}
		out = append(out, record{f.cat, f.kind, ts, f.pkts[f.next]})
		ts = ts.Add(time.Millisecond)
		if f.next++; f.next == len(f.pkts) {
			active = append(active[:i], active[i+1:]...)
		}
	}
	return out
}

func insertAfter(flows []*flow, ref, f *flow) []*flow {
	f.after = ref
	for i, x := range flows {
		if x == ref {
			return append(flows[:i+1], append([]*flow{f}, flows[i+1:]...)...)
		}
	}
	panic("gen: flow to quote not queued")
}

// client returns an unused client address and source port.
func (g *generator) client(v6 bool) (net.IP, uint16) {
	for {
		var ip net.IP
		if v6 {
			ip = net.ParseIP("2001:db8:c::")
			binary.BigEndian.PutUint64(ip[8:], g.rng.Uint64())
		} else {
			ip = net.IP{203, 0, 113, byte(1 + g.rng.IntN(254))}
		}
		port := uint16(1024 + g.rng.IntN(65536-1024))
		key := fmt.Sprint(ip, port)
		if !g.ports[key] {
			g.ports[key] = true
			return ip, port
		}
	}
}

// serialize builds a frame from router to xlb with lengths and checksums
// filled in.
func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...)
	if err != nil {
		panic(err) // the layers below are fixed: a failure is a bug here
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: routerMAC, DstMAC: xlbMAC, EthernetType: t}
}

func ip4(src, dst net.IP, proto layers.IPProtocol, id uint16) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 60, Protocol: proto, SrcIP: src, DstIP: dst, Id: id, Flags: layers.IPv4DontFragment}
}

func ip6(src, dst net.IP, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 60, NextHeader: next, SrcIP: src, DstIP: dst}
}

// tcpPacket builds a client -> VIP TCP segment.
func tcpPacket(v6 bool, src, dst net.IP, id uint16, tcp *layers.TCP, payload []byte) []byte {
	var l3 gopacket.SerializableLayer
	var e *layers.Ethernet
	if v6 {
		n := ip6(src, dst, layers.IPProtocolTCP)
		tcp.SetNetworkLayerForChecksum(n)
		l3, e = n, eth(layers.EthernetTypeIPv6)
	} else {
		n := ip4(src, dst, layers.IPProtocolTCP, id)
		tcp.SetNetworkLayerForChecksum(n)
		l3, e = n, eth(layers.EthernetTypeIPv4)
	}
	return serialize(e, l3, tcp, gopacket.Payload(payload))
}

// tcpFlow is SYN, ACK, a request and FIN from a new client to VIP port 80.
// It also returns a full-size segment the backend would send back to the
// client (VIP as source, direct server return), for ICMP errors to quote.
func (g *generator) tcpFlow(v6 bool) (*flow, []byte) {
	vip, cat := vip4, "tcp4"
	if v6 {
		vip, cat = vip6, "tcp6"
	}
	cip, cport := g.client(v6)
	isn, srvISN := g.rng.Uint32(), g.rng.Uint32()
	id := uint16(g.rng.Uint32())
	req := fmt.Appendf(nil, "GET /item/%d HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: xlb-gen\r\n\r\n", g.rng.IntN(10000))
	mss := uint16(1460)
	if v6 {
		mss = 1440
	}
	seg := func(seq, ack uint32, flags string, payload []byte, n uint16) []byte {
		t := &layers.TCP{SrcPort: layers.TCPPort(cport), DstPort: 80, Seq: seq, Ack: ack, Window: 502,
			SYN: flags == "S", ACK: flags != "S", PSH: flags == "P", FIN: flags == "F"}
		if t.SYN {
			t.Window = 64240
			t.Options = []layers.TCPOption{
				{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: binary.BigEndian.AppendUint16(nil, mss)},
				{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
				{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
			}
		}
		return tcpPacket(v6, cip, vip, id+n, t, payload)
	}
	f := &flow{cat: cat, pkts: [][]byte{
		seg(isn, 0, "S", nil, 0),
		seg(isn+1, srvISN+1, "A", nil, 1),
		seg(isn+1, srvISN+1, "P", req, 2),
		seg(isn+1+uint32(len(req)), srvISN+1, "F", nil, 3),
	}}
	// The reply the ICMP error is about: 80 -> client, a full MSS of data.
	reply := &layers.TCP{SrcPort: 80, DstPort: layers.TCPPort(cport), Seq: srvISN + 1, Ack: isn + 1 + uint32(len(req)), ACK: true, PSH: true, Window: 509}
	data := make([]byte, mss)
	var l3 gopacket.SerializableLayer
	if v6 {
		n := ip6(vip, cip, layers.IPProtocolTCP)
		reply.SetNetworkLayerForChecksum(n)
		l3 = n
	} else {
		n := ip4(vip, cip, layers.IPProtocolTCP, uint16(g.rng.Uint32()))
		reply.SetNetworkLayerForChecksum(n)
		l3 = n
	}
	q := serialize(l3, reply, gopacket.Payload(data))
	return f, q
}

// dnsFlow is n identical DNS queries (the first and its retries) from one
// client port to dst:53.
func (g *generator) dnsFlow(cat string, dst net.IP, n int) *flow {
	cip, cport := g.client(false)
	dns := &layers.DNS{ID: uint16(g.rng.Uint32()), RD: true, Questions: []layers.DNSQuestion{{
		Name: fmt.Appendf(nil, "host%d.example.com", g.rng.IntN(1000)), Type: layers.DNSTypeA, Class: layers.DNSClassIN}}}
	f := &flow{cat: cat}
	id := uint16(g.rng.Uint32())
	for i := range n {
		udp := &layers.UDP{SrcPort: layers.UDPPort(cport), DstPort: 53}
		ip := ip4(cip, dst, layers.IPProtocolUDP, id+uint16(i))
		udp.SetNetworkLayerForChecksum(ip)
		f.pkts = append(f.pkts, serialize(eth(layers.EthernetTypeIPv4), ip, udp, dns))
	}
	return f
}

// udpDatagram returns the UDP header and payload of a size-byte datagram,
// checksummed against the given network layer.
func udpDatagram(l3 interface {
	gopacket.NetworkLayer
	gopacket.SerializableLayer
}, cport uint16, size int, fill byte) []byte {
	udp := &layers.UDP{SrcPort: layers.UDPPort(cport), DstPort: 53}
	udp.SetNetworkLayerForChecksum(l3)
	payload := make([]byte, size-8)
	for i := range payload {
		payload[i] = fill + byte(i)
	}
	b := serialize(l3, udp, gopacket.Payload(payload))
	return b[len(b)-size:]
}

// frag4 is a 3000-byte UDP datagram in fragments of 1480, 1480 and 40
// bytes of IP payload (MTU 1500).
func (g *generator) frag4(i int, reverse bool) *flow {
	cip, cport := g.client(false)
	id := uint16(g.rng.Uint32())
	n := ip4(cip, vip4, layers.IPProtocolUDP, id)
	dgram := udpDatagram(n, cport, 3000, byte(i))
	f := &flow{cat: "frag4"}
	for off := 0; off < len(dgram); off += 1480 {
		end := min(off+1480, len(dgram))
		ip := ip4(cip, vip4, layers.IPProtocolUDP, id)
		ip.Flags, ip.FragOffset = 0, uint16(off/8)
		if end < len(dgram) {
			ip.Flags = layers.IPv4MoreFragments
		}
		f.pkts = append(f.pkts, serialize(eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(dgram[off:end])))
	}
	if reverse {
		for a, b := 0, len(f.pkts)-1; a < b; a, b = a+1, b-1 {
			f.pkts[a], f.pkts[b] = f.pkts[b], f.pkts[a]
		}
	}
	return f
}

// frag6 is a 2000-byte UDP datagram in two fragments, the first carrying
// 1232 bytes (IPv6 minimum MTU 1280, less the IPv6 and Fragment headers).
func (g *generator) frag6(i int) *flow {
	cip, cport := g.client(true)
	id := g.rng.Uint32()
	n := ip6(cip, vip6, layers.IPProtocolUDP)
	dgram := udpDatagram(n, cport, 2000, byte(i))
	f := &flow{cat: "frag6"}
	for off := 0; off < len(dgram); off += 1232 {
		end := min(off+1232, len(dgram))
		// Fragment header (RFC 8200 section 4.5): next header, reserved,
		// offset in 8-byte units << 3 | M flag, identification.
		fh := []byte{byte(layers.IPProtocolUDP), 0, 0, 0, 0, 0, 0, 0}
		m := uint16(0)
		if end < len(dgram) {
			m = 1
		}
		binary.BigEndian.PutUint16(fh[2:], uint16(off/8)<<3|m)
		binary.BigEndian.PutUint32(fh[4:], id)
		ip := ip6(cip, vip6, layers.IPProtocolIPv6Fragment)
		f.pkts = append(f.pkts, serialize(eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(append(fh, dgram[off:end]...))))
	}
	return f
}

// icmp4 is a fragmentation-needed error quoting q (an IPv4 packet from the
// VIP): its IP header and 8 bytes of TCP (short), or its IP and TCP
// headers and 8 bytes of data.
func (g *generator) icmp4(q []byte, short bool) *flow {
	n := 28
	if !short {
		n = 48
	}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded),
		Seq: 1400} // the second half of the rest-of-header word is the next-hop MTU
	ip := ip4(router4, vip4, layers.IPProtocolICMPv4, uint16(g.rng.Uint32()))
	ip.Flags = 0
	return &flow{cat: "icmp4", pkts: [][]byte{serialize(eth(layers.EthernetTypeIPv4), ip, icmp, gopacket.Payload(q[:n]))}}
}

// icmp6 is a packet-too-big error quoting q (an IPv6 packet from the VIP):
// its IPv6 header, TCP header and 64 bytes of data.
func (g *generator) icmp6(q []byte) *flow {
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
	ip := ip6(router6, vip6, layers.IPProtocolICMPv6)
	icmp.SetNetworkLayerForChecksum(ip)
	body := binary.BigEndian.AppendUint32(nil, 1280) // MTU
	body = append(body, q[:40+20+64]...)
	return &flow{cat: "icmp6", pkts: [][]byte{serialize(eth(layers.EthernetTypeIPv6), ip, icmp, gopacket.Payload(body))}}
}

// novipTCP is a SYN and an ACK to 192.0.2.99:80, an address with no VIP.
func (g *generator) novipTCP() *flow {
	cip, cport := g.client(false)
	isn := g.rng.Uint32()
	f := &flow{cat: "novip"}
	for i, syn := range []bool{true, false} {
		t := &layers.TCP{SrcPort: layers.TCPPort(cport), DstPort: 80, Seq: isn + uint32(i), SYN: syn, ACK: !syn, Window: 64240}
		f.pkts = append(f.pkts, tcpPacket(false, cip, novip4, uint16(i), t, nil))
	}
	return f
}

// malformed returns two single-packet flows of each malformed case.
func (g *generator) malformed() []*flow {
	var out []*flow
	for range 2 {
		cip, cport := g.client(false)
		syn := func() []byte { // a valid IPv4 SYN to the VIP, 60 bytes with padding
			t := &layers.TCP{SrcPort: layers.TCPPort(cport), DstPort: 80, Seq: g.rng.Uint32(), SYN: true, Window: 64240}
			ip := ip4(cip, vip4, layers.IPProtocolTCP, uint16(g.rng.Uint32()))
			t.SetNetworkLayerForChecksum(ip)
			return serialize(eth(layers.EthernetTypeIPv4), ip, t)
		}
		// Truncated Ethernet: 10 of the 14 header bytes.
		truncEth := syn()[:10]
		// Truncated IPv4 header: 12 of its 20 bytes.
		truncIP := syn()[:14+12]
		// IP version 5 under EtherType IPv4.
		badVer := syn()
		badVer[14] = 5<<4 | 5
		fixIPv4Checksum(badVer)
		// IHL 4: a header shorter than the 20-byte minimum.
		badIHL := syn()
		badIHL[14] = 4<<4 | 4
		fixIPv4Checksum(badIHL)
		// Total length 1500 in a 60-byte frame.
		long := syn()
		binary.BigEndian.PutUint16(long[14+2:], 1500)
		fixIPv4Checksum(long)
		// TCP header cut to 10 bytes, IP total length consistent with it.
		truncTCP := syn()[:14+20+10]
		binary.BigEndian.PutUint16(truncTCP[14+2:], 30)
		fixIPv4Checksum(truncTCP)

		for _, m := range []struct {
			kind string
			pkt  []byte
		}{
			{"truncated-ethernet", truncEth},
			{"truncated-ipv4", truncIP},
			{"bad-version", badVer},
			{"bad-ihl", badIHL},
			{"length-beyond-capture", long},
			{"truncated-tcp", truncTCP},
			{"ipv6-deep-extension-chain", g.deepIPv6()},
			{"arp", arp()},
		} {
			out = append(out, &flow{cat: "malformed", kind: m.kind, pkts: [][]byte{m.pkt}})
		}
	}
	return out
}

// deepIPv6 is a SYN to [2001:db8::10]:80 behind 16 Destination Options
// headers, more than any parser should walk.
func (g *generator) deepIPv6() []byte {
	cip, cport := g.client(true)
	t := &layers.TCP{SrcPort: layers.TCPPort(cport), DstPort: 80, Seq: g.rng.Uint32(), SYN: true, Window: 64240}
	ip := ip6(cip, vip6, layers.IPProtocolTCP)
	t.SetNetworkLayerForChecksum(ip)
	seg := serialize(t)
	var ext []byte
	for i := range 16 {
		next := byte(layers.IPProtocolIPv6Destination)
		if i == 15 {
			next = byte(layers.IPProtocolTCP)
		}
		// next header, length 0 (8 bytes), PadN option of 4 bytes
		ext = append(ext, next, 0, 1, 4, 0, 0, 0, 0)
	}
	return serialize(eth(layers.EthernetTypeIPv6), ip6(cip, vip6, layers.IPProtocolIPv6Destination), gopacket.Payload(append(ext, seg...)))
}

// arp is a broadcast who-has 192.0.2.10 tell 192.0.2.1.
func arp() []byte {
	e := &layers.Ethernet{SrcMAC: routerMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: routerMAC, SourceProtAddress: []byte{192, 0, 2, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: vip4}
	return serialize(e, a)
}

// fixIPv4Checksum recomputes the IPv4 header checksum of an Ethernet frame
// over the header length its IHL claims (at least 20 bytes).
func fixIPv4Checksum(f []byte) {
	h := f[14:]
	n := max(int(h[0]&0x0f)*4, 20)
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i+1 < n; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}
