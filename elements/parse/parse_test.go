package parse

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// withFlags returns f with flags set.
func withFlags(f pipeline.Flow, flags uint8) pipeline.Flow {
	f.Flags = flags
	return f
}

// set returns a copy of b with b[off:] overwritten by vals.
func set(b []byte, off int, vals ...byte) []byte {
	c := bytes.Clone(b)
	copy(c[off:], vals)
	return c
}

// icmpRest packs an echo identifier and sequence number.
func icmpRest(id, seq uint16) uint32 { return uint32(id)<<16 | uint32(seq) }

type parseCase struct {
	name  string
	frame []byte
	// on out:
	l3, l4 uint16
	len    int // data length after parsing (padding trimmed)
	flow   pipeline.Flow
	// on bad:
	reason pipeline.Reason
}

func parseCases() []parseCase {
	const (
		frag = pipeline.FlowFragment
		icmE = pipeline.FlowICMPError
	)
	e4, e6 := ether(etherTypeIPv4), ether(etherTypeIPv6)
	clientTCP4 := flow(client4, vip4, 40000, 443, protoTCP)
	clientTCP6 := flow(client6, vip6, 40000, 443, protoTCP)
	tcp4 := cat(e4, ipv4(client4, vip4, protoTCP, 0, nil, tcp(40000, 443)))
	tcp6 := cat(e6, ipv6(client6, vip6, protoTCP, tcp(40000, 443)))
	nineDestOpts := func(last uint8) []byte {
		var b []byte
		for i := range 9 {
			nh := uint8(protoDestOpts)
			if i == 8 {
				nh = last
			}
			b = append(b, ext6(nh, 0)...)
		}
		return b
	}

	return []parseCase{
		// Hand-written fixtures.
		{name: "hand/ipv4-tcp-syn-padded", frame: synPadded, l3: 14, l4: 34, len: 54, flow: clientTCP4},
		{name: "hand/icmp-frag-needed", frame: fragNeeded, l3: 14, l4: 34, len: 70, flow: withFlags(clientTCP4, icmE)},
		{name: "hand/qinq-ipv6-udp", frame: qinqUDP6, l3: 22, l4: 62, len: 74, flow: flow(client6, vip6, 54321, 53, protoUDP)},
		{name: "hand/ipv6-later-fragment-without-first", frame: laterFrag6, reason: reasonFragNoFirst},

		// IPv4.
		{name: "ipv4-tcp", frame: tcp4, l3: 14, l4: 34, len: 54, flow: clientTCP4},
		{name: "ipv4-udp", frame: cat(e4, ipv4(client4, vip4, protoUDP, 0, nil, udp(5353, 53, 10))),
			l3: 14, l4: 34, len: 52, flow: flow(client4, vip4, 5353, 53, protoUDP)},
		{name: "ipv4-options-tcp", frame: cat(e4, ipv4(client4, vip4, protoTCP, 0, []byte{1, 1, 1, 0}, tcp(40000, 443))),
			l3: 14, l4: 38, len: 58, flow: clientTCP4},
		{name: "ipv4-vlan-tcp", frame: cat(ether(etherTypeIPv4, etherTypeVLAN, 5), ipv4(client4, vip4, protoTCP, 0, nil, tcp(40000, 443))),
			l3: 18, l4: 38, len: 58, flow: clientTCP4},
		{name: "ipv4-sctp", frame: cat(e4, ipv4(client4, vip4, protoSCTP, 0, nil, sctp(5000, 3868))),
			l3: 14, l4: 34, len: 46, flow: flow(client4, vip4, 5000, 3868, protoSCTP)},
		{name: "ipv4-icmp-echo-request", frame: cat(e4, ipv4(client4, vip4, protoICMP, 0, nil, icmp(8, 0, icmpRest(7, 1)))),
			l3: 14, l4: 34, len: 42, flow: flow(client4, vip4, 7, 7, protoICMP)},
		{name: "ipv4-icmp-echo-reply", frame: cat(e4, ipv4(vip4, client4, protoICMP, 0, nil, icmp(0, 0, icmpRest(7, 1)))),
			l3: 14, l4: 34, len: 42, flow: flow(vip4, client4, 7, 7, protoICMP)},
		{name: "ipv4-icmp-timestamp", frame: cat(e4, ipv4(client4, vip4, protoICMP, 0, nil, icmp(13, 0, 0, make([]byte, 12)))),
			l3: 14, l4: 34, len: 54, flow: flow(client4, vip4, 0, 0, protoICMP)},
		{name: "ipv4-gre", frame: cat(e4, ipv4(client4, vip4, 47, 0, nil, []byte{0, 0, 0x08, 0})),
			l3: 14, l4: 34, len: 38, flow: flow(client4, vip4, 0, 0, 47)},
		{name: "ipv4-icmpv6-number", frame: cat(e4, ipv4(client4, vip4, protoICMPv6, 0, nil, icmp(128, 0, 0))),
			l3: 14, l4: 34, len: 42, flow: flow(client4, vip4, 0, 0, protoICMPv6)},
		{name: "ipv4-first-fragment", frame: cat(e4, ipv4(client4, vip4, protoTCP, 0x2000, nil, tcp(40000, 443), make([]byte, 12))),
			l3: 14, l4: 34, len: 66, flow: clientTCP4},
		{name: "ipv4-later-fragment-without-first", frame: cat(e4, ipv4(client4, vip4, protoTCP, 4, nil, make([]byte, 8))),
			reason: reasonFragNoFirst},
		{name: "ipv4-first-fragment-truncated-tcp", frame: cat(e4, ipv4(client4, vip4, protoTCP, 0x2000, nil, tcp(40000, 443)[:16])),
			reason: reasonTruncatedL4},
		{name: "ipv4-df-not-fragment", frame: cat(e4, ipv4(client4, vip4, protoTCP, 0x4000, nil, tcp(40000, 443))),
			l3: 14, l4: 34, len: 54, flow: clientTCP4},
		{name: "ipv4-time-exceeded-udp", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(11, 0, 0, ipv4(vip4, client4, protoUDP, 0, nil, udp(53, 5353, 0))))),
			l3: 14, l4: 34, len: 70, flow: withFlags(flow(client4, vip4, 5353, 53, protoUDP), icmE)},
		{name: "ipv4-unreachable-quoting-echo-reply", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 1, 0, ipv4(vip4, client4, protoICMP, 0, nil, icmp(0, 0, icmpRest(7, 1)))))),
			l3: 14, l4: 34, len: 70, flow: withFlags(flow(client4, vip4, 7, 7, protoICMP), icmE)},
		{name: "ipv4-unreachable-quoting-later-fragment", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 1, 0, ipv4(vip4, client4, protoTCP, 185, nil, make([]byte, 8))))),
			l3: 14, l4: 34, len: 70, flow: withFlags(flow(client4, vip4, 0, 0, protoTCP), icmE|frag)},
		{name: "ipv4-unreachable-quoting-first-fragment", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 4, 1400, ipv4(vip4, client4, protoTCP, 0x2000, nil, tcp(443, 40000)[:8])))),
			l3: 14, l4: 34, len: 70, flow: withFlags(clientTCP4, icmE)},
		{name: "ipv4-parameter-problem-quoting-options", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(12, 0, 0, ipv4(vip4, client4, protoTCP, 0, []byte{1, 1, 1, 0}, tcp(443, 40000)[:8])))),
			l3: 14, l4: 34, len: 74, flow: withFlags(clientTCP4, icmE)},

		// IPv6.
		{name: "ipv6-tcp", frame: tcp6, l3: 14, l4: 54, len: 74, flow: clientTCP6},
		{name: "ipv6-icmp-echo-request", frame: cat(e6, ipv6(client6, vip6, protoICMPv6, icmp(128, 0, icmpRest(9, 1)))),
			l3: 14, l4: 54, len: 62, flow: flow(client6, vip6, 9, 9, protoICMPv6)},
		{name: "ipv6-icmp-neighbor-solicitation", frame: cat(e6, ipv6(client6, vip6, protoICMPv6, icmp(135, 0, 0, make([]byte, 16)))),
			l3: 14, l4: 54, len: 78, flow: flow(client6, vip6, 0, 0, protoICMPv6)},
		{name: "ipv6-icmpv4-number", frame: cat(e6, ipv6(client6, vip6, protoICMP, icmp(8, 0, 0))),
			l3: 14, l4: 54, len: 62, flow: flow(client6, vip6, 0, 0, protoICMP)},
		{name: "ipv6-ext-chain-tcp", frame: cat(e6, ipv6(client6, vip6, protoHopByHop,
			ext6(protoRouting, 0), ext6(protoDestOpts, 2), ext6(protoAH, 1), ah6(protoTCP, 4), tcp(40000, 443))),
			l3: 14, l4: 54 + 8 + 24 + 16 + 24, len: 74 + 72, flow: clientTCP6},
		{name: "ipv6-eight-ext-headers", frame: cat(e6, ipv6(client6, vip6, protoDestOpts, nineDestOpts(protoUDP)[8:], udp(5353, 53, 0))),
			l3: 14, l4: 54 + 64, len: 54 + 64 + 8, flow: flow(client6, vip6, 5353, 53, protoUDP)},
		{name: "ipv6-first-fragment", frame: cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoTCP, 0, true, 1), tcp(40000, 443))),
			l3: 14, l4: 62, len: 82, flow: clientTCP6},
		{name: "ipv6-first-fragment-then-destination-options", frame: cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoDestOpts, 0, true, 1),
			ext6(protoTCP, 1), tcp(40000, 443))),
			l3: 14, l4: 54 + 8 + 16, len: 54 + 8 + 16 + 20, flow: clientTCP6},
		{name: "ipv6-first-fragment-ext-header-cut", frame: cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoDestOpts, 0, true, 1),
			ext6(protoTCP, 1)[:8])), reason: reasonTruncatedExt},
		{name: "ipv6-later-fragment-without-first", frame: cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoTCP, 3, false, 1), make([]byte, 8))),
			reason: reasonFragNoFirst},
		{name: "ipv6-atomic-fragment", frame: cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoTCP, 0, false, 1), tcp(40000, 443))),
			l3: 14, l4: 62, len: 82, flow: clientTCP6},
		{name: "ipv6-esp", frame: cat(e6, ipv6(client6, vip6, protoHopByHop, ext6(50, 0), make([]byte, 16))),
			l3: 14, l4: 62, len: 78, flow: flow(client6, vip6, 0, 0, 50)},
		{name: "ipv6-no-next-header", frame: cat(e6, ipv6(client6, vip6, 59)),
			l3: 14, l4: 54, len: 54, flow: flow(client6, vip6, 0, 0, 59)},
		{name: "ipv6-packet-too-big", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(2, 0, 1280, ipv6(vip6, client6, protoTCP, tcp(443, 40000))))),
			l3: 14, l4: 54, len: 54 + 8 + 60, flow: withFlags(clientTCP6, icmE)},
		{name: "ipv6-time-exceeded-quoting-ext-headers", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(3, 0, 0, ipv6(vip6, client6, protoDestOpts, ext6(protoUDP, 0), udp(53, 5353, 0))))),
			l3: 14, l4: 54, len: 54 + 8 + 56, flow: withFlags(flow(client6, vip6, 5353, 53, protoUDP), icmE)},
		{name: "ipv6-unreachable-quoting-later-fragment", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(1, 3, 0, ipv6(vip6, client6, protoFragment, frag6(protoUDP, 10, false, 5), make([]byte, 8))))),
			l3: 14, l4: 54, len: 54 + 8 + 56, flow: withFlags(flow(client6, vip6, 0, 0, protoUDP), icmE|frag)},
		{name: "ipv6-unreachable-quoting-echo-reply", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(1, 3, 0, ipv6(vip6, client6, protoICMPv6, icmp(129, 0, icmpRest(9, 1)))))),
			l3: 14, l4: 54, len: 54 + 8 + 48, flow: withFlags(flow(client6, vip6, 9, 9, protoICMPv6), icmE)},

		// Malformed: each leaves by bad with its own reason.
		{name: "truncated-ethernet", frame: synPadded[:13], reason: reasonTruncatedEth},
		{name: "truncated-vlan-tag", frame: cat(ether(etherTypeVLAN), []byte{0, 5}), reason: reasonTruncatedEth},
		{name: "three-vlan-tags", frame: cat(ether(etherTypeIPv4, etherTypeQinQ, 1, etherTypeVLAN, 2, etherTypeVLAN, 3), tcp4[14:]),
			reason: reasonTooManyVLANs},
		{name: "arp", frame: cat(ether(0x0806), make([]byte, 28)), reason: reasonNotIP},
		{name: "ipv4-ethertype-version-6", frame: cat(e4, tcp6[14:]), reason: reasonBadVersion},
		{name: "ipv6-ethertype-version-4", frame: cat(e6, tcp4[14:], make([]byte, 20)), reason: reasonBadVersion},
		{name: "ipv4-ihl-4", frame: set(tcp4, 14, 0x44), reason: reasonBadIHL},
		{name: "ipv4-total-length-below-ihl", frame: set(tcp4, 16, 0, 19), reason: reasonBadTotalLen},
		{name: "ipv4-truncated-header", frame: tcp4[:14+19], reason: reasonTruncatedIP},
		{name: "ipv4-options-beyond-capture", frame: set(tcp4[:14+20], 14, 0x4f, 0, 0, 60), reason: reasonTruncatedIP},
		{name: "ipv4-truncated-datagram", frame: tcp4[:len(tcp4)-1], reason: reasonTruncatedIP},
		{name: "ipv6-truncated-header", frame: tcp6[:14+39], reason: reasonTruncatedIP},
		{name: "ipv6-truncated-payload", frame: tcp6[:len(tcp6)-1], reason: reasonTruncatedIP},
		{name: "ipv6-ext-header-beyond-payload", frame: cat(e6, ipv6(client6, vip6, protoHopByHop, ext6(protoTCP, 1)[:8])),
			reason: reasonTruncatedExt},
		{name: "ipv6-ext-header-under-8-bytes", frame: cat(e6, ipv6(client6, vip6, protoRouting, []byte{protoTCP, 0, 0, 0})),
			reason: reasonTruncatedExt},
		{name: "ipv6-ah-beyond-payload", frame: cat(e6, ipv6(client6, vip6, protoAH, ah6(protoTCP, 4)[:20])),
			reason: reasonTruncatedExt},
		{name: "ipv6-fragment-header-truncated", frame: cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoTCP, 1, false, 1)[:6])),
			reason: reasonTruncatedExt},
		{name: "ipv6-nine-ext-headers", frame: cat(e6, ipv6(client6, vip6, protoDestOpts, nineDestOpts(protoUDP), udp(5353, 53, 0))),
			reason: reasonTooManyExt},
		{name: "ipv4-truncated-tcp", frame: cat(e4, ipv4(client4, vip4, protoTCP, 0, nil, tcp(40000, 443)[:19])), reason: reasonTruncatedL4},
		{name: "ipv4-truncated-udp", frame: cat(e4, ipv4(client4, vip4, protoUDP, 0, nil, udp(5353, 53, 0)[:7])), reason: reasonTruncatedL4},
		{name: "ipv4-truncated-sctp", frame: cat(e4, ipv4(client4, vip4, protoSCTP, 0, nil, sctp(1, 2)[:11])), reason: reasonTruncatedL4},
		{name: "ipv4-truncated-icmp", frame: cat(e4, ipv4(client4, vip4, protoICMP, 0, nil, icmp(8, 0, 0)[:7])), reason: reasonTruncatedL4},
		{name: "ipv6-truncated-tcp", frame: cat(e6, ipv6(client6, vip6, protoTCP, tcp(40000, 443)[:4])), reason: reasonTruncatedL4},
		{name: "ipv6-truncated-icmp", frame: cat(e6, ipv6(client6, vip6, protoICMPv6, icmp(128, 0, 0)[:4])), reason: reasonTruncatedL4},
		{name: "icmp-error-short-quote", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 1, 0, ipv4(vip4, client4, protoTCP, 0, nil)[:19]))), reason: reasonBadICMPInner},
		{name: "icmp-error-quote-without-ports", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 1, 0, ipv4(vip4, client4, protoTCP, 0, nil, []byte{1, 187})))), reason: reasonBadICMPInner},
		{name: "icmp-error-quote-bad-ihl", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 1, 0, set(ipv4(vip4, client4, protoTCP, 0, nil, tcp(443, 40000)[:8]), 0, 0x44)))), reason: reasonBadICMPInner},
		{name: "icmp-error-quote-ihl-beyond-quote", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 1, 0, set(ipv4(vip4, client4, protoTCP, 0, nil), 0, 0x46)))), reason: reasonBadICMPInner},
		{name: "icmp-error-quoting-ipv6", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 1, 0, ipv6(vip6, client6, protoTCP, tcp(443, 40000)[:8])))), reason: reasonBadICMPInner},
		{name: "packet-too-big-quoting-ipv4", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(2, 0, 1280, ipv4(vip4, client4, protoTCP, 0, nil, tcp(443, 40000)), make([]byte, 20)))), reason: reasonBadICMPInner},
		{name: "packet-too-big-short-quote", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(2, 0, 1280, ipv6(vip6, client6, protoTCP)[:39]))), reason: reasonBadICMPInner},
		{name: "packet-too-big-quote-truncated-ext", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(2, 0, 1280, ipv6(vip6, client6, protoHopByHop, ext6(protoTCP, 1)[:8])))), reason: reasonBadICMPInner},
		{name: "packet-too-big-quote-without-ports", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(2, 0, 1280, ipv6(vip6, client6, protoUDP, []byte{0, 53, 0})))), reason: reasonBadICMPInner},
		// An error to one VIP quoting another's reply (or a client's
		// packet): it would be steered into the other VIP's pool.
		{name: "icmp-error-quoting-other-vip", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 4, 1400, ipv4(otherVIP4, client4, protoTCP, 0, nil, tcp(443, 40000)[:8])))), reason: reasonICMPForeign},
		{name: "icmp-error-quoting-client-packet", frame: cat(e4, ipv4(router4, vip4, protoICMP, 0, nil,
			icmp(3, 4, 1400, ipv4(client4, vip4, protoTCP, 0, nil, tcp(40000, 443)[:8])))), reason: reasonICMPForeign},
		{name: "packet-too-big-quoting-other-vip", frame: cat(e6, ipv6(router6, vip6, protoICMPv6,
			icmp(2, 0, 1280, ipv6(otherVIP6, client6, protoTCP, tcp(443, 40000)[:8])))), reason: reasonICMPForeign},
		// Martian sources, outer header of ICMP errors included.
		{name: "ipv4-src-broadcast", frame: cat(e4, ipv4("255.255.255.255", vip4, protoTCP, 0, nil, tcp(40000, 443))), reason: reasonMartianBroadcast},
		{name: "ipv4-src-multicast-low", frame: cat(e4, ipv4("224.0.0.1", vip4, protoUDP, 0, nil, udp(1, 53, 0))), reason: reasonMartianMulticast},
		{name: "ipv4-src-multicast-high", frame: cat(e4, ipv4("239.255.255.255", vip4, protoUDP, 0, nil, udp(1, 53, 0))), reason: reasonMartianMulticast},
		{name: "ipv4-src-this-network", frame: cat(e4, ipv4("0.1.2.3", vip4, protoTCP, 0, nil, tcp(40000, 443))), reason: reasonMartianThisNet},
		{name: "ipv4-src-loopback", frame: cat(e4, ipv4("127.0.0.1", vip4, protoTCP, 0, nil, tcp(40000, 443))), reason: reasonMartianLoopback},
		{name: "ipv4-src-vip-itself", frame: cat(e4, ipv4(vip4, vip4, protoTCP, 0, nil, tcp(443, 443))), reason: reasonMartianLand},
		{name: "ipv4-fragment-src-loopback", frame: cat(e4, ipv4("127.9.9.9", vip4, protoUDP, 185, nil, make([]byte, 8))), reason: reasonMartianLoopback},
		{name: "ipv4-icmp-error-src-multicast", frame: cat(e4, ipv4("230.0.0.1", vip4, protoICMP, 0, nil,
			icmp(3, 4, 1400, ipv4(vip4, client4, protoTCP, 0, nil, tcp(443, 40000)[:8])))), reason: reasonMartianMulticast},
		{name: "ipv6-src-unspecified", frame: cat(e6, ipv6("::", vip6, protoTCP, tcp(40000, 443))), reason: reasonMartianThisNet},
		{name: "ipv6-src-loopback", frame: cat(e6, ipv6("::1", vip6, protoTCP, tcp(40000, 443))), reason: reasonMartianLoopback},
		{name: "ipv6-src-multicast", frame: cat(e6, ipv6("ff02::1", vip6, protoUDP, udp(1, 53, 0))), reason: reasonMartianMulticast},
		{name: "ipv6-src-vip-itself", frame: cat(e6, ipv6(vip6, vip6, protoTCP, tcp(443, 443))), reason: reasonMartianLand},
		{name: "ipv4-src-reserved", frame: cat(e4, ipv4("240.0.0.1", vip4, protoTCP, 0, nil, tcp(40000, 443))), reason: reasonMartianReserved},
		{name: "ipv4-src-reserved-high", frame: cat(e4, ipv4("255.255.255.254", vip4, protoTCP, 0, nil, tcp(40000, 443))), reason: reasonMartianReserved},
		{name: "ipv4-src-link-local", frame: cat(e4, ipv4("169.254.1.2", vip4, protoTCP, 0, nil, tcp(40000, 443))), reason: reasonMartianLinkLocal},
		{name: "ipv6-src-link-local", frame: cat(e6, ipv6("fe80::1", vip6, protoTCP, tcp(40000, 443))), reason: reasonMartianLinkLocal},
		{name: "ipv6-src-link-local-high", frame: cat(e6, ipv6("febf::1", vip6, protoTCP, tcp(40000, 443))), reason: reasonMartianLinkLocal},
		{name: "ipv6-src-ipv4-mapped", frame: cat(e6, ipv6("::ffff:203.0.113.7", vip6, protoTCP, tcp(40000, 443))), reason: reasonMartianMapped},
		{name: "ipv6-src-ipv4-compatible", frame: cat(e6, ipv6("::203.0.113.7", vip6, protoTCP, tcp(40000, 443))), reason: reasonMartianMapped},
		// Neighbours of the martian prefixes, which are not.
		{name: "ipv4-src-below-reserved", frame: cat(e4, ipv4("239.255.255.255", vip4, protoTCP, 0, nil, tcp(40000, 443))), reason: reasonMartianMulticast},
		{name: "ipv4-src-next-to-link-local", frame: cat(e4, ipv4("169.253.255.255", vip4, protoTCP, 0, nil, tcp(40000, 443))),
			l3: 14, l4: 34, len: 54, flow: flow("169.253.255.255", vip4, 40000, 443, protoTCP)},
		{name: "ipv6-src-next-to-link-local", frame: cat(e6, ipv6("fec0::1", vip6, protoTCP, tcp(40000, 443))),
			l3: 14, l4: 54, len: 74, flow: flow("fec0::1", vip6, 40000, 443, protoTCP)},
		{name: "ipv6-src-nat64", frame: cat(e6, ipv6("64:ff9b::203.0.113.7", vip6, protoTCP, tcp(40000, 443))),
			l3: 14, l4: 54, len: 74, flow: flow("64:ff9b::203.0.113.7", vip6, 40000, 443, protoTCP)},
		{name: "ipv6-src-one-above-ipv4-compatible", frame: cat(e6, ipv6("::1:0:0:1", vip6, protoTCP, tcp(40000, 443))),
			l3: 14, l4: 54, len: 74, flow: flow("::1:0:0:1", vip6, 40000, 443, protoTCP)},
	}
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			// Each case alone: no first fragment of another case is in
			// the fragment table.
			e := newTestElement(testSeed)
			p := pipelinetest.Packet(tc.frame)
			port := e.Push(0, p)
			if tc.reason != pipeline.ReasonNone {
				if port != portBad || p.Reason != tc.reason {
					t.Fatalf("port %d reason %v, want bad with %v", port, p.Reason, tc.reason)
				}
				return
			}
			if port != portOut {
				t.Fatalf("left by port %d with reason %v, want out", port, p.Reason)
			}
			if p.L3 != tc.l3 || p.L4 != tc.l4 || p.Len() != tc.len {
				t.Errorf("L3 %d L4 %d Len %d, want %d %d %d", p.L3, p.L4, p.Len(), tc.l3, tc.l4, tc.len)
			}
			if p.Flow != tc.flow {
				t.Errorf("flow\n got %+v\nwant %+v", p.Flow, tc.flow)
			}
			if want := HashFlow(testSeed, &tc.flow); p.Hash != want {
				t.Errorf("hash %#x, want %#x", p.Hash, want)
			}
		})
	}
}

