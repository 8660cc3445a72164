package encap

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/pipeline"
)

// bigPacket returns an Ethernet frame holding a client's UDP datagram to
// the VIP of its family, n bytes of IP, with DF set (IPv4).
func bigPacket(t testing.TB, family, n int) []byte {
	t.Helper()
	var ip []byte
	if family == 4 {
		ip = slices.Clone(inner4In)
		binary.BigEndian.PutUint16(ip[2:], uint16(n))
		ip = append(ip, make([]byte, n-len(ip))...)
		binary.BigEndian.PutUint16(ip[24:], uint16(n-20))
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], rfc1071(ip[:20]))
		return cat(ethIn4, ip)
	}
	ip = slices.Clone(inner6In)
	binary.BigEndian.PutUint16(ip[4:], uint16(n-40))
	ip = append(ip, make([]byte, n-len(ip))...)
	binary.BigEndian.PutUint16(ip[44:], uint16(n-40))
	return cat(ethIn6, ip)
}

// TestTooBigReplies checks the ICMP reply to a packet too big to
// encapsulate, decoded with gopacket: from the VIP to the client, the MTU
// left after the overhead, the quote, the checksums.
func TestTooBigReplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tunnel  tunnel
		family  int
		backend uint32
		mtu     int
		wantMTU int
		quote   int
	}{
		{"gre4 in gre4", tunnelGRE, 4, realB4, 1500, 1476, 28},
		{"gre4 in gre6", tunnelGRE, 4, realB6, 1500, 1456, 28},
		{"ipip4 in ipip4", tunnelIPIP, 4, realB4, 1500, 1480, 28},
		{"ipip4 in ipip6", tunnelIPIP, 4, realB6, 1500, 1460, 28},
		{"gre6 in gre6", tunnelGRE, 6, realC6, 1500, 1456, 1232},
		{"gre6 in gre4", tunnelGRE, 6, realC4, 1500, 1476, 1232},
		{"ipip6 in ipip6", tunnelIPIP, 6, realC6, 1500, 1460, 1232},
		{"ipip6 in ipip4", tunnelIPIP, 6, realC4, 1500, 1480, 1232},
		// 1300 - 44 is below IPv6's minimum MTU: 1280 is announced.
		{"gre6 under 1280", tunnelGRE, 6, realC6, 1300, 1280, 1232},
		// 100 - 44 is below 68, which RFC 1191 hosts ignore.
		{"gre4 under 68", tunnelGRE, 4, realB6, 100, 68, 28},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEncap(t, tc.tunnel, func(e *Encap) { e.MTU = tc.mtu })
			frame := bigPacket(t, tc.family, 1500)
			p := newPacket(frame, 256, 14, tc.backend)
			if port := e.Push(0, p); port != portICMP {
				t.Fatalf("port %d reason %v, want icmp", port, p.Reason)
			}
			end(e)
			out := p.Data()
			if !bytes.Equal(out[0:6], frame[6:12]) || !bytes.Equal(out[6:12], frame[0:6]) || !bytes.Equal(out[12:14], frame[12:14]) {
				t.Errorf("Ethernet header % x, want the input's with MACs swapped", out[:14])
			}
			pkt := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
			var quoted []byte
			if tc.family == 4 {
				ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				icmp, _ := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
				if ip == nil || icmp == nil {
					t.Fatalf("not ICMP in IPv4: %v", pkt)
				}
				if ip.SrcIP.String() != "192.0.2.10" || ip.DstIP.String() != "203.0.113.7" || ip.Protocol != layers.IPProtocolICMPv4 ||
					ip.Flags != 0 || ip.TTL != 64 || int(ip.Length) != 20+8+tc.quote || ip.TOS != 0xc0 {
					t.Errorf("IPv4 header %+v", ip)
				}
				if rfc1071(out[14:34]) != 0 {
					t.Errorf("IPv4 header checksum")
				}
				if icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || int(icmp.Seq) != tc.wantMTU || icmp.Id != 0 {
					t.Errorf("ICMP %v id %d next-hop MTU %d, want 3/4 MTU %d", icmp.TypeCode, icmp.Id, icmp.Seq, tc.wantMTU)
				}
				if rfc1071(out[34:]) != 0 {
					t.Errorf("ICMP checksum")
				}
				quoted = out[42:]
			} else {
				ip, _ := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				icmp, _ := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
				if ip == nil || icmp == nil {
					t.Fatalf("not ICMPv6: %v", pkt)
				}
				if ip.SrcIP.String() != "2001:db8:a::10" || ip.DstIP.String() != "2001:db8:c::7" || ip.HopLimit != 64 ||
					int(ip.Length) != 8+tc.quote || ip.TrafficClass != 0 || ip.FlowLabel != 0 {
					t.Errorf("IPv6 header %+v", ip)
				}
				if len(out)-14 != 1280 {
					t.Errorf("reply of %d bytes, want 1280", len(out)-14)
				}
				if icmp.TypeCode != layers.CreateICMPv6TypeCode(2, 0) {
					t.Errorf("ICMPv6 %v, want Packet Too Big", icmp.TypeCode)
				}
				if got := binary.BigEndian.Uint32(out[58:]); int(got) != tc.wantMTU {
					t.Errorf("MTU %d, want %d", got, tc.wantMTU)
				}
				pseudo := cat(out[22:54], []byte{0, 0, byte((len(out) - 54) >> 8), byte(len(out) - 54), 0, 0, 0, 58})
				if rfc1071(cat(pseudo, out[54:])) != 0 {
					t.Errorf("ICMPv6 checksum")
				}
				quoted = out[62:]
			}
			// The quote is the packet as it arrived: TTL not decremented.
			if !bytes.Equal(quoted, frame[14:14+tc.quote]) {
				t.Errorf("quote differs from the invoking packet")
			}
			if int(p.L3) != 14 || int(p.L4) != 14+map[bool]int{true: 20, false: 40}[tc.family == 4] {
				t.Errorf("L3 %d L4 %d", p.L3, p.L4)
			}
		})
	}
}

