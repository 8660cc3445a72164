package all

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// encodeFrames lays frames end to end, each after its 16-bit length: the
// fuzz input of FuzzCounted.
func encodeFrames(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// decodeFrames undoes encodeFrames; a length past the end takes the rest.
func decodeFrames(b []byte) [][]byte {
	var frames [][]byte
	for len(b) >= 2 {
		n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
		frames = append(frames, b[2:2+n])
		b = b[2+n:]
	}
	return frames
}

// FuzzCounted runs arbitrary frames through the default graph, with IPv4
// and IPv6 VIPs on a pool of IPv4 and IPv6 backends, once with each
// encapsulation. After every batch it checks that every packet that
// entered was counted once: sent (the sink got it, and it is a well-formed
// tunnel packet to a backend of the pool), or dropped by one element under
// one named reason. A panic, an index out of range included, fails it too.
// The seeds are hand-made edge cases and the golden tests' input captures.
func FuzzCounted(f *testing.F) {
	vip4, vip6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	tcp := tcpFrames(f, 3, vip4)
	// A TCP flow to the VIP, one to no VIP, an IPv6 header alone, cut
	// frames, and bytes that are no frame at all.
	f.Add(encodeFrames(tcp...))
	f.Add(encodeFrames(tcpFrames(f, 1, netip.MustParseAddr("192.0.2.99"))[0], tcp[0][:14+12], []byte{1, 2, 3}))
	v6 := append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 0, 6, 64}, make([]byte, 32)...)
	copy(v6[14+24:], vip6.AsSlice())
	f.Add(encodeFrames(v6, tcp[1][:20]))
	f.Add([]byte{})
	for _, family := range []int{4, 6} {
		f.Add(encodeFrames(goldenFrames(f, family)...))
	}
	// The same flow under an 802.1Q tag, and under an 802.1ad and an
	// 802.1Q tag (QinQ).
	q := append(append(append([]byte(nil), tcp[2][:12]...), 0x81, 0x00, 0, 7), tcp[2][12:]...)
	qinq := append(append(append([]byte(nil), tcp[2][:12]...), 0x88, 0xa8, 0, 9, 0x81, 0x00, 0, 7), tcp[2][12:]...)
	f.Add(encodeFrames(q, qinq))
	// Datagrams without DF too big for the fragmenting setup's tunnel.
	f.Add(encodeFrames(outerFragFrames(f, 100)...))
	// Frames longer than 128 bytes, replayed whole (up to
	// replayFrameSize): a chain of seven IPv6 extension headers before
	// TCP, and a 1500-byte datagram of each family.
	f.Add(encodeFrames(longFrames(f)...))
	// The configuration is loaded and its Maglev tables built once per
	// encapsulation (most of an input's time otherwise); each input gets
	// graphs of its own, so no state carries over from one to the next.
	type setup struct {
		enc      string
		graph    *pipeline.Graph
		ctl      *control.Controller
		backends map[netip.Addr]bool
	}
	var setups []setup
	// The third setup bounds the outer packet at fuzzMTU, below what most
	// replayed frames take in a tunnel: frames without
	// DF leave in outer fragments, emitted by the element; the others are
	// dropped, too big, since icmp_rate = 0 sends no ICMP error.
	for i, enc := range []string{"GREEncap", "IPIPEncap", "GREEncap"} {
		src := fmt.Sprintf(goldenConfig, `element "TestFiniteReplay" "rx" {}`, enc, `element "TestTunnelSink" "tx" {}`, "")
		if i == 2 {
			src = strings.Replace(src, `source6 = "2001:db8::1"`, fmt.Sprintf("source6 = \"2001:db8::1\"\n    mtu = %d\n    icmp_rate = 0", fuzzMTU), 1)
		}
		graph, ctl := loadGraph(f, "counted.hcl", src)
		backends := map[netip.Addr]bool{}
		for _, r := range ctl.Snapshot().Reals.All() {
			backends[r.Addr] = true
		}
		setups = append(setups, setup{enc, graph, ctl, backends})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frames := decodeFrames(data)
		if len(frames) == 0 {
			return
		}
		for _, su := range setups {
			enc, backends := su.enc, su.backends
			rt, err := su.graph.Start(pipeline.Options{Values: snapshot.WithStore(nil, su.ctl.Store())})
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			inst := rt.Workers()[0]
			rx, tx := inst.Element("rx").(*finiteReplay), inst.Element("tx").(*tunnelSink)
			rx.frames, rx.batches = frames, 2
			var b pipeline.Batch
			sent := 0 // of all batches so far, as the counters are
			for batch := 0; ; batch++ {
				b.Reset()
				if err := rx.Pull(&b); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				inst.Process(0, &b)
				sent += len(tx.pkts)
				stats := rt.Stats()
				checkCounted(t, stats)
				for _, s := range stats {
					if s.Name == "tx" && s.Consumed != uint64(sent) {
						t.Errorf("%s batch %d: tx consumed %d, its sink got %d", enc, batch, s.Consumed, sent)
					}
				}
				for i, p := range tx.pkts {
					if err := checkTunnel(p, enc, backends); err != nil {
						t.Errorf("%s batch %d: packet %d sent: %v\n% x", enc, batch, i, err, p.data)
					}
				}
				tx.pkts = tx.pkts[:0]
				if t.Failed() {
					return
				}
			}
		}
	})
}

