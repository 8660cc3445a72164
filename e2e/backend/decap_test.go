package backend

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

var (
	local4 = netip.MustParseAddr("10.90.2.21")
	local6 = netip.MustParseAddr("fd00:90:2::21")
	local  = []netip.Addr{local4, local6}
)

// inner4 is an IPv4 packet client -> VIP (a header only; Decap does not
// look further than the version).
var inner4 = []byte{
	0x45, 0x00, 0x00, 0x14, // version 4, IHL 5, TOS, total length 20
	0x00, 0x00, 0x40, 0x00, // ID, DF
	0x40, 0x06, 0x00, 0x00, // TTL 64, TCP, checksum (not checked here)
	10, 90, 1, 2, // client
	10, 90, 100, 10, // VIP
}

// inner6 is an IPv6 packet header client -> VIP6 with no payload.
var inner6 = append([]byte{
	0x60, 0x00, 0x00, 0x00, // version 6
	0x00, 0x00, 0x06, 0x40, // payload length 0, TCP, hop limit 64
	0xfd, 0x00, 0, 0x90, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // client fd00:90:1::2
}, []byte{0xfd, 0x00, 0, 0x90, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}...) // VIP fd00:90:100::10

// outer4 is an IPv4 header 10.90.2.10 -> dst carrying proto and n
// payload bytes, with a correct checksum.
func outer4(dst netip.Addr, proto byte, n int) []byte {
	h := []byte{
		0x45, 0x00, 0, 0, // version 4, IHL 5, TOS, total length (below)
		0x00, 0x00, 0x40, 0x00, // ID, DF
		0x40, proto, 0, 0, // TTL 64, protocol, checksum (below)
		10, 90, 2, 10, // LB
		0, 0, 0, 0, // dst (below)
	}
	binary.BigEndian.PutUint16(h[2:], uint16(20+n))
	d := dst.As4()
	copy(h[16:], d[:])
	binary.BigEndian.PutUint16(h[10:], Checksum(h))
	return h
}

// outer6 is an IPv6 header fd00:90:2::10 -> dst.
func outer6(dst netip.Addr, next byte, n int) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(n))
	h[6], h[7] = next, 64
	src := netip.MustParseAddr("fd00:90:2::10").As16()
	copy(h[8:], src[:])
	d := dst.As16()
	copy(h[24:], d[:])
	return h
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

var (
	greIPv4 = []byte{0x00, 0x00, 0x08, 0x00} // GRE: no flags, version 0, IPv4
	greIPv6 = []byte{0x00, 0x00, 0x86, 0xdd} // GRE: IPv6
	greKey  = []byte{0x20, 0x00, 0x08, 0x00, 0, 0, 0, 7}
	greCKS  = []byte{0xb0, 0x00, 0x08, 0x00, 0xab, 0xcd, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2} // C, K, S
)

