package encap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/ip4defrag"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// bigNoDF is bigPacket with DF clear (and its header checksum updated):
// a datagram a router may fragment.
func bigNoDF(t testing.TB, n int) []byte {
	f := bigPacket(t, 4, n)
	ip := f[14:]
	ip[6] = 0
	put16(ip[10:], 0)
	put16(ip[10:], rfc1071(ip[:20]))
	return f
}

// encapOnce is what the element sends for frame when nothing bounds the
// outer packet: the packet the fragments must reassemble into.
func encapOnce(t *testing.T, tun tunnel, frame []byte, backend uint32) []byte {
	e := newTestEncap(t, tun, nil)
	p := newPacket(frame, pipeline.Headroom, 14, backend)
	if port := e.Push(0, p); port != portOut {
		t.Fatalf("unbounded encapsulation: port %d reason %v", port, p.Reason)
	}
	return p.Data()
}

// fragHarness runs the element in a graph, whose test source lends the
// spares fragments are built in.
func fragHarness(t *testing.T, typ string, mod func(*Encap)) *pipelinetest.Harness {
	return pipelinetest.New(t, typ, pipelinetest.Options{Values: snapshot.ContextValues(snapshot.NewStore(testSnapshot())),
		Configure: func(el pipeline.Element) error {
			e := el.(*Encap)
			e.Source4, e.Source6 = "198.51.100.1", "2001:db8:ffff::1"
			mod(e)
			return nil
		}})
}

// TestOuterFragments: an IPv4 packet without DF too big for the tunnel
// leaves as fragments of the outer packet, each within the MTU, in order,
// the last in the packet's own frame; they reassemble (gopacket's ip4defrag
// for an IPv4 outer, by offsets for an IPv6 one) into the packet an
// unbounded tunnel sends.
func TestOuterFragments(t *testing.T) {
	for _, tc := range []struct {
		typ     string
		tun     tunnel
		backend uint32
		mtu, n  int
		chunks  []int // payload bytes after the outer header (and Fragment header)
	}{
		// GRE in IPv4: 4 + 1480 bytes after the outer header, at most
		// 1480 per fragment: two, of 742 rounded up to 8, and the rest.
		{"GREEncap", tunnelGRE, realB4, 1500, 1480, []int{744, 740}},
		{"IPIPEncap", tunnelIPIP, realB4, 1500, 1481, []int{744, 737}},
		// IPv6 outer: at most 1500 - 48 = 1452, cut to 1448.
		{"GREEncap", tunnelGRE, realB6, 1500, 1480, []int{744, 740}},
		{"IPIPEncap", tunnelIPIP, realB6, 1500, 1480, []int{744, 736}},
		// 576 - 20 = 556, cut to 552: 1504 bytes make three.
		{"GREEncap", tunnelGRE, realB4, 576, 1500, []int{504, 504, 496}},
		// A jumbo frame: 9004 bytes make seven of 1286.3, rounded up.
		{"GREEncap", tunnelGRE, realB4, 1500, 9000, []int{1288, 1288, 1288, 1288, 1288, 1288, 1276}},
	} {
		t.Run(fmt.Sprintf("%s/%d/mtu%d/%d", tc.typ, tc.backend, tc.mtu, tc.n), func(t *testing.T) {
			frame := bigNoDF(t, tc.n)
			whole := encapOnce(t, tc.tun, frame, tc.backend)
			h := fragHarness(t, tc.typ, func(e *Encap) { e.MTU = tc.mtu })
			out := h.Push(0, newPacket(frame, pipeline.Headroom, 14, tc.backend))
			frags := out["out"]
			if len(frags) != len(tc.chunks) || len(out["bad"]) != 0 {
				t.Fatalf("%d fragments, %d dropped; want %d", len(frags), len(out["bad"]), len(tc.chunks))
			}
			v6 := tc.backend == realB6
			hdr := 14 + ipv4HdrLen
			if v6 {
				hdr = 14 + ipv6HdrLen + fragHdrLen
			}
			var payload []byte
			d := ip4defrag.NewIPv4Defragmenter()
			for i, f := range frags {
				b := f.Data()
				if !bytes.Equal(b[:14], whole[:14]) || len(b)-14 > tc.mtu || len(b)-hdr != tc.chunks[i] {
					t.Fatalf("fragment %d: %d bytes, L2 % x; want %d after the headers", i, len(b), b[:14], tc.chunks[i])
				}
				off := 0
				for _, c := range tc.chunks[:i] {
					off += c
				}
				last := i == len(frags)-1
				// L4: the inner packet in the first fragment, the
				// fragment payload in the others.
				l4 := hdr
				if i == 0 && tc.tun == tunnelGRE {
					l4 += greHdrLen
				}
				if int(f.L4) != l4 || int(f.L3) != 14 {
					t.Errorf("fragment %d: L3 %d L4 %d, want 14 and %d", i, f.L3, f.L4, l4)
				}
				pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
				if !v6 {
					ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
					if ip == nil || int(ip.FragOffset)*8 != off || (ip.Flags&layers.IPv4MoreFragments != 0) == last ||
						ip.Flags&layers.IPv4DontFragment != 0 || ip.Id != be16(whole[18:]) || int(ip.Length) != len(b)-14 {
						t.Fatalf("fragment %d: %+v, want offset %d", i, ip, off)
					}
					if rfc1071(b[14:34]) != 0 {
						t.Errorf("fragment %d: bad header checksum", i)
					}
					r, err := d.DefragIPv4(ip)
					if err != nil || (r == nil) != !last {
						t.Fatalf("fragment %d: defragmenter returned %v, %v", i, r, err)
					}
					if last {
						if r.Protocol != layers.IPProtocol(whole[23]) || !bytes.Equal(r.Payload, whole[34:]) {
							t.Errorf("reassembled %v, payload differs from the unfragmented outer packet", r)
						}
					}
					continue
				}
				ip, _ := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
				fh, _ := pkt.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
				if ip == nil || fh == nil || int(ip.Length) != len(b)-14-ipv6HdrLen || !bytes.Equal(b[14+8:14+40], whole[14+8:14+40]) {
					t.Fatalf("fragment %d: %v", i, pkt)
				}
				if int(fh.FragmentOffset)*8 != off || fh.MoreFragments == last || fh.NextHeader != layers.IPProtocol(whole[14+6]) || fh.Identification != 0 {
					t.Fatalf("fragment %d: %+v, want offset %d", i, fh, off)
				}
				payload = append(payload, b[hdr:]...)
			}
			if v6 && !bytes.Equal(payload, whole[14+ipv6HdrLen:]) {
				t.Error("the fragments' payloads do not make the unfragmented outer payload")
			}
			m := metrics(h.Element().(*Encap))
			if m["xlb_encap_fragmented_total"] != 1 || m["xlb_encap_fragments_total"] != uint64(len(tc.chunks)) {
				t.Errorf("counters %v", m)
			}
		})
	}
}

