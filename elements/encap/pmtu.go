package encap

import (
	"encoding/binary"

	"github.com/xlbproject/xlb/elements/internal/csum"
	"github.com/xlbproject/xlb/pipeline"
)

// Path MTU: a packet that encapsulation would make larger than the egress
// MTU is answered, as a router on the path would answer it, with an ICMP
// error that tells the client the MTU it must use: the link's minus the
// encapsulation overhead. The client's kernel lowers its path MTU (RFC 1191,
// RFC 8201) and TCP its segment size, so no MSS clamping is needed.

// ICMP reply layout.
const (
	icmpHdrLen = 8

	// RFC 792: the quote is the IP header and the first 8 bytes of its
	// payload, enough for the ports of the flow.
	icmp4Quote = 8
	// RFC 4443 section 2.4 (c): the quote is as much of the invoking
	// packet as fits without the error exceeding the IPv6 minimum MTU.
	minMTU6 = 1280
	// RFC 1191: a host takes a next-hop MTU below 68 as no MTU at all.
	minMTU4 = 68

	// Linux marks ICMP errors internetwork control (precedence 6,
	// RFC 791), so networks that prioritise control traffic deliver
	// them under congestion; xlb's replies do the same.
	icmpTOS = 0xc0
)

// Reply rate defaults: Linux's icmp_msgs_per_sec and icmp_msgs_burst.
const (
	defaultICMPRate  = 1000
	defaultICMPBurst = 50
)

// bucket is a token bucket in nanotokens: one reply costs 1e9, and time
// refills rate per nanosecond. It is the worker's, like the element.
type bucket struct {
	rate, max int64 // nanotokens per ns (= replies per s), cap
	tokens    int64
	last      int64 // batch time of the last refill, ns
}

func newBucket(rate, burst int) bucket {
	if rate == 0 {
		return bucket{} // never a token: no replies
	}
	return bucket{rate: int64(rate), max: int64(burst) * 1e9, tokens: int64(burst) * 1e9}
}

// refill adds the tokens earned since the last batch. The clock is the
// batch's: a capture replays at its own timestamps, a live source runs on
// the monotonic clock.
func (b *bucket) refill(now int64) {
	el := now - b.last
	b.last = now
	if el <= 0 || b.rate == 0 {
		return
	}
	if el >= b.max/b.rate { // full; also keeps el*rate from overflowing
		b.tokens = b.max
		return
	}
	b.tokens = min(b.max, b.tokens+el*b.rate)
}

func (b *bucket) take() bool {
	if b.tokens < 1e9 {
		return false
	}
	b.tokens -= 1e9
	return true
}

// tooBig handles a packet whose outer packet would exceed the MTU; room is
// what the inner packet may hold (the MTU minus the overhead). The packet
// is unmodified on entry; it leaves as the ICMP reply by icmp, or by bad.
func (e *Encap) tooBig(p *pipeline.Packet, data []byte, l3, innerLen int, v4, df bool, room int) int {
	ip := data[l3:]
	if v4 && !df {
		// too_big_no_df = "drop": RFC 791 lets a router fragment it, and
		// the operator chose not to (frag.go).
		return e.drop(p, dropTooBig)
	}
	// No error about an error, nor about a non-first fragment (RFC 1122
	// section 3.2.2, RFC 4443 section 2.4 (e)).
	if p.Flow.Flags&pipeline.FlowICMPError != 0 || noErrorAbout(ip, v4) {
		return e.drop(p, dropTooBig)
	}
	hdr := ipv4HdrLen + icmpHdrLen
	if !v4 {
		hdr = ipv6HdrLen + icmpHdrLen
	}
	if p.Headroom() < hdr {
		return e.drop(p, dropNoHeadroom)
	}
	if !e.bucket.take() {
		return e.drop(p, dropICMPRateLimited)
	}
	var quote int
	if v4 {
		quote = min(innerLen, int(ip[0]&0x0f)*4+icmp4Quote)
		room = max(room, minMTU4)
	} else {
		quote = min(innerLen, minMTU6-hdr)
		// An IPv6 link's MTU is at least 1280 (RFC 8200 section 5) and
		// a host ignores a smaller one (RFC 8201 section 4): 1280 is
		// announced, and what the tunnel cannot then carry is dropped
		// as too big. Only an mtu under 1280 plus the overhead does it.
		room = max(room, minMTU6)
	}
	p.Truncate(l3 + quote)
	d := p.Prepend(hdr)
	moveL2(d, hdr, l3)
	// Back where it came from; TxXDP writes the next hop's MACs anyway,
	// and a capture then reads as a reply.
	var mac [6]byte
	copy(mac[:], d[0:6])
	copy(d[0:6], d[6:12])
	copy(d[6:12], mac[:])
	h := d[l3:]
	if v4 {
		e.fragNeeded(h, quote, room)
		e.sentFragNeeded++
	} else {
		packetTooBig(h, quote, room, e.ttl)
		e.sentPTB++
	}
	p.L4 = uint16(l3 + hdr - icmpHdrLen)
	return portICMP
}