// TestParseAllocs checks that no case, good or bad, allocates.
func TestParseAllocs(t *testing.T) {
	e := newTestElement(testSeed)
	for _, tc := range parseCases() {
		p := pipelinetest.Packet(tc.frame)
		buf, start, end := p.Frame()
		if n := testing.AllocsPerRun(100, func() {
			p.SetFrame(buf, start, end)
			e.Push(0, p)
		}); n != 0 {
			t.Errorf("%s: %v allocations per packet", tc.name, n)
		}
	}
}

// TestPrefetch runs Prefetch over frames of every length up to past the
// span it touches, the empty one included: it must read nothing beyond a
// frame, change nothing a parse then sees, and allocate nothing.
func TestPrefetch(t *testing.T) {
	e := newTestElement(testSeed)
	var pkts []*pipeline.Packet
	for n := range prefetchSpan + 2 {
		pkts = append(pkts, pipelinetest.Packet(make([]byte, n)))
	}
	if n := testing.AllocsPerRun(100, func() { e.Prefetch(0, pkts) }); n != 0 {
		t.Errorf("%v allocations per batch", n)
	}
	for _, tc := range parseCases() {
		p, q := pipelinetest.Packet(tc.frame), pipelinetest.Packet(slices.Clone(tc.frame))
		e.Prefetch(0, []*pipeline.Packet{p})
		if a, b := e.Push(0, p), e.Push(0, q); a != b || p.Flow != q.Flow || p.Hash != q.Hash || !bytes.Equal(p.Data(), q.Data()) {
			t.Errorf("%s: after Prefetch, port %d flow %+v; without, port %d flow %+v", tc.name, a, p.Flow, b, q.Flow)
		}
	}
}

