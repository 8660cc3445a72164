package lab_test

import (
	"encoding/binary"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/e2e/backend"
)

// Hand-written packets: what an LB sends a backend, without xlb.

// ipHeader is an IPv4 (20 bytes, DF, TTL 64) or IPv6 (40 bytes, hop limit
// 64) header for a payload of n bytes.
func ipHeader(src, dst netip.Addr, proto byte, n int) []byte {
	if src.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45                                     // version 4, IHL 5
		binary.BigEndian.PutUint16(h[2:], uint16(20+n)) // total length
		binary.BigEndian.PutUint16(h[6:], 0x4000)       // DF, offset 0
		h[8] = 64                                       // TTL
		h[9] = proto
		s4, d4 := src.As4(), dst.As4()
		copy(h[12:], s4[:])
		copy(h[16:], d4[:])
		binary.BigEndian.PutUint16(h[10:], backend.Checksum(h))
		return h
	}
	h := make([]byte, 40)
	h[0] = 0x60                                  // version 6
	binary.BigEndian.PutUint16(h[4:], uint16(n)) // payload length
	h[6] = proto                                 // next header
	h[7] = 64                                    // hop limit
	s6, d6 := src.As16(), dst.As16()
	copy(h[8:], s6[:])
	copy(h[24:], d6[:])
	return h
}

// tcpSYN is a TCP SYN with an MSS option, n bytes of data (which a kernel
// without a Fast Open cookie ignores) and a correct checksum.
func tcpSYN(src, dst netip.Addr, sport, dport uint16, seq uint32, n int) []byte {
	t := make([]byte, 24+n)
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	binary.BigEndian.PutUint32(t[4:], seq)
	t[12] = 6 << 4                            // data offset: 6 words
	t[13] = 0x02                              // SYN
	binary.BigEndian.PutUint16(t[14:], 64240) // window
	copy(t[20:], []byte{2, 4, 0x05, 0xb4})    // MSS 1460
	binary.BigEndian.PutUint16(t[16:], tcpChecksum(src, dst, t))
	return t
}

// tcpChecksum computes a TCP segment's checksum over the pseudo-header;
// with the checksum field filled in, a correct segment gives 0.
func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	n := len(seg)
	return backend.Checksum(src.AsSlice(), dst.AsSlice(), []byte{0, 6, byte(n >> 8), byte(n)}, seg)
}

type encap struct {
	name     string
	full     bool // outer packet of DefaultInnerMTU bytes
	gre      bool
	outer6   bool // outer IPv6 (else IPv4)
	inner6   bool // inner IPv6 (else IPv4)
	wantGRE  uint64
	wantIPIP uint64
}

// encapsulate wraps inner for dst (a backend) from src (an LB).
func encapsulate(e encap, src, dst netip.Addr, inner []byte) []byte {
	var proto byte
	var payload []byte
	switch {
	case e.gre:
		proto = 47
		et := uint16(0x0800)
		if e.inner6 {
			et = 0x86dd
		}
		// GRE (RFC 2784): flags and version 0, protocol type.
		payload = append([]byte{0, 0, byte(et >> 8), byte(et)}, inner...)
	case e.inner6:
		proto = 41 // IPv6 encapsulation
		payload = inner
	default:
		proto = 4 // IPv4 encapsulation
		payload = inner
	}
	return append(ipHeader(src, dst, proto, len(payload)), payload...)
}

func ethernet(dst, src net.HardwareAddr, ip []byte) []byte {
	et := uint16(0x0800)
	if ip[0]>>4 == 6 {
		et = 0x86dd
	}
	f := append(append(append([]byte{}, dst...), src...), byte(et>>8), byte(et))
	return append(f, ip...)
}

// sendFrame sends a whole Ethernet frame out of iface from the calling
// thread's namespace (call it inside Lab.Do).
func sendFrame(iface string, frame []byte) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6})
}

// tcpOf splits an IP packet into addresses and TCP segment; ok is false
// for anything else.
func tcpOf(p []byte) (src, dst netip.Addr, seg []byte, ok bool) {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4 && p[9] == 6:
		ihl := int(p[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(p[2:]))
		if total > len(p) || total < ihl+20 {
			return
		}
		return netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20])), p[ihl:total], true
	case len(p) >= 60 && p[0]>>4 == 6 && p[6] == 6:
		end := 40 + int(binary.BigEndian.Uint16(p[4:]))
		if end > len(p) || end < 60 {
			return
		}
		return netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40])), p[40:end], true
	}
	return
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