// noErrorAbout reports whether the IP packet ip, whose header is known to
// be in place, is one no ICMP error may be sent about: a non-first IPv4
// fragment, an IPv6 one whose Fragment header follows the fixed header,
// or an ICMP error message.
func noErrorAbout(ip []byte, v4 bool) bool {
	if v4 {
		if be16(ip[6:])&0x1fff != 0 {
			return true
		}
		ihl := int(ip[0]&0x0f) * 4
		// Types 3, 4, 5, 11 and 12 are the errors of RFC 792.
		return ip[9] == 1 && len(ip) > ihl && (ip[ihl] >= 3 && ip[ihl] <= 5 || ip[ihl] == 11 || ip[ihl] == 12)
	}
	switch ip[6] {
	case 44:
		return len(ip) >= ipv6HdrLen+8 && be16(ip[ipv6HdrLen+2:])&0xfff8 != 0
	case 58:
		// RFC 4443 section 2.1: types below 128 are errors.
		return len(ip) > ipv6HdrLen && ip[ipv6HdrLen] < 128
	}
	return false
}

// fragNeeded writes, in front of the quote at h[28:], an IPv4 header from
// the quoted packet's destination (the VIP) to its source (the client) and
// an ICMP Destination Unreachable, Fragmentation Needed and DF Set (RFC 792
// type 3 code 4) with the next-hop MTU of RFC 1191.
func (e *Encap) fragNeeded(h []byte, quote, mtu int) {
	q := h[ipv4HdrLen+icmpHdrLen:]
	total := ipv4HdrLen + icmpHdrLen + quote
	h[0] = 0x45
	h[1] = icmpTOS
	put16(h[2:], uint16(total))
	put16(h[4:], e.id)
	e.id += e.idStep
	put16(h[6:], 0)
	h[8] = e.ttl
	h[9] = 1 // ICMP
	put16(h[10:], 0)
	copy(h[12:16], q[16:20])
	copy(h[16:20], q[12:16])
	put16(h[10:], csum.Checksum(0, h[:ipv4HdrLen]))
	m := h[ipv4HdrLen:total]
	m[0], m[1] = 3, 4
	put16(m[2:], 0)
	put16(m[4:], 0) // unused
	put16(m[6:], uint16(mtu))
	put16(m[2:], csum.Checksum(0, m))
}

// packetTooBig writes, in front of the quote at h[48:], an IPv6 header from
// the quoted packet's destination to its source and an ICMPv6 Packet Too
// Big (RFC 4443 section 3.2) with the MTU.
func packetTooBig(h []byte, quote, mtu int, hops byte) {
	q := h[ipv6HdrLen+icmpHdrLen:]
	plen := icmpHdrLen + quote
	binary.BigEndian.PutUint32(h, 6<<28)
	put16(h[4:], uint16(plen))
	h[6] = 58 // ICMPv6
	h[7] = hops
	copy(h[8:24], q[24:40])
	copy(h[24:40], q[8:24])
	m := h[ipv6HdrLen : ipv6HdrLen+plen]
	m[0], m[1] = 2, 0
	put16(m[2:], 0)
	binary.BigEndian.PutUint32(m[4:], uint32(mtu))
	// The pseudo-header of RFC 8200 section 8.1: addresses, upper-layer
	// length and next header; the addresses are summed from h.
	pseudo := uint32(plen) + 58
	put16(m[2:], csum.Checksum(csum.Sum(pseudo, h[8:40]), m))
}
