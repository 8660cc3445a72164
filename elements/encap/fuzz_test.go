package encap

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// Fuzz inputs: the frame, the L3 offset Parse5Tuple would have written, the
// headroom in front of the frame (up to 255), the real chosen (its low 3 bits: 0 is an
// unused slot, 1-4 the fixture reals, 5-7 out of range; bit 3 set drops
// source6 from the configuration), and the flow hash.

func FuzzGREEncap(f *testing.F)  { fuzzEncap(f, tunnelGRE) }
func FuzzIPIPEncap(f *testing.F) { fuzzEncap(f, tunnelIPIP) }

func fuzzEncap(f *testing.F, tun tunnel) {
	v4, v6 := cat(ethIn4, inner4In), cat(ethIn6, inner6In)
	vlan := goldens[8].in
	ttl1 := slices.Clone(v4)
	ttl1[14+8] = 1
	noDF := slices.Clone(v4)
	noDF[14+6] = 0
	options := cat(ethIn4, []byte{
		0x46, 0x00, 0x00, 0x1c, 0, 0, 0, 0, 0x40, 0x11, 0, 0, // IHL 6, total length 28, checksum left wrong
		203, 0, 113, 7, 192, 0, 2, 10,
		0x01, 0x01, 0x01, 0x00, // four bytes of options (NOP NOP NOP EOL)
		0x9c, 0x40, 0x01, 0xbb, // truncated UDP: encap does not care
	})
	f.Add(v4, uint16(14), uint8(255), uint8(realB4), uint64(testHash))                         // v4 to a v4 backend
	f.Add(v4, uint16(14), uint8(255), uint8(realB6), uint64(testHash))                         // v4 to a v6 backend
	f.Add(v6, uint16(14), uint8(255), uint8(realC4), uint64(0))                                // v6 to a v4 backend, zero hash
	f.Add(v6, uint16(14), uint8(255), uint8(realC6), uint64(1<<20))                            // v6 to a v6 backend
	f.Add(vlan, uint16(18), uint8(255), uint8(realB6), uint64(testHash))                       // 802.1Q tag kept
	f.Add(cat(v4, make([]byte, 14)), uint16(14), uint8(64), uint8(realB4), uint64(0))          // Ethernet padding
	f.Add(options, uint16(14), uint8(64), uint8(realB4), uint64(0))                            // IPv4 options
	f.Add(noDF, uint16(14), uint8(64), uint8(realB4), uint64(0))                               // DF clear
	f.Add(ttl1, uint16(14), uint8(64), uint8(realB4), uint64(0))                               // TTL 1: ttl_exceeded
	f.Add(v4, uint16(14), uint8(23), uint8(realB4), uint64(0))                                 // one byte short of headroom
	f.Add(v6, uint16(14), uint8(64), uint8(realC6|8), uint64(0))                               // no source6: nosource
	f.Add(v4, uint16(14), uint8(64), uint8(0), uint64(0))                                      // unused slot: nobackend
	f.Add(v4, uint16(14), uint8(64), uint8(7), uint64(0))                                      // out of range: nobackend
	f.Add(v4[:30], uint16(14), uint8(64), uint8(realB4), uint64(0))                            // truncated: malformed
	f.Add(v4, uint16(60), uint8(64), uint8(realB4), uint64(0))                                 // L3 past the end
	f.Add(cat(ethIn6, inner4In), uint16(14), uint8(64), uint8(realB4), uint64(0))              // EtherType/version mismatch
	f.Add([]byte{}, uint16(0), uint8(0), uint8(realB4), uint64(0))                             // nothing at all: malformed
	f.Add(cat(ethIn6, inner6In[:40]), uint16(14), uint8(64), uint8(realC4), uint64(0))         // IPv6 claiming 12 bytes it lacks
	f.Add(cat(ethIn4, ethIn4[12:], inner4In), uint16(16), uint8(64), uint8(realB4), uint64(0)) // odd L2 length
	f.Add(cat(ethIn6, inner6In), uint16(14), uint8(64), uint8(realC6|16), uint64(0))           // mtu 100: Packet Too Big
	f.Add(cat(ethIn4, inner4In), uint16(14), uint8(64), uint8(realB6|16), uint64(0))           // mtu 100: fits

	// Fast-path bounds: an inner packet exactly filling the MTU of 100
	// (IPv4 in GRE: 76 bytes), one byte over; a VLAN tag before IPv4.
	fits := cat(ethIn4, []byte{0x45, 0, 0, 76, 0, 0, 0x40, 0, 64, 17, 0, 0, 203, 0, 113, 7, 192, 0, 2, 10}, make([]byte, 56))
	over := cat(ethIn4, []byte{0x45, 0, 0, 77, 0, 0, 0x40, 0, 64, 17, 0, 0, 203, 0, 113, 7, 192, 0, 2, 10}, make([]byte, 57))
	f.Add(fits, uint16(14), uint8(64), uint8(realB4|16), uint64(0))
	f.Add(over, uint16(14), uint8(64), uint8(realB4|16), uint64(0))
	f.Add(cat(ethIn4[:12], []byte{0x81, 0, 0, 7}, ethIn4[12:], inner4In), uint16(18), uint8(64), uint8(realB4), uint64(0))

	f.Fuzz(func(t *testing.T, frame []byte, l3 uint16, headroom uint8, sel uint8, hash uint64) {
		e, snap := fuzzElement(t, tun, sel)
		backend := uint32(sel & 7)
		p := newPacket(frame, int(headroom), l3, backend)
		p.Hash = hash

		port := e.Push(0, p)
		end(e)
		out := p.Data()

		// Push's fast path, PushBatch, decides every packet as encap does
		// alone.
		slow, _ := fuzzElement(t, tun, sel)
		q := newPacket(frame, int(headroom), l3, backend)
		q.Hash = hash
		var slowPort int
		if r := slow.snap.Real(q.Backend, q.Epoch); r != nil {
			slowPort = slow.encap(q, r, q.Data())
		} else {
			slowPort = slow.drop(q, dropNoBackend)
		}
		end(slow)
		if port != slowPort || p.Reason != q.Reason || !bytes.Equal(out, q.Data()) || p.L3 != q.L3 || p.L4 != q.L4 ||
			e.totPkts.Load() != slow.totPkts.Load() || e.totBytes.Load() != slow.totBytes.Load() {
			t.Fatalf("Push and encap differ: port %d/%d, reason %v/%v, L3 %d/%d, L4 %d/%d\n% x\n% x",
				port, slowPort, p.Reason, q.Reason, p.L3, q.L3, p.L4, q.L4, out, q.Data())
		}
		if port == portBad {
			if p.Reason == pipeline.ReasonNone || !slices.Contains(dropReasons[:], p.Reason) {
				t.Fatalf("bad with reason %v", p.Reason)
			}
			if !bytes.Equal(out, frame) || p.L3 != l3 || p.L4 != 0 {
				t.Fatalf("a dropped packet was modified")
			}
			return
		}
		if port == portICMP {
			checkReply(t, frame, out, p)
			return
		}
		if port != portOut {
			t.Fatalf("port %d", port)
		}
		checkEncapsulated(t, tun, frame, out, p, snap.Reals.At(backend))
	})
}

