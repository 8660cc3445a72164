// Package csum updates Internet checksums (RFC 1071) incrementally, as RFC
// 1624 does it: for fields rewritten in place (a TTL, an MSS, an address
// or a port), the checksum is adjusted by the difference between the old
// and new words instead of summed again over the packet. A checksum that
// was wrong stays wrong by the same amount, so the receiver still drops
// the packet.
package csum

import "encoding/binary"

// Replace returns checksum hc updated for a 16-bit word changing from old
// to new (RFC 1624 equation 3, HC' = ~(~HC + ~m + m')).
func Replace(hc, old, new uint16) uint16 {
	return Update(hc, uint32(^old)+uint32(new))
}

// Diff returns the unfolded one's complement difference of new over old,
// two fields of the same even length (addresses, ports): the sum of ~m +
// m' over their 16-bit words, for Update. It reads old before writing
// nothing, so the caller may overwrite old with new after.
func Diff(old, new []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(old) && i+1 < len(new); i += 2 {
		s += uint32(^binary.BigEndian.Uint16(old[i:])) + uint32(binary.BigEndian.Uint16(new[i:]))
	}
	return s
}

// Update returns checksum hc adjusted by d, a sum of differences from
// Diff (and Replace's words): ~(~HC + d), folded.
func Update(hc uint16, d uint32) uint16 {
	s := uint64(^hc) + uint64(d)
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return ^uint16(s)
}

// Sum adds b's 16-bit big-endian words (an odd last byte padded with zero,
// RFC 1071) to s and folds the carries; 32 bits hold the sum of any IP
// packet's words.
func Sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	s = s>>16 + s&0xffff
	return s>>16 + s&0xffff
}

// Checksum is the Internet checksum of b with s already summed (RFC 1071).
func Checksum(s uint32, b []byte) uint16 {
	return ^uint16(Sum(s, b))
}