// parsed parses frame with the test seed and fails unless it leaves by out.
func parsed(t *testing.T, e *Parse5Tuple, name string, frame []byte) *pipeline.Packet {
	t.Helper()
	p := pipelinetest.Packet(frame)
	if port := e.Push(0, p); port != portOut {
		t.Fatalf("%s: left by port %d (%v), want out", name, port, p.Reason)
	}
	return p
}

// TestFragmentsShareHash checks that every fragment of a datagram carries
// the 5-tuple and hash of the flow's unfragmented packets, so they all
// reach the flow's backend and pass its VIP's port filter: IPv4, IPv6, and
// IPv6 with headers after the Fragment header (which only the first
// fragment carries).
func TestFragmentsShareHash(t *testing.T) {
	e := newTestElement(testSeed)
	e4, e6 := ether(etherTypeIPv4), ether(etherTypeIPv6)
	udp4, udp6 := flow(client4, vip4, 5353, 53, protoUDP), flow(client6, vip6, 5353, 53, protoUDP)
	tcp6 := flow(client6, vip6, 40000, 443, protoTCP)
	want := map[string]pipeline.Flow{"ipv4": udp4, "ipv6": udp6, "ipv6-hop-by-hop-then-fragment": tcp6,
		"ipv6-fragment-then-destination-options": tcp6, "ipv6-fragment-then-ah": tcp6}
	datagrams := map[string][][]byte{
		"ipv4": {
			cat(e4, ipv4(client4, vip4, protoUDP, 0x2000, nil, udp(5353, 53, 1472))),    // MF, offset 0
			cat(e4, ipv4(client4, vip4, protoUDP, 0x2000|185, nil, make([]byte, 1480))), // MF, offset 1480
			cat(e4, ipv4(client4, vip4, protoUDP, 370, nil, make([]byte, 100))),         // offset 2960, last
		},
		"ipv6": {
			cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoUDP, 0, true, 7), udp(5353, 53, 1440))),
			cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoUDP, 181, false, 7), make([]byte, 100))),
		},
		"ipv6-hop-by-hop-then-fragment": {
			cat(e6, ipv6(client6, vip6, protoHopByHop, ext6(protoFragment, 0), frag6(protoTCP, 0, true, 7), tcp(40000, 443), make([]byte, 20))),
			cat(e6, ipv6(client6, vip6, protoHopByHop, ext6(protoFragment, 0), frag6(protoTCP, 5, false, 7), make([]byte, 100))),
		},
		"ipv6-fragment-then-destination-options": {
			cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoDestOpts, 0, true, 7), ext6(protoTCP, 0), tcp(40000, 443), make([]byte, 4))),
			cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoDestOpts, 4, false, 7), make([]byte, 100))),
		},
		"ipv6-fragment-then-ah": {
			cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoAH, 0, true, 7), ah6(protoTCP, 4), tcp(40000, 443), make([]byte, 4))),
			cat(e6, ipv6(client6, vip6, protoFragment, frag6(protoAH, 6, false, 7), make([]byte, 100))),
		},
	}
	for name, frags := range datagrams {
		first := parsed(t, e, name, frags[0])
		if first.Flow != want[name] || first.Hash != HashFlow(testSeed, &first.Flow) {
			t.Errorf("%s: first fragment flow %+v hash %#x, want the unfragmented flow %+v", name, first.Flow, first.Hash, want[name])
		}
		for i, fr := range frags[1:] {
			p := parsed(t, e, name, fr)
			if p.Flow != withFlags(first.Flow, pipeline.FlowLaterFragment) || p.Hash != first.Hash {
				t.Errorf("%s: fragment %d has flow %+v hash %#x, first fragment %+v hash %#x", name, i+1, p.Flow, p.Hash, first.Flow, first.Hash)
			}
		}
	}
}

