package all

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xlbproject/xlb/pipeline"
)

// fragCapture writes the input of one fragment scenario: frames with the
// flow each belongs to ("" for a frame that must be dropped), in order.
type fragCapture struct {
	*capture
	flows  []string
	frames [][]byte
	// from, when set, is the source MAC address of the frames written
	// next instead of the router's.
	from net.HardwareAddr
}

func (c *fragCapture) write(flow string, data []byte) {
	c.t.Helper()
	c.capture.write(data)
	c.flows = append(c.flows, flow)
	c.frames = append(c.frames, data)
}

func (c *fragCapture) eth() *layers.Ethernet {
	e := c.capture.eth()
	if c.from != nil {
		e.SrcMAC = c.from
	}
	return e
}

func (c *fragCapture) addrs(client int) (src, dst net.IP) {
	if c.family == 6 {
		return net.ParseIP(fmt.Sprintf("2001:db8:c::%x", client)), net.ParseIP("2001:db8::10")
	}
	return net.IPv4(203, 0, 113, byte(client)), net.ParseIP("192.0.2.10")
}

// ip is capture's without DF: these packets are fragments.
func (c *fragCapture) ip(src, dst net.IP, proto layers.IPProtocol) gopacket.NetworkLayer {
	if c.family == 6 {
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src, DstIP: dst}
	}
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst}
}

// l4 returns the transport header and payload of a datagram, its checksum
// computed over the pseudo-header of src and dst.
func (c *fragCapture) l4(src, dst net.IP, l gopacket.SerializableLayer, payload []byte) []byte {
	proto := layers.IPProtocolTCP
	if _, ok := l.(*layers.UDP); ok {
		proto = layers.IPProtocolUDP
	}
	b := c.ser(c.eth(), c.ip(src, dst, proto).(gopacket.SerializableLayer), l, gopacket.Payload(payload))
	return b[14+map[bool]int{true: 40, false: 20}[c.family == 6]:]
}

// destOpts is a Destination Options header with one PadN option.
func destOpts(next layers.IPProtocol) []byte { return []byte{byte(next), 0, 1, 4, 0, 0, 0, 0} }

// fragments cuts the fragmentable part body of a datagram (proto is its
// first header's protocol) into pieces at the byte offsets cuts (multiples
// of 8) and writes those of order (indexes into the pieces), so that
// fragments can be written out of order or in several calls.
func (c *fragCapture) fragments(flow string, src, dst net.IP, proto layers.IPProtocol, id uint32, body []byte, cuts []int, order ...int) {
	c.t.Helper()
	bounds := append(append([]int{0}, cuts...), len(body))
	for _, k := range order {
		part, off, more := body[bounds[k]:bounds[k+1]], bounds[k], k < len(bounds)-2
		if c.family == 6 {
			fo := uint16(off)
			if more {
				fo |= 1
			}
			fh := []byte{byte(proto), 0, byte(fo >> 8), byte(fo), byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}
			h := c.ip(src, dst, layers.IPProtocolIPv6Fragment).(gopacket.SerializableLayer)
			c.write(flow, c.ser(c.eth(), h, gopacket.Payload(append(fh, part...))))
			continue
		}
		h := c.ip(src, dst, proto).(*layers.IPv4)
		h.Id, h.FragOffset = uint16(id), uint16(off/8)
		if more {
			h.Flags = layers.IPv4MoreFragments
		}
		c.write(flow, c.ser(c.eth(), h, gopacket.Payload(part)))
	}
}

// tcpPacket writes an unfragmented TCP packet of client's flow to port.
func (c *fragCapture) tcpPacket(flow string, client int, sport, dport uint16, syn bool) {
	src, dst := c.addrs(client)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Window: 1024, SYN: syn, ACK: !syn}
	c.write(flow, c.ser(c.eth(), c.ip(src, dst, layers.IPProtocolTCP).(gopacket.SerializableLayer), tcp))
}