// checkEncapsulated checks the invariants of an output packet against the
// input frame, reading every header field by hand.
func checkEncapsulated(t *testing.T, tun tunnel, frame, out []byte, p *pipeline.Packet, r *snapshot.Real) {
	t.Helper()
	l3 := int(p.L3)
	inner := out[p.L4:]
	if len(inner) > len(frame)-l3 {
		t.Fatalf("inner packet of %d bytes from a frame with %d after L3", len(inner), len(frame)-l3)
	}
	orig := frame[l3 : l3+len(inner)]

	// L2: unchanged but for the last EtherType.
	if !bytes.Equal(out[:l3-2], frame[:l3-2]) {
		t.Fatalf("L2 changed: % x -> % x", frame[:l3], out[:l3])
	}
	outerType := binary.BigEndian.Uint16(out[l3-2:])

	// Inner: unchanged but for TTL and, for IPv4, the checksum.
	var innerType uint16
	var wantProto, tos byte
	wantDF := true
	switch orig[0] >> 4 {
	case 4:
		innerType, wantProto, tos, wantDF = etherTypeIPv4, protoIPv4, orig[1], orig[6]&0x40 != 0
		if int(binary.BigEndian.Uint16(orig[2:])) != len(inner) {
			t.Fatalf("inner length %d, total length field %d", len(inner), binary.BigEndian.Uint16(orig[2:]))
		}
		if inner[8] != orig[8]-1 || !bytes.Equal(inner[:8], orig[:8]) || !bytes.Equal(inner[9:10], orig[9:10]) || !bytes.Equal(inner[12:], orig[12:]) {
			t.Fatalf("inner IPv4 changed beyond TTL/checksum:\n% x\n% x", orig, inner)
		}
		ihl := int(orig[0]&0x0f) * 4
		if rfc1071(orig[:ihl]) == 0 && rfc1071(inner[:ihl]) != 0 {
			t.Fatalf("a valid inner checksum became invalid")
		}
	case 6:
		innerType, wantProto, tos = etherTypeIPv6, protoIPv6, orig[0]<<4|orig[1]>>4
		if 40+int(binary.BigEndian.Uint16(orig[4:])) != len(inner) {
			t.Fatalf("inner length %d, payload length field %d", len(inner), binary.BigEndian.Uint16(orig[4:]))
		}
		if inner[7] != orig[7]-1 || !bytes.Equal(inner[:7], orig[:7]) || !bytes.Equal(inner[8:], orig[8:]) {
			t.Fatalf("inner IPv6 changed beyond hop limit")
		}
	default:
		t.Fatalf("inner version %d went out", orig[0]>>4)
	}
	if binary.BigEndian.Uint16(frame[l3-2:]) != innerType {
		t.Fatalf("input EtherType %#04x with IP version %d went out", binary.BigEndian.Uint16(frame[l3-2:]), orig[0]>>4)
	}

	// Outer IP header, of the backend's family.
	o := out[l3:p.L4]
	tunLen := 0
	if tun == tunnelGRE {
		tunLen, wantProto = greHdrLen, protoGRE
	}
	var proto byte
	switch r.Family {
	case 4:
		if outerType != etherTypeIPv4 || len(o) != ipv4HdrLen+tunLen || o[0] != 0x45 {
			t.Fatalf("outer IPv4: EtherType %#04x, %d bytes, first byte %#02x", outerType, len(o), o[0])
		}
		if rfc1071(o[:20]) != 0 || int(binary.BigEndian.Uint16(o[2:])) != len(out)-l3 || o[8] != 64 ||
			o[6]&^0x40 != 0 || o[7] != 0 || !bytes.Equal(o[12:16], []byte{198, 51, 100, 1}) || !bytes.Equal(o[16:20], r.Addr16[12:]) {
			t.Fatalf("outer IPv4 header invalid: % x", o[:20])
		}
		if o[1] != tos || (o[6] == 0x40) != wantDF {
			t.Fatalf("outer TOS %#02x flags %#02x; inner TOS %#02x, DF wanted %v", o[1], o[6], tos, wantDF)
		}
		proto = o[9]
	case 6:
		if outerType != etherTypeIPv6 || len(o) != ipv6HdrLen+tunLen || o[0]>>4 != 6 {
			t.Fatalf("outer IPv6: EtherType %#04x, %d bytes", outerType, len(o))
		}
		if int(binary.BigEndian.Uint16(o[4:])) != len(out)-l3-40 || o[7] != 64 || binary.BigEndian.Uint32(o)&0xfffff == 0 ||
			!bytes.Equal(o[8:24], src6) || !bytes.Equal(o[24:40], r.Addr16[:]) {
			t.Fatalf("outer IPv6 header invalid: % x", o[:40])
		}
		if o[0]<<4|o[1]>>4 != tos {
			t.Fatalf("outer traffic class %#02x, inner %#02x", o[0]<<4|o[1]>>4, tos)
		}
		proto = o[6]
	}
	if proto != wantProto {
		t.Fatalf("outer protocol %d, want %d", proto, wantProto)
	}
	if tun == tunnelGRE {
		g := o[len(o)-greHdrLen:]
		if g[0] != 0 || g[1] != 0 || binary.BigEndian.Uint16(g[2:]) != innerType {
			t.Fatalf("GRE header % x", g)
		}
	}
}

