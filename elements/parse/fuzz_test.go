package parse

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// FuzzParse5Tuple feeds arbitrary frames to the parser. It must never
// panic, never write the frame, never lengthen it, and leave either by out
// with consistent offsets, family and hash, or by bad with a reason.
func FuzzParse5Tuple(f *testing.F) {
	f.Add(synPadded)  // IPv4 TCP SYN with Ethernet padding
	f.Add(fragNeeded) // ICMP fragmentation needed quoting VIP -> client TCP
	f.Add(qinqUDP6)   // QinQ-tagged IPv6 UDP
	f.Add(laterFrag6) // IPv6 hop-by-hop + later fragment
	f.Add([]byte{})   // empty frame
	// Ethernet + IPv4 header with IHL 15 and nothing after it.
	f.Add(cat(ether(etherTypeIPv4), []byte{0x4f, 0, 0, 60}))
	// IPv6 whose hop-by-hop header claims 2048 bytes.
	f.Add(cat(ether(etherTypeIPv6), ipv6(client6, vip6, protoHopByHop, []byte{protoTCP, 255, 0, 0, 0, 0, 0, 0})))
	// Packet Too Big quoting a packet with a chain of destination options.
	f.Add(cat(ether(etherTypeIPv6), ipv6(router6, vip6, protoICMPv6, icmp(2, 0, 1280,
		ipv6(vip6, client6, protoDestOpts, ext6(protoDestOpts, 0), ext6(protoTCP, 0), tcp(443, 40000)[:8])))))
	// Every table case, good and malformed.
	for _, tc := range parseCases() {
		f.Add(tc.frame)
	}

	// Fast-path bounds: a UDP datagram of exactly 28 bytes, a TCP segment
	// one byte short, a total length one past the frame, IHL 6.
	f.Add(cat(ether(etherTypeIPv4), ipv4(client4, vip4, protoUDP, 0, nil, udp(1, 53, 0))))
	f.Add(cat(ether(etherTypeIPv4), ipv4(client4, vip4, protoTCP, 0, nil, tcp(40000, 443)[:19])))
	long := cat(ether(etherTypeIPv4), ipv4(client4, vip4, protoTCP, 0, nil, tcp(40000, 443)))
	long[ethHeaderLen+3]++
	f.Add(long)
	f.Add(cat(ether(etherTypeIPv4), ipv4(client4, vip4, protoTCP, 0, []byte{1, 1, 1, 0}, tcp(40000, 443))))

	e := newTestElement(testSeed)
	// slow sees every frame, as e does, but through pushFrame alone:
	// Push's fast path, PushBatch, must decide each exactly as pushFrame
	// does.
	slow := newTestElement(testSeed)
	f.Fuzz(func(t *testing.T, frame []byte) {
		q := pipelinetest.Packet(bytes.Clone(frame))
		slowPort := slow.pushFrame(q)
		// FragRedirect's quick test never misses a fragment.
		var fr fragment
		if _, r := parseFrame(pipelinetest.Packet(bytes.Clone(frame)), &fr, &noVIPs); r == pipeline.ReasonNone && fr.kind != notFragment && !mayBeFragment(frame) {
			t.Fatalf("mayBeFragment false for a fragment: %x", frame)
		}
		p := pipelinetest.Packet(frame)
		port := e.Push(0, p)
		if port != slowPort || p.Reason != q.Reason || p.Len() != q.Len() ||
			(port == portOut && (p.L3 != q.L3 || p.L4 != q.L4 || p.Flow != q.Flow || p.Hash != q.Hash)) || e.counts != slow.counts {
			t.Fatalf("Push and pushFrame differ on %x: port %d/%d, reason %v/%v, len %d/%d, L3 %d/%d, L4 %d/%d, flow %+v/%+v",
				frame, port, slowPort, p.Reason, q.Reason, p.Len(), q.Len(), p.L3, q.L3, p.L4, q.L4, p.Flow, q.Flow)
		}
		d := p.Data()
		if len(d) > len(frame) || !bytes.Equal(d, frame[:len(d)]) {
			t.Fatalf("frame changed: %x -> %x", frame, d)
		}
		switch port {
		case portBad:
			if p.Reason == pipeline.ReasonNone {
				t.Fatal("left by bad without a reason")
			}
		case portOut:
			fl := &p.Flow
			if p.Reason != pipeline.ReasonNone {
				t.Fatalf("left by out with reason %v", p.Reason)
			}
			if tags := int(p.L3) - ethHeaderLen; tags != 0 && tags != vlanTagLen && tags != 2*vlanTagLen {
				t.Fatalf("L3 %d is not after Ethernet and up to 2 VLAN tags", p.L3)
			}
			if p.L3 >= p.L4 || int(p.L4) > len(d) {
				t.Fatalf("L3 %d, L4 %d, Len %d: want L3 < L4 <= Len", p.L3, p.L4, len(d))
			}
			src, dst := netip.AddrFrom16(fl.Src), netip.AddrFrom16(fl.Dst)
			switch fl.Family {
			case 4:
				if !src.Is4In6() || !dst.Is4In6() {
					t.Fatalf("IPv4 flow with addresses %v, %v not IPv4-mapped", src, dst)
				}
			case 6:
			default:
				t.Fatalf("family %d", fl.Family)
			}
			if fl.Flags&^(pipeline.FlowFragment|pipeline.FlowICMPError|pipeline.FlowLaterFragment) != 0 {
				t.Fatalf("unknown flags %#x", fl.Flags)
			}
			if fl.Flags&pipeline.FlowFragment != 0 && (fl.SrcPort != 0 || fl.DstPort != 0) {
				t.Fatalf("fragment with ports %d, %d", fl.SrcPort, fl.DstPort)
			}
			if p.Hash != HashFlow(testSeed, fl) {
				t.Fatalf("hash %#x is not HashFlow of the flow", p.Hash)
			}
		default:
			t.Fatalf("port %d", port)
		}
	})
}
