// Package backend is the lab's backend server: a user-space decapsulator
// for GRE (RFC 2784, with the RFC 2890 key and sequence fields skipped) and
// IP-in-IP (RFC 2003 for IPv4 in IPv4, RFC 4213 / RFC 2473 for IPv6 inner
// or outer), feeding a TUN device that holds the VIPs, and an HTTP server
// on the VIPs that answers with the backend's name. Replies leave by the
// default route, straight to the client (direct server return).
//
// It decapsulates in user space because the lab's kernel has neither the
// GRE nor the IPIP module; an AF_PACKET socket sees the tunnelled packets
// before the IP stack would reject them, and before it reassembles outer
// fragments: Reassembler does that first.
package backend

import (
	"encoding/binary"
	"net/netip"
)

// Result classifies one packet given to Decap.
type Result int

const (
	// ResultGRE and ResultIPIP: decapsulated; inner is the packet to
	// deliver.
	ResultGRE Result = iota
	ResultIPIP
	// ResultNotLocal: the outer destination is not one of ours.
	ResultNotLocal
	// ResultMalformed: lengths, versions or the IPv4 header checksum are
	// wrong.
	ResultMalformed
	// ResultUnsupported: well-formed but not handled here: outer
	// fragments (Reassembler takes them first), IPv6 extension headers
	// before the tunnel header, GRE
	// versions or flags RFC 2784 says to discard, other payload types.
	ResultUnsupported
	// ResultOther: not a tunnel protocol at all (the socket filter lets
	// none through; counted for completeness).
	ResultOther
)

// IP protocol numbers and GRE fields.
const (
	protoIPIP = 4  // IPv4 encapsulation
	protoIPv6 = 41 // IPv6 encapsulation
	protoGRE  = 47

	greC       = 0x8000 // checksum present
	greR       = 0x4000 // routing present (RFC 1701; RFC 2784 discards)
	greK       = 0x2000 // key present (RFC 2890)
	greS       = 0x1000 // sequence number present (RFC 2890)
	greDiscard = 0x0c00 // strict source route, recursion control: RFC 2784 bits 4-5
	greVersion = 0x0007

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// Decap strips the outer IPv4/IPv6 header (and GRE header) from pkt, an IP
// packet starting at its IP header, if it is a tunnel packet addressed to
// one of local. inner aliases pkt.
func Decap(pkt []byte, local []netip.Addr) (inner []byte, r Result) {
	if len(pkt) < 1 {
		return nil, ResultMalformed
	}
	var proto byte
	var payload []byte
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return nil, ResultMalformed
		}
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if ihl < 20 || total < ihl || total > len(pkt) || Checksum(pkt[:ihl]) != 0 {
			return nil, ResultMalformed
		}
		proto = pkt[9]
		if !isTunnel(proto) {
			return nil, ResultOther
		}
		if !isLocal(netip.AddrFrom4([4]byte(pkt[16:20])), local) {
			return nil, ResultNotLocal
		}
		// More fragments, or a fragment offset: the kernel reassembles,
		// this decapsulator does not.
		if binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
			return nil, ResultUnsupported
		}
		payload = pkt[ihl:total] // total drops Ethernet padding
	case 6:
		if len(pkt) < 40 {
			return nil, ResultMalformed
		}
		end := 40 + int(binary.BigEndian.Uint16(pkt[4:6]))
		if end > len(pkt) {
			return nil, ResultMalformed
		}
		proto = pkt[6]
		if !isTunnel(proto) {
			// Extension headers (or another protocol) first.
			return nil, ResultOther
		}
		if !isLocal(netip.AddrFrom16([16]byte(pkt[24:40])), local) {
			return nil, ResultNotLocal
		}
		payload = pkt[40:end]
	default:
		return nil, ResultMalformed
	}

	var innerVersion byte
	r = ResultIPIP
	switch proto {
	case protoIPIP:
		innerVersion = 4
	case protoIPv6:
		innerVersion = 6
	case protoGRE:
		r = ResultGRE
		if len(payload) < 4 {
			return nil, ResultMalformed
		}
		flags := binary.BigEndian.Uint16(payload[0:2])
		if flags&(greR|greDiscard|greVersion) != 0 {
			return nil, ResultUnsupported
		}
		hlen := 4
		for _, f := range [...]uint16{greC, greK, greS} {
			if flags&f != 0 {
				hlen += 4 // RFC 2784 checksum + reserved1, RFC 2890 key, sequence
			}
		}
		if len(payload) < hlen {
			return nil, ResultMalformed
		}
		switch binary.BigEndian.Uint16(payload[2:4]) {
		case etherTypeIPv4:
			innerVersion = 4
		case etherTypeIPv6:
			innerVersion = 6
		default:
			return nil, ResultUnsupported
		}
		payload = payload[hlen:]
	}
	if len(payload) < 1 || payload[0]>>4 != innerVersion {
		return nil, ResultMalformed
	}
	return payload, r
}

func isTunnel(proto byte) bool {
	return proto == protoGRE || proto == protoIPIP || proto == protoIPv6
}

func isLocal(a netip.Addr, local []netip.Addr) bool {
	for _, l := range local {
		if l == a {
			return true
		}
	}
	return false
}

// Checksum is the Internet checksum (RFC 1071) of parts laid end to end,
// as over a pseudo-header followed by a segment: 0 over data that includes
// its own correct checksum. It is the one checksum of the e2e packages.
func Checksum(parts ...[]byte) uint16 {
	var s uint32
	odd := false // the next byte is the low half of a 16-bit word
	for _, b := range parts {
		for _, c := range b {
			if odd {
				s += uint32(c)
			} else {
				s += uint32(c) << 8
			}
			odd = !odd
		}
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