func TestDecap(t *testing.T) {
	other := netip.MustParseAddr("10.90.2.22")
	badSum := outer4(local4, 47, 24)
	badSum[10] ^= 0xff
	frag := outer4(local4, 4, 20)
	frag[6] = 0x20 // MF
	binary.BigEndian.PutUint16(frag[10:], 0)
	binary.BigEndian.PutUint16(frag[10:], Checksum(frag))
	padded := cat(outer4(local4, 4, 20), inner4, []byte{0, 0, 0, 0, 0, 0}) // Ethernet padding after total length

	cases := []struct {
		name  string
		pkt   []byte
		want  Result
		inner []byte
	}{
		{"GRE4 inner4", cat(outer4(local4, 47, 24), greIPv4, inner4), ResultGRE, inner4},
		{"GRE4 inner6", cat(outer4(local4, 47, 44), greIPv6, inner6), ResultGRE, inner6},
		{"GRE6 inner6", cat(outer6(local6, 47, 44), greIPv6, inner6), ResultGRE, inner6},
		{"GRE6 inner4", cat(outer6(local6, 47, 24), greIPv4, inner4), ResultGRE, inner4},
		{"GRE key", cat(outer4(local4, 47, 28), greKey, inner4), ResultGRE, inner4},
		{"GRE csum key seq", cat(outer4(local4, 47, 36), greCKS, inner4), ResultGRE, inner4},
		{"IPIP", cat(outer4(local4, 4, 20), inner4), ResultIPIP, inner4},
		{"IPv6 in IPv4", cat(outer4(local4, 41, 40), inner6), ResultIPIP, inner6},
		{"IP6IP6", cat(outer6(local6, 41, 40), inner6), ResultIPIP, inner6},
		{"IPv4 in IPv6", cat(outer6(local6, 4, 20), inner4), ResultIPIP, inner4},
		{"padding dropped", padded, ResultIPIP, inner4},
		{"IPv6 padding dropped", cat(outer6(local6, 4, 20), inner4, []byte{0, 0}), ResultIPIP, inner4},
		{"IPv6 payload past the end", cat(outer6(local6, 4, 24), inner4), ResultMalformed, nil},
		{"IPv6 not local", cat(outer6(netip.MustParseAddr("fd00:90:2::22"), 41, 40), inner6), ResultNotLocal, nil},
		{"not local", cat(outer4(other, 4, 20), inner4), ResultNotLocal, nil},
		{"not a tunnel", cat(outer4(local4, 6, 20), inner4), ResultOther, nil},
		{"v6 extension header", cat(outer6(local6, 0, 48), make([]byte, 8), inner6), ResultOther, nil},
		{"fragment", cat(frag, inner4), ResultUnsupported, nil},
		{"GRE version 1", cat(outer4(local4, 47, 24), []byte{0x00, 0x01, 0x08, 0x00}, inner4), ResultUnsupported, nil},
		{"GRE routing", cat(outer4(local4, 47, 24), []byte{0x40, 0x00, 0x08, 0x00}, inner4), ResultUnsupported, nil},
		{"GRE ethernet payload", cat(outer4(local4, 47, 24), []byte{0x00, 0x00, 0x65, 0x58}, inner4), ResultUnsupported, nil},
		{"GRE type/version mismatch", cat(outer4(local4, 47, 24), greIPv6, inner4), ResultMalformed, nil},
		{"GRE short", cat(outer4(local4, 47, 2), []byte{0, 0}), ResultMalformed, nil},
		{"GRE key short", cat(outer4(local4, 47, 6), greKey[:6]), ResultMalformed, nil},
		{"IPIP empty", outer4(local4, 4, 0), ResultMalformed, nil},
		{"IPIP carrying v6", cat(outer4(local4, 4, 40), inner6), ResultMalformed, nil},
		{"bad checksum", cat(badSum, greIPv4, inner4), ResultMalformed, nil},
		{"truncated", cat(outer4(local4, 4, 20), inner4[:10]), ResultMalformed, nil},
		{"v6 truncated", cat(outer6(local6, 41, 40), inner6[:30]), ResultMalformed, nil},
		{"version 5", []byte{0x50, 0, 0, 0}, ResultMalformed, nil},
		{"empty", nil, ResultMalformed, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inner, r := Decap(c.pkt, local)
			if r != c.want || !bytes.Equal(inner, c.inner) {
				t.Errorf("Decap = %v % x, want %v % x", r, inner, c.want, c.inner)
			}
		})
	}
}

func TestDecapAllocs(t *testing.T) {
	pkt := cat(outer4(local4, 47, 24), greIPv4, inner4)
	if n := testing.AllocsPerRun(100, func() { Decap(pkt, local) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}

func FuzzDecap(f *testing.F) {
	f.Add(cat(outer4(local4, 47, 24), greIPv4, inner4)) // GRE over IPv4
	f.Add(cat(outer6(local6, 47, 44), greIPv6, inner6)) // GRE over IPv6
	f.Add(cat(outer4(local4, 47, 36), greCKS, inner4))  // GRE with C, K, S
	f.Add(cat(outer4(local4, 4, 20), inner4))           // IPIP
	f.Add(cat(outer6(local6, 41, 40), inner6))          // IP6IP6
	f.Add([]byte{0x45})                                 // truncated
	f.Fuzz(func(t *testing.T, pkt []byte) {
		inner, r := Decap(pkt, local)
		ok := r == ResultGRE || r == ResultIPIP
		if ok != (inner != nil) {
			t.Fatalf("result %v with inner % x", r, inner)
		}
		if !ok {
			return
		}
		// inner is a non-empty IP packet lying inside pkt, after the
		// outer header.
		if len(inner) == 0 || (inner[0]>>4 != 4 && inner[0]>>4 != 6) {
			t.Fatalf("inner % x", inner)
		}
		off := cap(pkt) - cap(inner) // inner is pkt[off:...]
		if off < 20 || &pkt[off] != &inner[0] || off+len(inner) > len(pkt) {
			t.Fatalf("inner at offset %d", off)
		}
	})
}

func BenchmarkDecap(b *testing.B) {
	pkt := cat(outer4(local4, 47, 24+1400), greIPv4, inner4, make([]byte, 1400))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		Decap(pkt, local)
	}
}

// TestChecksum: RFC 1071 section 3's example sums to 0xddf2, and splitting
// the data anywhere, odd boundaries included, changes nothing.
func TestChecksum(t *testing.T) {
	data := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Checksum(data); got != ^uint16(0xddf2) {
		t.Fatalf("Checksum = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	for i := range data {
		if got := Checksum(data[:i], data[i:i], data[i:]); got != ^uint16(0xddf2) {
			t.Errorf("split at %d: %#04x", i, got)
		}
	}
	if got := Checksum(data[:3]); got != ^uint16(0x0001+0xf200) {
		t.Errorf("odd length: %#04x, want the last byte padded with a zero", got)
	}
}