// fragScenarios are the fragment cases, each its own capture and golden
// files frag-<name>-ipv<family>.
var fragScenarios = []struct {
	name     string
	families []int
	parse    string // the Parse5Tuple's body
	write    func(c *fragCapture)
}{
	// A TCP segment of each of four flows fragmented in three between the
	// flow's unfragmented packets, and two UDP datagrams fragmented before
	// any unfragmented packet of their flow: every fragment goes to the
	// flow's backend.
	{name: "same-backend", families: []int{4, 6}, write: func(c *fragCapture) {
		for i := 1; i <= 4; i++ {
			flow := fmt.Sprintf("tcp%d", i)
			src, dst := c.addrs(i)
			c.tcpPacket(flow, i, uint16(41000+i), 80, true)
			c.tcpPacket(flow, i, uint16(41000+i), 80, false)
			seg := c.l4(src, dst, &layers.TCP{SrcPort: layers.TCPPort(41000 + i), DstPort: 80, Seq: 1001, ACK: true, PSH: true, Window: 1024},
				bytes.Repeat([]byte{byte(i)}, 40))
			c.fragments(flow, src, dst, layers.IPProtocolTCP, uint32(0x100+i), seg, []int{24, 48}, 0, 1, 2)
			c.tcpPacket(flow, i, uint16(41000+i), 80, false)
		}
		for i := 5; i <= 6; i++ {
			flow := fmt.Sprintf("udp%d", i)
			src, dst := c.addrs(i)
			udp := &layers.UDP{SrcPort: layers.UDPPort(52000 + i), DstPort: 9000}
			c.fragments(flow, src, dst, layers.IPProtocolUDP, uint32(0x200+i), c.l4(src, dst, udp, bytes.Repeat([]byte{0xab}, 40)), []int{16}, 0, 1)
			c.write(flow, c.ser(c.eth(), c.ip(src, dst, layers.IPProtocolUDP).(gopacket.SerializableLayer), udp, gopacket.Payload([]byte("query"))))
		}
	}},
	// Fragmented datagrams to ports the VIPs do not serve (TCP 22 on the
	// TCP 80 VIP, UDP 161 on the UDP 9000 VIP): dropped, first and later
	// fragments, as the same packets unfragmented would be.
	{name: "unserved-port", families: []int{4, 6}, write: func(c *fragCapture) {
		src, dst := c.addrs(7)
		c.fragments("", src, dst, layers.IPProtocolTCP, 0x300,
			c.l4(src, dst, &layers.TCP{SrcPort: 40022, DstPort: 22, ACK: true, Window: 1}, make([]byte, 24)), []int{24}, 0, 1)
		c.fragments("", src, dst, layers.IPProtocolUDP, 0x301,
			c.l4(src, dst, &layers.UDP{SrcPort: 40161, DstPort: 161}, make([]byte, 24)), []int{16}, 0, 1)
	}},
	// A later fragment before its first: held (copied) and sent on to the
	// flow's backend, ahead of the first when it comes; then the first and
	// the fragments after it, the held one sent again by its sender (the
	// backend's reassembly takes the duplicate).
	{name: "later-before-first", families: []int{4, 6}, write: func(c *fragCapture) {
		src, dst := c.addrs(8)
		seg := c.l4(src, dst, &layers.TCP{SrcPort: 40008, DstPort: 80, ACK: true, Window: 1}, make([]byte, 40))
		c.tcpPacket("tcp", 8, 40008, 80, true)
		c.fragments("tcp", src, dst, layers.IPProtocolTCP, 0x400, seg, []int{24, 48}, 2)
		c.fragments("tcp", src, dst, layers.IPProtocolTCP, 0x400, seg, []int{24, 48}, 0, 1, 2)
	}},
	// A later fragment 2 s after its first (frag_timeout 1s), in a later
	// batch (63 packets to no VIP fill the first batch): held for a first
	// that does not come, and dropped (parse, late: when the run ends). A
	// datagram of the same flow whose fragments are close goes through.
	{name: "timeout", families: []int{4, 6}, parse: `frag_timeout = "1s"`, write: func(c *fragCapture) {
		src, dst := c.addrs(9)
		seg := c.l4(src, dst, &layers.TCP{SrcPort: 40009, DstPort: 80, ACK: true, Window: 1}, make([]byte, 40))
		c.fragments("tcp", src, dst, layers.IPProtocolTCP, 0x500, seg, []int{24}, 0)
		other := net.ParseIP("192.0.2.99")
		if c.family == 6 {
			other = net.ParseIP("2001:db8::99")
		}
		for range pipeline.MaxBatch - 1 {
			c.write("", c.ser(c.eth(), c.ip(src, other, layers.IPProtocolTCP).(gopacket.SerializableLayer), &layers.TCP{SrcPort: 1, DstPort: 80, SYN: true}))
		}
		c.now = c.now.Add(2 * time.Second)
		c.fragments("", src, dst, layers.IPProtocolTCP, 0x500, seg, []int{24}, 1)
		c.fragments("tcp", src, dst, layers.IPProtocolTCP, 0x501, seg, []int{24}, 0, 1)
	}},
	// IPv6 with a Destination Options header after the Fragment header
	// (only the first fragment carries it): the first fragment is hashed
	// on the TCP header behind it, like the flow's unfragmented packet
	// with the same Destination Options.
	{name: "destopts", families: []int{6}, write: func(c *fragCapture) {
		for i := 10; i <= 13; i++ {
			flow := fmt.Sprintf("tcp%d", i)
			src, dst := c.addrs(i)
			tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + i), DstPort: 80, ACK: true, Window: 1}
			seg := c.l4(src, dst, tcp, make([]byte, 32))
			h := c.ip(src, dst, layers.IPProtocolIPv6Destination).(gopacket.SerializableLayer)
			c.write(flow, c.ser(c.eth(), h, gopacket.Payload(append(destOpts(layers.IPProtocolTCP), seg...))))
			c.fragments(flow, src, dst, layers.IPProtocolIPv6Destination, uint32(0x600+i), append(destOpts(layers.IPProtocolTCP), seg...), []int{32}, 0, 1)
		}
	}},
}

