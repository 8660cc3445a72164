// Package csumtest checks the checksums of a frame from scratch, for the
// tests of elements that update them incrementally.
package csumtest

import (
	"encoding/binary"
	"fmt"

	"github.com/xlbproject/xlb/elements/internal/csum"
)

// Check returns an error naming the first wrong checksum of an Ethernet
// frame: the IPv4 header's, and the TCP, UDP, ICMP or ICMPv6 checksum of a
// datagram that is not a fragment (an IPv6 one without extension
// headers). Other frames pass.
func Check(frame []byte) error {
	if len(frame) < 14 {
		return nil
	}
	d := frame[14:]
	var pseudo uint32
	var proto uint8
	var l4 []byte
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		if len(d) < 20 {
			return nil
		}
		ihl := int(d[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(d[2:]))
		if ihl < 20 || tot < ihl || tot > len(d) {
			return nil
		}
		if s := csum.Sum(0, d[:ihl]); s != 0xffff {
			return fmt.Errorf("IPv4 header checksum %#04x is wrong (sum %#04x)", binary.BigEndian.Uint16(d[10:]), s)
		}
		if binary.BigEndian.Uint16(d[6:])&0x3fff != 0 {
			return nil
		}
		proto, l4 = d[9], d[ihl:tot]
		pseudo = csum.Sum(uint32(proto)+uint32(len(l4)), d[12:20])
		switch proto {
		case 1:
			pseudo = 0 // ICMP's checksum has no pseudo-header
		case 58:
			return nil // ICMPv6 is IPv6's
		}
		if proto == 17 && len(l4) >= 8 && binary.BigEndian.Uint16(l4[6:]) == 0 {
			return nil
		}
	case 0x86dd:
		if len(d) < 40 {
			return nil
		}
		tot := 40 + int(binary.BigEndian.Uint16(d[4:]))
		if tot > len(d) {
			return nil
		}
		proto, l4 = d[6], d[40:tot]
		pseudo = csum.Sum(uint32(proto)+uint32(len(l4)), d[8:40])
		if proto == 1 {
			return nil // ICMP is IPv4's; IPv6 has ICMPv6
		}
	default:
		return nil
	}
	switch proto {
	case 6, 17, 1, 58:
	default:
		return nil
	}
	if s := csum.Sum(pseudo, l4); s != 0xffff {
		return fmt.Errorf("protocol %d checksum is wrong (sum %#04x)", proto, s)
	}
	return nil
}