// TestTooBigWithoutReply covers the packets no ICMP error is sent about:
// they are dropped as too big, unmodified.
func TestTooBigWithoutReply(t *testing.T) {
	v4 := bigPacket(t, 4, 1500)
	noDF := slices.Clone(v4)
	noDF[14+6] = 0
	frag := slices.Clone(v4)
	frag[14+7] = 0xb9 // DF, offset 185 * 8
	icmpErr := slices.Clone(v4)
	icmpErr[14+9], icmpErr[14+20] = 1, 3 // ICMP destination unreachable
	echo := slices.Clone(icmpErr)
	echo[14+20] = 8 // echo request: answered
	v6 := bigPacket(t, 6, 1500)
	frag6 := slices.Clone(v6)
	frag6[14+6] = 44
	frag6[14+42], frag6[14+43] = 0x05, 0x01 // offset 160 * 8, M
	first6 := slices.Clone(frag6)
	first6[14+42], first6[14+43] = 0, 1 // first fragment: answered
	icmp6Err := slices.Clone(v6)
	icmp6Err[14+6], icmp6Err[14+40] = 58, 1
	for _, tc := range []struct {
		name    string
		frame   []byte
		backend uint32
		flags   uint8
		want    int // port
		policy  string
	}{
		{"DF clear", noDF, realB4, 0, portBad, policyDrop},
		{"non-first fragment", frag, realB4, pipeline.FlowFragment, portBad, ""},
		{"ICMP error", icmpErr, realB4, 0, portBad, ""},
		{"ICMP error by flag", v4, realB4, pipeline.FlowICMPError, portBad, ""},
		{"ICMP echo", echo, realB4, 0, portICMP, ""},
		{"non-first IPv6 fragment", frag6, realC6, pipeline.FlowFragment, portBad, ""},
		{"first IPv6 fragment", first6, realC6, pipeline.FlowFragment, portICMP, ""},
		{"ICMPv6 error", icmp6Err, realC6, 0, portBad, ""},
	} {
		e := newTestEncap(t, tunnelGRE, func(e *Encap) {
			e.MTU = 1500
			if tc.policy != "" {
				e.TooBigNoDF = tc.policy
			}
		})
		p := newPacket(tc.frame, 256, 14, tc.backend)
		p.Flow.Flags = tc.flags
		port := e.Push(0, p)
		if port != tc.want {
			t.Errorf("%s: port %d, want %d", tc.name, port, tc.want)
		}
		if port == portBad && (p.Reason != dropReasons[dropTooBig] || !bytes.Equal(p.Data(), tc.frame)) {
			t.Errorf("%s: reason %v, or the packet was modified", tc.name, p.Reason)
		}
	}
}