// TestGoldenFragments runs each fragment scenario through the default
// graph (GRE) and compares the output capture and the counters with
// testdata/golden/frag-*; it also checks, decoding the output, that every
// packet of one flow, fragment or not, went to one backend and that the
// packets meant to be dropped were.
func TestGoldenFragments(t *testing.T) {
	for _, sc := range fragScenarios {
		for _, family := range sc.families {
			name := fmt.Sprintf("frag-%s-ipv%d", sc.name, family)
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				in := filepath.Join(dir, "input.pcap")
				c := &fragCapture{capture: createCapture(t, in, family)}
				sc.write(c)
				c.close()

				src := fmt.Sprintf(goldenConfig, goldenPcap[0], "GREEncap", goldenPcap[1], "")
				src = strings.Replace(src, `element "Parse5Tuple" "parse" {}`, `element "Parse5Tuple" "parse" {`+"\n"+sc.parse+"\n}", 1)
				out, counters, ctl := runCapture(t, dir, src)
				var kept []string
				for _, fl := range c.flows {
					if fl != "" {
						kept = append(kept, fl)
					}
				}
				dsts := outerDsts(t, out)
				if len(dsts) != len(kept) {
					t.Fatalf("%d packets out, want %d (of %d in)", len(dsts), len(kept), len(c.flows))
				}
				if len(kept) > 0 {
					checkOutput(t, in, out, "GREEncap", ctl.Snapshot())
				}
				backend := map[string]netip.Addr{}
				for i, fl := range kept {
					if b, ok := backend[fl]; ok && b != dsts[i] {
						t.Errorf("packet %d out, of flow %s, went to %v; the flow's earlier packets to %v", i+1, fl, dsts[i], b)
					}
					backend[fl] = dsts[i]
				}
				compareGoldenFiles(t, name, out, counters)
			})
		}
	}
}

// outerDsts returns the outer destination (the backend) of each packet of
// the capture out.
func outerDsts(t *testing.T, out []byte) []netip.Addr {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var dsts []netip.Addr
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return dsts
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		var a netip.Addr
		switch l := pkt.Layers()[1].(type) {
		case *layers.IPv4:
			a, _ = netip.AddrFromSlice(l.DstIP.To4())
		case *layers.IPv6:
			a, _ = netip.AddrFromSlice(l.DstIP)
		}
		dsts = append(dsts, a)
	}
}
