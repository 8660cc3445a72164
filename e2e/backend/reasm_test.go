package backend

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
)

// bigInner4 is an IPv4 packet client -> VIP of n bytes (the header of
// inner4, then a counting payload).
func bigInner4(n int) []byte {
	p := append(bytes.Clone(inner4), make([]byte, n-len(inner4))...)
	binary.BigEndian.PutUint16(p[2:], uint16(n))
	for i := 20; i < n; i++ {
		p[i] = byte(i)
	}
	return p
}

// frag cuts the IP packet p into fragments of chunk payload bytes (a
// multiple of 8): IPv4 fragments of its own header, or IPv6 ones with a
// Fragment header of identification id.
func frag(p []byte, chunk int, id uint32) [][]byte {
	var out [][]byte
	v6 := p[0]>>4 == 6
	hl := 20
	if v6 {
		hl = 40
	}
	payload := p[hl:]
	for off := 0; off < len(payload); off += chunk {
		end := min(off+chunk, len(payload))
		more := uint16(0)
		if end < len(payload) {
			more = 1
		}
		h := bytes.Clone(p[:hl])
		if v6 {
			fh := make([]byte, 8)
			fh[0] = h[6]
			binary.BigEndian.PutUint16(fh[2:], uint16(off)|more)
			binary.BigEndian.PutUint32(fh[4:], id)
			h[6] = 44
			binary.BigEndian.PutUint16(h[4:], uint16(8+end-off))
			h = append(h, fh...)
		} else {
			binary.BigEndian.PutUint16(h[2:], uint16(hl+end-off))
			binary.BigEndian.PutUint16(h[6:], more<<13|uint16(off/8))
			binary.BigEndian.PutUint16(h[10:], 0)
			binary.BigEndian.PutUint16(h[10:], Checksum(h))
		}
		out = append(out, cat(h, payload[off:end]))
	}
	return out
}

// noDF clears the DF flag of the IPv4 packet p: it may be fragmented.
func noDF(p []byte) []byte {
	binary.BigEndian.PutUint16(p[6:], 0)
	binary.BigEndian.PutUint16(p[10:], 0)
	binary.BigEndian.PutUint16(p[10:], Checksum(p[:20]))
	return p
}

// TestReassemble: outer fragments of both families, in any order, give
// back the outer packet, which then decapsulates; a packet that is no
// fragment passes as it is.
func TestReassemble(t *testing.T) {
	in := bigInner4(1480)
	now := time.Unix(1, 0)
	for _, tc := range []struct {
		name  string
		outer []byte
		order []int
	}{
		{"gre4", noDF(cat(outer4(local4, protoGRE, 4+len(in)), greIPv4, in)), []int{0, 1}},
		{"gre4 reversed", noDF(cat(outer4(local4, protoGRE, 4+len(in)), greIPv4, in)), []int{1, 0}},
		{"ipip6", cat(outer6(local6, protoIPIP, len(in)), in), []int{1, 0}},
		{"gre6 three", cat(outer6(local6, protoGRE, 4+len(in)), greIPv4, in), []int{2, 0, 1}},
	} {
		r := NewReassembler(4, time.Second)
		chunk := 744
		if len(tc.order) == 3 {
			chunk = 496
		}
		fs := frag(tc.outer, chunk, 7)
		if len(fs) != len(tc.order) {
			t.Fatalf("%s: %d fragments", tc.name, len(fs))
		}
		var got []byte
		for i, j := range tc.order {
			p, res := r.Add(fs[j], now)
			want := FragHeld
			if i == len(tc.order)-1 {
				want = FragDone
			}
			if res != want {
				t.Fatalf("%s: fragment %d: %v, want %v", tc.name, j, res, want)
			}
			got = p
		}
		if !bytes.Equal(got, tc.outer) || r.Pending() != 0 {
			t.Fatalf("%s: reassembled % x..., want % x...", tc.name, got[:48], tc.outer[:48])
		}
		if inner, res := Decap(got, local); (res != ResultGRE && res != ResultIPIP) || !bytes.Equal(inner, in) {
			t.Errorf("%s: decapsulated %v", tc.name, res)
		}
	}
	whole := cat(outer4(local4, protoIPIP, len(inner4)), inner4)
	if p, res := NewReassembler(1, time.Second).Add(whole, now); res != FragWhole || !bytes.Equal(p, whole) {
		t.Errorf("a whole packet: %v", res)
	}
}

// TestReassemblyBounds: an overlapping fragment drops its datagram, a new
// datagram beyond the capacity is refused, and one that does not complete
// in time is forgotten.
func TestReassemblyBounds(t *testing.T) {
	in := bigInner4(1480)
	now := time.Unix(1, 0)
	outer := func(id uint16) []byte {
		p := cat(outer4(local4, protoIPIP, len(in)), in)
		binary.BigEndian.PutUint16(p[4:], id)
		return noDF(p)
	}
	r := NewReassembler(2, time.Second)
	a, b := frag(outer(1), 744, 0), frag(outer(2), 744, 0)
	if _, res := r.Add(a[0], now); res != FragHeld {
		t.Fatal(res)
	}
	// The same first fragment again overlaps itself.
	if _, res := r.Add(a[0], now); res != FragDropped || r.Pending() != 0 {
		t.Fatalf("overlap: %v, %d pending", res, r.Pending())
	}
	r.Add(a[0], now)
	r.Add(b[0], now)
	if _, res := r.Add(frag(outer(3), 744, 0)[0], now); res != FragDropped || r.Pending() != 2 {
		t.Fatalf("beyond capacity: %v, %d pending", res, r.Pending())
	}
	// Two seconds on, both are forgotten: the last fragments start anew.
	later := now.Add(2 * time.Second)
	if _, res := r.Add(a[1], later); res != FragHeld || r.Pending() != 1 {
		t.Fatalf("after the timeout: %v, %d pending", res, r.Pending())
	}
}

// TestReassembleXLBOutput feeds the outer fragments xlb's GREEncap and
// IPIPEncap send (the golden captures of elements/all) through the
// reassembler and the decapsulator: every inner packet comes out whole.
func TestReassembleXLBOutput(t *testing.T) {
	// IPIP's 20 bytes let a 1480-byte datagram through whole over IPv4:
	// its 1500-byte TCP segment and the two datagrams to the IPv6
	// backend are fragmented.
	for _, tc := range []struct {
		name string
		frag int
	}{{"pmtu-outerfrag-gre-ipv4", 9}, {"pmtu-outerfrag-ipip-ipv4", 3}} {
		name := tc.name
		f, err := os.Open("../../elements/all/testdata/golden/" + name + ".pcap")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rd, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		// The golden configuration's backends.
		dst := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8:1::1")}
		r := NewReassembler(8, time.Second)
		done, inners := 0, 0
		for {
			data, _, err := rd.ReadPacketData()
			if err != nil {
				break
			}
			p, res := r.Add(data[14:], time.Unix(1, 0))
			if res == FragDropped {
				t.Fatalf("%s: a fragment refused", name)
			}
			if res == FragHeld {
				continue
			}
			if res == FragDone {
				done++
			}
			inner, dr := Decap(p, dst)
			if (dr != ResultGRE && dr != ResultIPIP) || int(binary.BigEndian.Uint16(inner[2:])) != len(inner) {
				t.Fatalf("%s: decapsulated %v, %d bytes", name, dr, len(inner))
			}
			inners++
		}
		if done != tc.frag || inners != 10 || r.Pending() != 0 {
			t.Errorf("%s: %d reassembled, %d inner packets, %d pending; want %d, 10, 0", name, done, inners, r.Pending(), tc.frag)
		}
	}
}