// TestICMPErrorFollowsFlow checks that an ICMP error a router sends to the
// VIP about a backend's reply hashes like the client's flow it belongs to.
func TestICMPErrorFollowsFlow(t *testing.T) {
	e := newTestElement(testSeed)
	e4, e6 := ether(etherTypeIPv4), ether(etherTypeIPv6)
	pairs := []struct {
		name          string
		client, error []byte
	}{
		{"ipv4-tcp-fragmentation-needed", synPadded, fragNeeded},
		{"ipv6-tcp-packet-too-big",
			cat(e6, ipv6(client6, vip6, protoTCP, tcp(40000, 443))),
			cat(e6, ipv6(router6, vip6, protoICMPv6, icmp(2, 0, 1280, ipv6(vip6, client6, protoTCP, tcp(443, 40000), make([]byte, 1000)))))},
		{"ipv6-udp-packet-too-big-vlan",
			cat(ether(etherTypeIPv6, etherTypeVLAN, 9), ipv6(client6, vip6, protoUDP, udp(5353, 53, 0))),
			cat(e6, ipv6(router6, vip6, protoICMPv6, icmp(2, 0, 1280, ipv6(vip6, client6, protoUDP, udp(53, 5353, 1200)[:8]))))},
		{"ipv4-echo-time-exceeded",
			cat(e4, ipv4(client4, vip4, protoICMP, 0, nil, icmp(8, 0, icmpRest(77, 3)))),
			cat(e4, ipv4(router4, vip4, protoICMP, 0, nil, icmp(11, 0, 0, ipv4(vip4, client4, protoICMP, 0, nil, icmp(0, 0, icmpRest(77, 3))))))},
	}
	for _, tc := range pairs {
		c := parsed(t, e, tc.name, tc.client)
		er := parsed(t, e, tc.name, tc.error)
		if er.Flow.Flags != pipeline.FlowICMPError {
			t.Errorf("%s: error flags %#x, want FlowICMPError", tc.name, er.Flow.Flags)
		}
		want := c.Flow
		want.Flags = pipeline.FlowICMPError
		if er.Flow != want || er.Hash != c.Hash {
			t.Errorf("%s: error flow %+v hash %#x, client flow %+v hash %#x", tc.name, er.Flow, er.Hash, c.Flow, c.Hash)
		}
	}
}