// goldenFrames are the frames of TestGolden's input capture for family.
func goldenFrames(tb testing.TB, family int) [][]byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "input.pcap")
	goldenInput(tb, path, family)
	in, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	r, err := pcapgo.NewReader(in)
	if err != nil {
		tb.Fatal(err)
	}
	var frames [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			return frames
		}
		if err != nil {
			tb.Fatal(err)
		}
		frames = append(frames, data)
	}
}

// sentPacket is a copy of a frame a tunnelSink got, with its offsets.
type sentPacket struct {
	data   []byte
	l3, l4 int
}

// tunnelSink keeps a copy of every packet that reaches it.
type tunnelSink struct{ pkts []sentPacket }

func (s *tunnelSink) Push(_ int, p *pipeline.Packet) int {
	s.pkts = append(s.pkts, sentPacket{append([]byte(nil), p.Data()...), int(p.L3), int(p.L4)})
	return pipeline.Consumed
}

func init() {
	pipeline.Register(pipeline.ElementType{Name: "TestTunnelSink", Inputs: []string{"in"},
		New: func() pipeline.Element { return &tunnelSink{} }})
}

// fuzzMTU is the mtu of FuzzCounted's fragmenting setup.
const fuzzMTU = 100

// outerFragment reports whether the outer IP header h (of hlen bytes, its
// lengths checked) is that of a fragment, and whether the first one; it
// checks a fragment's own fields: DF clear, an IPv6 Fragment header whose
// next header is GRE.
func outerFragment(h []byte, hlen int) (frag, first bool, err error) {
	if hlen == 20 {
		fo := binary.BigEndian.Uint16(h[6:])
		if fo&0x3fff == 0 {
			return false, false, nil
		}
		if fo&0x4000 != 0 {
			return true, false, fmt.Errorf("an outer IPv4 fragment with DF")
		}
		return true, fo&0x1fff == 0, nil
	}
	if h[6] != 44 {
		return false, false, nil
	}
	if len(h) < 48 || h[40] != 47 {
		return true, false, fmt.Errorf("an outer IPv6 fragment whose Fragment header is cut or not before GRE")
	}
	return true, binary.BigEndian.Uint16(h[42:])&^7 == 0, nil
}

// checkTunnel checks a sent packet's layout field by field, independently
// of the elements: Ethernet whose EtherType names the outer family, an
// outer header from goldenConfig's source to a backend whose lengths cover
// exactly the rest of the frame (and an IPv4 checksum that holds), the
// tunnel protocol of enc, and an inner IP packet, at L4, of the version
// the tunnel announces, whose own length is the rest of the frame.
func checkTunnel(p sentPacket, enc string, backends map[netip.Addr]bool) error {
	d := p.data
	// Ethernet, then up to two VLAN tags, whose EtherTypes stay as they
	// came in.
	if p.l3 < 14 || p.l3 > 22 || (p.l3-14)%4 != 0 || len(d) < p.l3+20 {
		return fmt.Errorf("L3 at %d in a frame of %d bytes", p.l3, len(d))
	}
	h := d[p.l3:]
	var src, dst netip.Addr
	var proto byte
	var hlen int
	switch h[0] >> 4 {
	case 4:
		hlen = 20
		src, dst, proto = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20])), h[9]
		if h[0] != 0x45 || int(binary.BigEndian.Uint16(h[2:])) != len(h) || ipv4Checksum(h[:20]) != 0 {
			return fmt.Errorf("outer IPv4 header wrong (version/IHL, total length or checksum)")
		}
	case 6:
		hlen = 40
		if len(h) < hlen || 40+int(binary.BigEndian.Uint16(h[4:])) != len(h) {
			return fmt.Errorf("outer IPv6 payload length wrong")
		}
		src, dst, proto = netip.AddrFrom16([16]byte(h[8:24])), netip.AddrFrom16([16]byte(h[24:40])), h[6]
	default:
		return fmt.Errorf("outer IP version %d", h[0]>>4)
	}
	if et := binary.BigEndian.Uint16(d[p.l3-2:]); et != map[int]uint16{20: 0x0800, 40: 0x86dd}[hlen] {
		return fmt.Errorf("EtherType %#04x for an outer header of %d bytes", et, hlen)
	}
	if !backends[dst] {
		return fmt.Errorf("outer destination %v is no backend", dst)
	}
	if want := map[bool]string{true: "192.0.2.1", false: "2001:db8::1"}[dst.Is4()]; src.String() != want {
		return fmt.Errorf("outer source %v, want %s", src, want)
	}
	tun := h[hlen:]
	if frag, first, err := outerFragment(h, hlen); err != nil || frag {
		// An outer fragment: its headers are checked, not what it
		// carries. The first carries the tunnel header and the inner
		// packet's start, the others fragment payload from L4.
		if err != nil {
			return err
		}
		l4 := p.l3 + hlen
		if hlen == 40 {
			l4 += 8
		}
		if first && enc == "GREEncap" {
			l4 += 4
		}
		if len(h) > fuzzMTU || p.l4 != l4 {
			return fmt.Errorf("outer fragment of %d bytes, L4 at %d, want at most %d and %d", len(h), p.l4, fuzzMTU, l4)
		}
		return nil
	}
	var innerVersion byte
	switch {
	case enc == "GREEncap" && proto == 47 && len(tun) >= 4 && binary.BigEndian.Uint16(tun) == 0:
		innerVersion = map[uint16]byte{0x0800: 4, 0x86dd: 6}[binary.BigEndian.Uint16(tun[2:])]
		tun = tun[4:]
	case enc == "IPIPEncap" && (proto == 4 || proto == 41):
		innerVersion = map[byte]byte{4: 4, 41: 6}[proto]
	default:
		return fmt.Errorf("tunnel protocol %d is not %s's", proto, enc)
	}
	if p.l4 != len(d)-len(tun) {
		return fmt.Errorf("L4 at %d, the inner packet at %d", p.l4, len(d)-len(tun))
	}
	switch {
	case innerVersion == 4 && len(tun) >= 20 && tun[0]>>4 == 4:
		if int(binary.BigEndian.Uint16(tun[2:])) != len(tun) {
			return fmt.Errorf("inner IPv4 total length %d, %d bytes tunnelled", binary.BigEndian.Uint16(tun[2:]), len(tun))
		}
	case innerVersion == 6 && len(tun) >= 40 && tun[0]>>4 == 6:
		if 40+int(binary.BigEndian.Uint16(tun[4:])) != len(tun) {
			return fmt.Errorf("inner IPv6 payload length %d, %d bytes tunnelled", binary.BigEndian.Uint16(tun[4:]), len(tun))
		}
	default:
		return fmt.Errorf("the tunnel announces IPv%d and carries % x", innerVersion, tun[:min(len(tun), 4)])
	}
	return nil
}