// TestICMPRateLimit checks the worker's token bucket on the batch clock:
// a burst, then icmp_rate per second, the rest dropped with their reason,
// and the counters by type.
func TestICMPRateLimit(t *testing.T) {
	e := newTestEncap(t, tunnelGRE, func(e *Encap) { e.MTU = 1500; e.ICMPRate = 2; e.ICMPBurst = 3 })
	end(e)
	frames := [2][]byte{bigPacket(t, 4, 1500), bigPacket(t, 6, 1500)}
	backends := [2]uint32{realB4, realC6}
	run := func(now int64, n int) (sent, limited int) {
		e.view.StartBatch(now)
		e.StartBatch(now)
		for i := range n {
			p := newPacket(frames[i%2], 256, 14, backends[i%2])
			switch port := e.Push(0, p); {
			case port == portICMP:
				sent++
			case port == portBad && p.Reason == dropReasons[dropICMPRateLimited]:
				limited++
			default:
				t.Fatalf("port %d reason %v", port, p.Reason)
			}
		}
		end(e)
		return sent, limited
	}
	const s = int64(1e9)
	for _, step := range []struct {
		now              int64
		n, sent, limited int
	}{
		{10 * s, 5, 3, 2},         // the burst
		{10*s + s/4, 1, 0, 1},     // half a token
		{10*s + s/2, 2, 1, 1},     // one token
		{20 * s, 10, 3, 7},        // refilled to the burst, no more
		{20*s + s/2 - 1, 1, 0, 1}, // one nanosecond short
	} {
		sent, limited := run(step.now, step.n)
		if sent != step.sent || limited != step.limited {
			t.Errorf("at %d ns: %d sent, %d rate-limited; want %d, %d", step.now, sent, limited, step.sent, step.limited)
		}
	}
	m := metrics(e)
	// Each batch alternates IPv4 and IPv6 from its first packet.
	if m["xlb_encap_icmp_sent_total,type=frag_needed"] != 5 || m["xlb_encap_icmp_sent_total,type=packet_too_big"] != 2 {
		t.Errorf("counters %v, want 5 frag_needed and 2 packet_too_big", m)
	}
}

// TestTooBigAllocs: the reply is built in the packet's own frame.
func TestTooBigAllocs(t *testing.T) {
	frames := [2][]byte{bigPacket(t, 4, 1500), bigPacket(t, 6, 1500)}
	backends := [2]uint32{realB4, realC6}
	e := newTestEncap(t, tunnelGRE, func(e *Encap) { e.MTU = 1500 })
	buf := make([]byte, 2048)
	var p pipeline.Packet
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		f := frames[i%2]
		start(e)
		copy(buf[256:], f)
		p.SetFrame(buf, 256, 256+len(f))
		p.L3, p.Backend, p.Epoch = 14, backends[i%2], epoch
		i++
		e.Push(0, &p)
		end(e)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per reply", allocs)
	}
}

// BenchmarkTooBig measures building a reply: Fragmentation Needed for a
// full-size IPv4 packet, Packet Too Big (1280 bytes checksummed) for IPv6.
func BenchmarkTooBig(b *testing.B) {
	for _, bc := range []struct {
		name    string
		family  int
		backend uint32
	}{{"frag_needed", 4, realB4}, {"packet_too_big", 6, realC6}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newTestEncap(b, tunnelGRE, func(e *Encap) { e.MTU = 1500; e.ICMPRate = 1e6; e.ICMPBurst = 1e6 })
			frame := bigPacket(b, bc.family, 1500)
			buf := make([]byte, 2048)
			var p pipeline.Packet
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%1000 == 0 {
					e.bucket.tokens = e.bucket.max
				}
				copy(buf[256:], frame)
				p.SetFrame(buf, 256, 256+len(frame))
				p.L3, p.Backend, p.Epoch = 14, bc.backend, epoch
				if e.Push(0, &p) != portICMP {
					b.Fatal("no reply")
				}
			}
		})
	}
}
