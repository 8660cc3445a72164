package parse

import (
	"encoding/binary"
	"net/netip"

	"github.com/xlbproject/xlb/control/snapshot"
)

// Hand-written frames, commented field by field. The client 203.0.113.7
// talks to the VIP 198.51.100.10 (2001:db8:ffff::10 for IPv6).

// synPadded is a client's TCP SYN to the VIP, padded by Ethernet to the
// 60-byte minimum frame: Parse5Tuple must accept and trim the padding.
var synPadded = []byte{
	// Ethernet
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination MAC
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source MAC
	0x08, 0x00, // EtherType IPv4
	// IPv4, at offset 14
	0x45,       // version 4, IHL 5 (20 bytes)
	0x00,       // DSCP, ECN
	0x00, 0x28, // total length 40: 20 IP + 20 TCP
	0x1c, 0x46, // identification
	0x40, 0x00, // flags DF, fragment offset 0
	0x40,       // TTL 64
	0x06,       // protocol TCP
	0x00, 0x00, // header checksum (not verified)
	203, 0, 113, 7, // source 203.0.113.7
	198, 51, 100, 10, // destination 198.51.100.10
	// TCP, at offset 34
	0x9c, 0x40, // source port 40000
	0x01, 0xbb, // destination port 443
	0x00, 0x00, 0x00, 0x01, // sequence number
	0x00, 0x00, 0x00, 0x00, // acknowledgment number
	0x50, 0x02, // data offset 5, flags SYN
	0xff, 0xff, // window
	0x00, 0x00, // checksum
	0x00, 0x00, // urgent pointer
	// Ethernet padding, 54 -> 60 bytes
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
}

// fragNeeded is an ICMP Destination Unreachable / Fragmentation Needed
// (RFC 1191) that a router sends to the VIP about the backend's 1500-byte
// reply to synPadded's client (sent from the VIP by direct server return).
// Its flow must be synPadded's flow.
var fragNeeded = []byte{
	// Ethernet
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination MAC
	0x02, 0x00, 0x00, 0x00, 0x00, 0x03, // source MAC
	0x08, 0x00, // EtherType IPv4
	// IPv4, at offset 14
	0x45,       // version 4, IHL 5
	0x00,       // DSCP, ECN
	0x00, 0x38, // total length 56: 20 IP + 8 ICMP + 20 quoted IP + 8 quoted TCP
	0x00, 0x00, // identification
	0x00, 0x00, // flags 0, fragment offset 0
	0x40,       // TTL 64
	0x01,       // protocol ICMP
	0x00, 0x00, // header checksum
	192, 0, 2, 254, // source: the router 192.0.2.254
	198, 51, 100, 10, // destination: the VIP
	// ICMP, at offset 34
	0x03,       // type 3, destination unreachable
	0x04,       // code 4, fragmentation needed and DF set
	0x00, 0x00, // checksum
	0x00, 0x00, // unused
	0x05, 0x78, // next-hop MTU 1400
	// quoted IPv4 header
	0x45,       // version 4, IHL 5
	0x00,       // DSCP, ECN
	0x05, 0xdc, // total length 1500 (of the original, not of the quote)
	0xab, 0xcd, // identification
	0x40, 0x00, // flags DF
	0x3f,       // TTL 63
	0x06,       // protocol TCP
	0x00, 0x00, // header checksum
	198, 51, 100, 10, // source: the VIP
	203, 0, 113, 7, // destination: the client
	// first 8 bytes of the quoted TCP header
	0x01, 0xbb, // source port 443
	0x9c, 0x40, // destination port 40000
	0x00, 0x00, 0x10, 0x00, // sequence number
}

// qinqUDP6 is a DNS query over IPv6 under an 802.1ad S-tag and an 802.1Q
// C-tag.
var qinqUDP6 = []byte{
	// Ethernet
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination MAC
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source MAC
	0x88, 0xa8, // TPID 802.1ad (S-tag)
	0x00, 0x64, // PCP 0, DEI 0, VID 100
	0x81, 0x00, // TPID 802.1Q (C-tag)
	0x00, 0xc8, // PCP 0, DEI 0, VID 200
	0x86, 0xdd, // EtherType IPv6
	// IPv6, at offset 22
	0x60, 0x00, 0x00, 0x00, // version 6, traffic class 0, flow label 0
	0x00, 0x0c, // payload length 12
	0x11, // next header UDP
	0x40, // hop limit 64
	// source 2001:db8::7
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
	// destination 2001:db8:ffff::10
	0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
	// UDP, at offset 62
	0xd4, 0x31, // source port 54321
	0x00, 0x35, // destination port 53
	0x00, 0x0c, // length 12
	0x00, 0x00, // checksum
	'x', 'l', 'b', '!', // payload
}