// longFrames are frames longer than the 128 bytes the replay once cut
// frames to: a TCP segment to the IPv6 VIP behind seven Destination
// Options headers of 64 bytes each (walked through to TCP), and a
// 1500-byte datagram of each family to its VIP.
func longFrames(tb testing.TB) [][]byte {
	c6, c4 := &capture{t: tb, family: 6}, &capture{t: tb, family: 4}
	client6, vip6 := net.ParseIP("2001:db8:c::1"), net.ParseIP("2001:db8::10")
	client4, vip4 := net.IPv4(203, 0, 113, 1), net.IPv4(192, 0, 2, 10)
	var chain []byte
	for i := range 7 {
		next := byte(60) // Destination Options
		if i == 6 {
			next = 6 // TCP
		}
		opt := make([]byte, 64)
		opt[0], opt[1] = next, 7 // 8 units of 8 bytes, the first not counted
		opt[2], opt[3] = 1, 60   // a PadN option over the rest
		chain = append(chain, opt...)
	}
	// TCP 40200 -> 80, ACK, data offset 5; its checksum is not read.
	seg := []byte{0x9d, 0x08, 0, 80, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0x04, 0, 0, 0, 0, 0}
	ext := c6.ser(c6.eth(), c6.ip(client6, vip6, 60), gopacket.Payload(append(chain, seg...)))
	big6 := c6.ser(c6.eth(), c6.ip(client6, vip6, layers.IPProtocolUDP),
		&layers.UDP{SrcPort: 40201, DstPort: 9000}, gopacket.Payload(make([]byte, 1500-48)))
	big4 := c4.ser(c4.eth(), c4.ip(client4, vip4, layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 40202, DstPort: 80, ACK: true, Window: 1024}, gopacket.Payload(make([]byte, 1500-40)))
	return [][]byte{ext, big6, big4}
}

// TestReplayWholeFrames: the replay source (FuzzCounted's and the
// benchmarks') hands over every frame whole, up to replayFrameSize with
// its headroom, and cuts a longer one there.
func TestReplayWholeFrames(t *testing.T) {
	frames := append(longFrames(t), make([]byte, replayFrameSize))
	s := &replaySource{frames: frames}
	var b pipeline.Batch
	if err := s.Pull(&b); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		want := f[:min(len(f), replayFrameSize-pipeline.Headroom)]
		if p := b.Pkts[i]; !bytes.Equal(p.Data(), want) || p.Headroom() != pipeline.Headroom {
			t.Errorf("frame %d of %d bytes: replayed %d bytes, headroom %d", i, len(f), p.Len(), p.Headroom())
		}
	}
	// The benchmarks' short frames keep the stride they were measured with.
	if got := replayStride(tcpFrames(t, 2, netip.MustParseAddr("192.0.2.10"))); got != pipeline.Headroom+128 {
		t.Errorf("stride %d for short frames, want %d", got, pipeline.Headroom+128)
	}
}