// TestOuterFragmentDrops: too_big_no_df = "drop" drops as before; so does a
// packet that needs more than maxFragments; a batch without a spare frame
// drops with its own reason; every drop leaves the packet unmodified.
func TestOuterFragmentDrops(t *testing.T) {
	frame := bigNoDF(t, 1500)
	for _, tc := range []struct {
		name   string
		mtu    int
		policy string
		graph  bool
		reason int
	}{
		{"drop", 1500, policyDrop, true, dropTooBig},
		{"too many fragments", 200, policyFragment, true, dropTooBig},
		{"no spare frame", 1500, policyFragment, false, dropNoSpare},
	} {
		mod := func(e *Encap) { e.MTU, e.TooBigNoDF = tc.mtu, tc.policy }
		var p *pipeline.Packet
		if tc.graph {
			out := fragHarness(t, "GREEncap", mod).Push(0, newPacket(frame, pipeline.Headroom, 14, realB4))
			if len(out["bad"]) != 1 || len(out["out"]) != 0 {
				t.Fatalf("%s: out %d bad %d", tc.name, len(out["out"]), len(out["bad"]))
			}
			p = out["bad"][0]
		} else {
			// Outside a graph the Emitter lends nothing.
			e := newTestEncap(t, tunnelGRE, mod)
			p = newPacket(frame, pipeline.Headroom, 14, realB4)
			if port := e.Push(0, p); port != portBad {
				t.Fatalf("%s: port %d", tc.name, port)
			}
		}
		if p.Reason != dropReasons[tc.reason] || !bytes.Equal(p.Data(), frame) {
			t.Errorf("%s: reason %v, or the packet was modified", tc.name, p.Reason)
		}
	}
}

// TestFragmentIDs: IPv6 Fragment identifications interleave by worker as
// the IPv4 IDs do, and every fragment of one packet has the same.
func TestFragmentIDs(t *testing.T) {
	h := pipelinetest.New(t, "GREEncap", pipelinetest.Options{Workers: 1, Values: snapshot.ContextValues(snapshot.NewStore(testSnapshot())),
		Configure: func(el pipeline.Element) error {
			e := el.(*Encap)
			e.Source6, e.MTU = "2001:db8:ffff::1", 1300
			return nil
		}})
	frame := bigNoDF(t, 1500)
	out := h.Push(0, newPacket(frame, pipeline.Headroom, 14, realB6), newPacket(slices.Clone(frame), pipeline.Headroom, 14, realB6))
	var ids []uint32
	for _, f := range out["out"] {
		ids = append(ids, binary.BigEndian.Uint32(f.Data()[14+ipv6HdrLen+4:]))
	}
	if !slices.Equal(ids, []uint32{0, 0, 1, 1}) {
		t.Errorf("identifications %v, want 0 0 1 1", ids)
	}
}

// TestPlanFragments checks the plan for every MTU and size in a range:
// fragments within the MTU, offsets in 8-byte units, a last fragment of at
// least one byte and no larger than the others, the fewest fragments.
func TestPlanFragments(t *testing.T) {
	for _, ipLen := range []int{ipv4HdrLen, ipv6HdrLen} {
		hdr := ipLen
		if ipLen == ipv6HdrLen {
			hdr += fragHdrLen
		}
		for mtu := 68; mtu <= 1500; mtu += 7 {
			e := &Encap{mtu: mtu}
			for total := mtu + 1; total <= 9100; total += 13 {
				pl, ok := e.planFragments(ipLen, total)
				payload := total - ipLen
				most := (mtu - hdr) &^ 7
				fewest := (payload + most - 1) / most
				if ok != (fewest <= maxFragments) {
					t.Fatalf("ipLen %d mtu %d total %d: ok %v with %d fragments", ipLen, mtu, total, ok, fewest)
				}
				if !ok {
					continue
				}
				last := payload - (pl.k-1)*pl.chunk
				if pl.k != fewest || pl.chunk%8 != 0 || hdr+pl.chunk > mtu || last < 1 || last > pl.chunk {
					t.Fatalf("ipLen %d mtu %d total %d: %+v, last %d", ipLen, mtu, total, pl, last)
				}
			}
		}
	}
}