// TestSeedFromSnapshot checks that the hash follows the snapshot's seed,
// reloaded at each batch.
func TestSeedFromSnapshot(t *testing.T) {
	st := snapshot.NewStore(snapshot.New(1, 1, nil, nil))
	e := &Parse5Tuple{view: snapshot.NewView(st)}
	startBatch(e)
	p := parsed(t, e, "seed 1", synPadded)
	if want := HashFlow(1, &p.Flow); p.Hash != want {
		t.Fatalf("hash %#x, want HashFlow(1) %#x", p.Hash, want)
	}
	st.Publish(snapshot.New(2, 2, nil, nil))
	startBatch(e)
	q := parsed(t, e, "seed 2", synPadded)
	if want := HashFlow(2, &q.Flow); q.Hash != want || q.Hash == p.Hash {
		t.Fatalf("after a seed change: hash %#x, want HashFlow(2) %#x (seed 1 gave %#x)", q.Hash, want, p.Hash)
	}
}

// TestMartianOtherVIP: a source equal to any VIP's address, not only the
// destination's, is dropped as parse.martian_vip, by the VIPs of the
// batch's snapshot: a VIP removed by a reload is a client again.
func TestMartianOtherVIP(t *testing.T) {
	vips := func(addrs ...string) []snapshot.VIP {
		var v []snapshot.VIP
		for i, a := range addrs {
			v = append(v, snapshot.VIP{Name: fmt.Sprint("v", i), Addr: netip.MustParseAddr(a)})
		}
		return v
	}
	st := snapshot.NewStore(snapshot.New(1, 1, vips(vip4, otherVIP4, vip6, otherVIP6), nil))
	e := &Parse5Tuple{view: snapshot.NewView(st)}
	startBatch(e)
	e4, e6 := ether(etherTypeIPv4), ether(etherTypeIPv6)
	from4 := cat(e4, ipv4(otherVIP4, vip4, protoTCP, 0, nil, tcp(40000, 443)))
	from6 := cat(e6, ipv6(otherVIP6, vip6, protoTCP, tcp(40000, 443)))
	// An ICMP error is checked on its outer source too.
	icmpFrom4 := cat(e4, ipv4(otherVIP4, vip4, protoICMP, 0, nil, icmp(3, 4, 1400, ipv4(vip4, client4, protoTCP, 0, nil, tcp(443, 40000)[:8]))))
	// The same address in the other family's form is not a VIP.
	mappedLike := cat(e6, ipv6("64:ff9b::198.51.100.11", vip6, protoTCP, tcp(40000, 443)))
	for _, tc := range []struct {
		name  string
		frame []byte
		port  int
	}{
		{"ipv4", from4, portBad}, {"ipv6", from6, portBad}, {"icmp-error", icmpFrom4, portBad},
		{"client4", cat(e4, ipv4(client4, vip4, protoTCP, 0, nil, tcp(40000, 443))), portOut},
		{"client6", cat(e6, ipv6(client6, vip6, protoTCP, tcp(40000, 443))), portOut},
		{"other-family", mappedLike, portOut},
	} {
		p := pipelinetest.Packet(tc.frame)
		if port := e.Push(0, p); port != tc.port || (port == portBad && p.Reason != reasonMartianVIP) {
			t.Errorf("%s: port %d reason %v, want port %d", tc.name, port, p.Reason, tc.port)
		}
	}
	e.EndBatch()
	e.view.EndBatch()
	st.Publish(snapshot.New(2, 1, vips(vip4, vip6), nil))
	startBatch(e)
	for _, f := range [][]byte{from4, from6} {
		if p := pipelinetest.Packet(f); e.Push(0, p) != portOut {
			t.Errorf("after the other VIPs' removal: dropped as %v", p.Reason)
		}
	}
}

