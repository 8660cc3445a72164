package encap

import (
	"encoding/binary"

	"github.com/xlbproject/xlb/elements/internal/csum"
)

func be16(b []byte) uint16     { return binary.BigEndian.Uint16(b) }
func put16(b []byte, v uint16) { binary.BigEndian.PutUint16(b, v) }

// moveL2 moves the l3 bytes of link-layer header at d[from:] to the front
// of d. An Ethernet header, tagged once or not (8 to 16 bytes), moves as
// two 8-byte words, both loaded before either is stored, so an overlap
// does not matter: copy would call memmove for those few bytes.
func moveL2(d []byte, from, l3 int) {
	if l3 < 8 || l3 > 16 {
		copy(d[:l3], d[from:from+l3])
		return
	}
	src := d[from : from+l3]
	a, b := binary.LittleEndian.Uint64(src), binary.LittleEndian.Uint64(src[l3-8:])
	binary.LittleEndian.PutUint64(d, a)
	binary.LittleEndian.PutUint64(d[l3-8:], b)
}

// outer4 is what an outer IPv4 header to one real holds whatever the
// packet: its destination and protocol, and the checksum's sum over them,
// the version and IHL, the TTL and the source.
type outer4 struct {
	// epoch is the real's, in Encap.outer; 0 there when the real has no
	// ID, or is not IPv4, or the element has no source4.
	epoch uint32
	dst   uint32
	sum   uint32
	proto byte
}

// newOuter4 returns the outer4 of an IPv4 header to dst (big-endian) of
// protocol proto.
func (e *Encap) newOuter4(dst uint32, proto byte) outer4 {
	return outer4{dst: dst, proto: proto, sum: 0x4500 + uint32(e.ttl)<<8 + uint32(proto) +
		e.src4U32>>16 + e.src4U32&0xffff + dst>>16 + dst&0xffff}
}

// writeIPv4 writes a 20-byte outer IPv4 header of o into h, in three stores
// (two 8-byte words and the destination) rather than a dozen narrow ones.
func (e *Encap) writeIPv4(h []byte, tos byte, totalLen int, df bool, o *outer4) {
	_ = h[19]
	var flags uint64
	if df {
		flags = 0x4000
	}
	id := e.id
	// A per-instance counter; workers start at their index and step by
	// the worker count, so two workers never reuse an ID at once.
	e.id += e.idStep
	// The checksum (RFC 791) is finished from the values in registers, not
	// read back from h: loading words just written would stall on store
	// forwarding.
	s := o.sum + uint32(tos) + uint32(totalLen&0xffff) + uint32(id) + uint32(flags)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	// Version 4, IHL 5 (no options); DSCP and ECN both copied from the
	// inner header: DSCP per the uniform model of RFC 2983, ECN per RFC
	// 6040 normal mode (copy on encap); fragment offset 0.
	binary.BigEndian.PutUint64(h[0:8], 0x45<<56|uint64(tos)<<48|uint64(totalLen&0xffff)<<32|uint64(id)<<16|flags)
	binary.BigEndian.PutUint64(h[8:16], uint64(e.ttl)<<56|uint64(o.proto)<<48|uint64(^uint16(s))<<32|uint64(e.src4U32))
	binary.BigEndian.PutUint32(h[16:20], o.dst)
}

// writeIPv6 writes a 40-byte outer IPv6 header into h.
func (e *Encap) writeIPv6(h []byte, tc byte, payloadLen int, label uint32, proto byte, dst []byte) {
	_ = h[39]
	// Version 6, traffic class copied from the inner header (DSCP per
	// RFC 2983 uniform model, ECN per RFC 6040 normal mode), flow label.
	binary.BigEndian.PutUint32(h, 6<<28|uint32(tc)<<20|label)
	put16(h[4:], uint16(payloadLen))
	h[6] = proto // next header
	h[7] = e.ttl // hop limit
	copy(h[8:24], e.src6[:])
	copy(h[24:40], dst)
}

// flowLabel folds the inner flow's hash into 20 bits (RFC 6438 section 3:
// the tunnel ingress labels by the inner flow, so ECMP and LAG after the
// load balancer can spread tunnels without parsing into them). Zero means
// "unlabelled" (RFC 6437), so it is avoided.
func flowLabel(h uint64) uint32 {
	l := uint32(h^h>>20^h>>40) & 0xfffff
	if l == 0 {
		l = 1
	}
	return l
}

// decTTL decrements the TTL / hop limit of the IP header at ip (known to be
// > 1) and, for IPv4, updates the header checksum incrementally with RFC 1624
// equation 3, HC' = ~(~HC + ~m + m'), where m is the 16-bit word holding
// TTL and protocol. An inner checksum that was wrong stays wrong, so the
// backend still drops the packet.
func decTTL(ip []byte, v4 bool) {
	if !v4 {
		ip[7]--
		return
	}
	_ = ip[11]
	// TTL and protocol are written back as the word they were read as:
	// reading it again after a byte store would stall store forwarding.
	old := be16(ip[8:])
	ttlProto := old - 0x100
	put16(ip[8:], ttlProto)
	put16(ip[10:], csum.Replace(be16(ip[10:]), old, ttlProto))
}
