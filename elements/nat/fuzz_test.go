package nat

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/elements/internal/csum/csumtest"
	"github.com/xlbproject/xlb/elements/internal/flowhash"
	"github.com/xlbproject/xlb/pipeline"
)

// FuzzPush: whatever the frame Parse5Tuple passes and the real it names,
// in either direction, Push either leaves it unchanged on bad with a
// reason, or sends it on out translated: a client's packet to its real's
// address and (mapped) port, the reply it tracks being the exact reverse,
// hashed as Parse5Tuple hashes replies; a reply from VIP:vport. Only the
// address, the port and the checksums change, and a frame whose
// checksums were right leaves with right checksums, computed from scratch
// (an ICMP error's included, whose quote changes too).
func FuzzPush(f *testing.F) {
	v4, v6 := vip4.AsSlice(), vip6.AsSlice()
	be2, be6 := net.IP{10, 0, 0, 22}, net.ParseIP("2001:db8:1::23")
	f.Add(tcpTo(4, v4, 40000, 80), uint32(realKeep), false, uint16(0))                                                                // kept port
	f.Add(tcpTo(4, v4, 40000, 80), uint32(realMapped), false, uint16(0))                                                              // mapped port
	f.Add(tcpTo(6, v6, 40000, 80), uint32(realV6), false, uint16(0))                                                                  // IPv6, mapped
	f.Add(frame(client[4], v4, &layers.UDP{SrcPort: 5353, DstPort: 80}, gopacket.Payload("q")), uint32(realMapped), false, uint16(0)) // UDP
	f.Add(frame(client[4], v4, &layers.UDP{SrcPort: 5353, DstPort: 80}), uint32(realKeep), false, uint16(0))                          // UDP, empty
	f.Add(frame(client[6], v6, &layers.UDP{SrcPort: 5353, DstPort: 80}, gopacket.Payload("q")), uint32(realV6), false, uint16(0))
	f.Add(frame(client[4], v4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}), uint32(realKeep), false, uint16(0))                // echo
	f.Add(frame(client[6], v6, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, gopacket.Payload{0, 7, 0, 1}), uint32(realV6), false, uint16(0)) // echo
	f.Add(frame(be2, client[4], &layers.TCP{SrcPort: 8080, DstPort: 40000, SYN: true, ACK: true}), uint32(realMapped), true, uint16(80))                       // reply
	f.Add(frame(be6, client[6], &layers.TCP{SrcPort: 8443, DstPort: 40000, SYN: true, ACK: true}), uint32(realV6), true, uint16(80))                           // reply, IPv6
	f.Add(frame(be6, client[6], &layers.UDP{SrcPort: 8443, DstPort: 5353}, gopacket.Payload("a")), uint32(realV6), true, uint16(80))                           // UDP reply
	f.Add(tcpTo(4, v4, 40000, 80), uint32(realV6), false, uint16(0))                                                                                           // other family
	f.Add(tcpTo(4, v4, 40000, 80), uint32(9), false, uint16(0))                                                                                                // no real
	// Replies of VIP port 0 are looked up statelessly, as ConnTrack's
	// miss does: their real and VIP port are NAT's.
	f.Add(frame(be2, client[4], &layers.TCP{SrcPort: 8080, DstPort: 40000, SYN: true, ACK: true}), uint32(0), true, uint16(0))
	f.Add(frame(be6, client[6], &layers.UDP{SrcPort: 8443, DstPort: 5353}, gopacket.Payload("a")), uint32(0), true, uint16(0))
	toVIP4, toClient4, toVIP6, toClient6 := icmpErrors()
	f.Add(toVIP4, uint32(realMapped), false, uint16(0))
	f.Add(toClient4, uint32(realMapped), true, uint16(80))
	f.Add(toVIP6, uint32(realV6), false, uint16(0))
	f.Add(toClient6, uint32(realV6), true, uint16(80))
	h := newHarness(f)
	key := flowhash.NewKey(42)
	f.Fuzz(func(t *testing.T, data []byte, id uint32, reply bool, vport uint16) {
		buf := append([]byte(nil), data...)
		tracked := h.ct.n
		p, port, ok := h.push(buf, id, reply, vport)
		if !ok {
			return
		}
		if reply && vport == 0 {
			// Stateless: the real and VIP port of the reply's source.
			id, vport = p.Backend, p.VIPPort
			r, f := h.snap.Real(id, epoch), &p.Flow
			if want := h.nat.ports[id]; r == nil || r.Addr16 != f.Src || f.SrcPort != want && (want != 0 || f.SrcPort != vport) {
				t.Fatalf("reply from %v port %d given real %d (%v) and VIP port %d", f.Src, f.SrcPort, id, r, vport)
			}
		}
		d := p.Data()
		in := data[:len(d)] // without the padding Parse5Tuple cut off
		if port == portBad {
			if p.Reason == pipeline.ReasonNone || !bytes.Equal(d, in) {
				t.Fatalf("dropped with reason %v, frame % x from % x", p.Reason, d, in)
			}
			return
		}
		if port != portOut {
			t.Fatalf("port %d", port)
		}
		if csumtest.Check(in) == nil {
			if err := csumtest.Check(d); err != nil {
				t.Fatalf("%v: % x from % x", err, d, in)
			}
		}
		f := &p.Flow
		if f.Flags&pipeline.FlowICMPError != 0 {
			return // its quote changes too: TestICMPError
		}
		v4 := f.Family == 4
		l3, l4 := int(p.L3), int(p.L4)
		portsOK := (f.Proto == 6 || f.Proto == 17) && f.Flags&pipeline.FlowLaterFragment == 0
		r := h.snap.Real(id, epoch)
		addr := func(off int) netip.Addr {
			if v4 {
				return netip.AddrFrom4([4]byte(d[l3+off : l3+off+4]))
			}
			return netip.AddrFrom16([16]byte(d[l3+off : l3+off+16]))
		}
		// The fields that may change: the address, the port, the
		// checksums; everything else is compared.
		changed := map[int]bool{}
		mark := func(off, n int) {
			for i := off; i < off+n; i++ {
				changed[i] = true
			}
		}
		if v4 {
			mark(l3+10, 2)
		}
		switch {
		case f.Flags&pipeline.FlowLaterFragment != 0:
		case f.Proto == 6:
			mark(l4+16, 2)
		case f.Proto == 17:
			mark(l4+6, 2)
		case f.Proto == 58:
			mark(l4+2, 2)
		}
		if reply {
			off := map[bool]int{true: 12, false: 8}[v4]
			if got := addr(off); got != h.snap.VIPs[r.VIP].Addr {
				t.Fatalf("reply from %v", got)
			}
			mark(l3+off, map[bool]int{true: 4, false: 16}[v4])
			if portsOK {
				if got := be16(d[l4:]); got != vport {
					t.Fatalf("reply from port %d, want %d", got, vport)
				}
				mark(l4, 2)
			}
		} else {
			off := map[bool]int{true: 16, false: 24}[v4]
			if got := addr(off); got != r.Addr {
				t.Fatalf("sent to %v, want %v", got, r.Addr)
			}
			mark(l3+off, map[bool]int{true: 4, false: 16}[v4])
			want := f.DstPort
			if bp := h.nat.Ports[r.Backend]; bp != 0 && portsOK {
				want = uint16(bp)
			}
			if portsOK {
				if got := be16(d[l4+2:]); got != want {
					t.Fatalf("sent to port %d, want %d", got, want)
				}
				mark(l4+2, 2)
			}
			if f.Flags&pipeline.FlowLaterFragment == 0 {
				if h.ct.n != tracked+1 {
					t.Fatal("no reply tracked")
				}
				rf := pipeline.Flow{Src: r.Addr16, Dst: f.Src, SrcPort: want, DstPort: f.SrcPort, Proto: f.Proto, Family: f.Family}
				if h.ct.reply != rf || h.ct.hash != key.Hash(&rf) {
					t.Fatalf("tracked reply %+v hash %#x, want %+v hash %#x", h.ct.reply, h.ct.hash, rf, key.Hash(&rf))
				}
			}
		}
		for i := range d {
			if !changed[i] && d[i] != in[i] {
				t.Fatalf("byte %d changed: % x from % x", i, d, in)
			}
		}
	})
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