// laterFrag6 is the last fragment of a TCP datagram from the IPv6 client,
// after a Hop-by-Hop Options header. It carries no TCP header.
var laterFrag6 = []byte{
	// Ethernet
	0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // destination MAC
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source MAC
	0x86, 0xdd, // EtherType IPv6
	// IPv6, at offset 14
	0x60, 0x00, 0x00, 0x00, // version 6, traffic class 0, flow label 0
	0x00, 0x20, // payload length 32: 8 hop-by-hop + 8 fragment + 16 data
	0x00, // next header Hop-by-Hop Options
	0x40, // hop limit 64
	// source 2001:db8::7
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
	// destination 2001:db8:ffff::10
	0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
	// Hop-by-Hop Options, at offset 54
	0x2c,       // next header Fragment (44)
	0x00,       // header extension length 0: 8 bytes
	0x01, 0x04, // option PadN, 4 bytes
	0x00, 0x00, 0x00, 0x00, // padding
	// Fragment, at offset 62
	0x06,       // next header TCP
	0x00,       // reserved
	0x00, 0xb8, // fragment offset 23 (184 bytes), M clear: the last fragment
	0x12, 0x34, 0x56, 0x78, // identification
	// fragment payload, at offset 70
	0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef,
	0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef,
}

// Builders for the table tests. Each returns a fresh slice; lengths and
// next-header fields are filled in, checksums are left zero (not checked).

const (
	client4 = "203.0.113.7"
	vip4    = "198.51.100.10"
	router4 = "192.0.2.254"
	client6 = "2001:db8::7"
	vip6    = "2001:db8:ffff::10"
	router6 = "2001:db8:1::fe"
	// Another VIP, whose replies an ICMP error to vip4/vip6 must not quote.
	otherVIP4 = "198.51.100.11"
	otherVIP6 = "2001:db8:ffff::11"
)

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// ether returns an Ethernet header with the given VLAN tags (TPID, VID
// pairs) and EtherType.
func ether(etherType uint16, tags ...uint16) []byte {
	b := []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2}
	for i := 0; i+1 < len(tags); i += 2 {
		b = binary.BigEndian.AppendUint16(b, tags[i])
		b = binary.BigEndian.AppendUint16(b, tags[i+1])
	}
	return binary.BigEndian.AppendUint16(b, etherType)
}

// ipv4 returns an IPv4 header (20 bytes plus options) and payload; frag is
// the flags and fragment offset field (0x2000 is MF, offset in 8 bytes).
func ipv4(src, dst string, proto uint8, frag uint16, options []byte, payload ...[]byte) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	hl := 20 + len(options)
	pl := cat(payload...)
	b := []byte{byte(0x40 | hl/4), 0, 0, 0, 0x12, 0x34, 0, 0, 64, proto, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(pl)))
	binary.BigEndian.PutUint16(b[6:], frag)
	return cat(b, s[:], d[:], options, pl)
}

// ipv6 returns an IPv6 header with next header nh and payload.
func ipv6(src, dst string, nh uint8, payload ...[]byte) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	pl := cat(payload...)
	b := []byte{0x60, 0, 0, 0, 0, 0, nh, 64}
	binary.BigEndian.PutUint16(b[4:], uint16(len(pl)))
	return cat(b, s[:], d[:], pl)
}

// ext6 returns a Hop-by-Hop, Routing or Destination Options header of
// 8*(units+1) bytes.
func ext6(nh uint8, units uint8) []byte {
	b := make([]byte, 8*(int(units)+1))
	b[0], b[1] = nh, units
	return b
}

// ah6 returns an Authentication Header of 4*(units+2) bytes.
func ah6(nh uint8, units uint8) []byte {
	b := make([]byte, 4*(int(units)+2))
	b[0], b[1] = nh, units
	return b
}

// frag6 returns a Fragment header; offset is in 8-byte units.
func frag6(nh uint8, offset uint16, more bool, id uint32) []byte {
	fo := offset << 3
	if more {
		fo |= 1
	}
	b := []byte{nh, 0, byte(fo >> 8), byte(fo)}
	return binary.BigEndian.AppendUint32(b, id)
}

func tcp(sport, dport uint16) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 0x50 // data offset 5
	b[13] = 0x10 // ACK
	return b
}

func udp(sport, dport uint16, payload int) []byte {
	b := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+payload))
	return b
}

func sctp(sport, dport uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return b
}

// icmp returns an ICMP or ICMPv6 header; rest is its last 4 bytes (echo
// identifier and sequence number, or unused/MTU).
func icmp(typ, code uint8, rest uint32, payload ...[]byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte{typ, code, 0, 0}, rest)
	return cat(b, cat(payload...))
}

const testSeed = 0x5eed

// newTestElement returns a Parse5Tuple provisioned with a snapshot whose
// hash seed is seed, with a batch started.
func newTestElement(seed uint64) *Parse5Tuple {
	e := &Parse5Tuple{view: snapshot.NewView(snapshot.NewStore(snapshot.New(1, seed, nil, nil))),
		FragCapacity: defaultFragCapacity, FragTimeout: defaultFragTimeout}
	if err := e.setup(seed); err != nil {
		panic(err)
	}
	startBatch(e)
	return e
}

// startBatch starts a batch as the engine does: the worker's view, then the
// element.
func startBatch(e *Parse5Tuple) {
	e.view.StartBatch(0)
	e.StartBatch(0)
}