// checkReply checks an ICMP reply to a packet too big: addresses swapped
// from the quoted packet, a right checksum, at most 1280 bytes of IPv6.
func checkReply(t *testing.T, frame, out []byte, p *pipeline.Packet) {
	l3, l4 := int(p.L3), int(p.L4)
	ip, m := out[l3:], out[l4:]
	if ip[0]>>4 == 4 {
		q := m[8:]
		if !bytes.Equal(ip[12:16], q[16:20]) || !bytes.Equal(ip[16:20], q[12:16]) || rfc1071(ip[:20]) != 0 || rfc1071(m) != 0 || m[0] != 3 || m[1] != 4 {
			t.Fatalf("bad ICMP reply % x", out)
		}
		return
	}
	q := m[8:]
	pseudo := cat(ip[8:40], []byte{0, 0, byte(len(m) >> 8), byte(len(m)), 0, 0, 0, 58})
	if !bytes.Equal(ip[8:24], q[24:40]) || !bytes.Equal(ip[24:40], q[8:24]) || rfc1071(cat(pseudo, m)) != 0 || len(ip) > 1280 || m[0] != 2 {
		t.Fatalf("bad ICMPv6 reply % x", out)
	}
	if !bytes.Equal(q, frame[l3:][:len(q)]) {
		t.Fatalf("quote is not the packet")
	}
}

// fuzzElement is the element fuzzEncap pushes to, started on a batch: sel
// bit 8 leaves source6 out, bit 16 sets an MTU of 100.
func fuzzElement(t *testing.T, tun tunnel, sel uint8) (*Encap, *snapshot.Snapshot) {
	e := newEncap(tun)
	e.Source4 = "198.51.100.1"
	if sel&8 == 0 {
		e.Source6 = "2001:db8:ffff::1"
	}
	if sel&16 != 0 {
		e.MTU = 100
	}
	snap := testSnapshot()
	if err := e.Provision(testContext(snapshot.NewStore(snap), 0, 1)); err != nil {
		t.Fatal(err)
	}
	start(e)
	return e, snap
}