func TestProvisionNeedsSnapshot(t *testing.T) {
	e := &Parse5Tuple{}
	if err := e.Provision(&pipeline.Context{Name: "parse"}); err == nil {
		t.Fatal("Provision without a snapshot store succeeded")
	}
}

func BenchmarkParse(b *testing.B) {
	e6 := ether(etherTypeIPv6)
	frames := []struct {
		name  string
		frame []byte
	}{
		{"ipv4-tcp", cat(ether(etherTypeIPv4), ipv4(client4, vip4, protoTCP, 0, nil, tcp(40000, 443), make([]byte, 100)))},
		{"ipv6-tcp", cat(e6, ipv6(client6, vip6, protoTCP, tcp(40000, 443), make([]byte, 100)))},
		{"ipv6-ext-frag", cat(e6, ipv6(client6, vip6, protoHopByHop, ext6(protoDestOpts, 0), ext6(protoFragment, 0),
			frag6(protoUDP, 0, true, 1), udp(5353, 53, 100)))},
		{"icmp-error", fragNeeded},
	}
	e := newTestElement(testSeed)
	for _, f := range frames {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			p := pipelinetest.Packet(f.frame)
			for b.Loop() {
				if e.Push(0, p) != portOut {
					b.Fatal("not parsed")
				}
			}
		})
	}
}
