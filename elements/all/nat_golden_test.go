package all

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/elements/internal/csum/csumtest"
	"github.com/xlbproject/xlb/pipeline"
)

// natPorts maps b4-2 and b6-1 to other ports than the VIPs' (port
// mapping); b4-1 keeps the port the client sent to.
const natPorts = `ports = {
      "b4-2" = 8080
      "b6-1" = 8443
    }
  }`

// natSource is the golden graph with NAT in GREEncap's place, its type
// word and ports the only edits.
func natSource(t *testing.T) string {
	src := fmt.Sprintf(goldenConfig, goldenPcap[0], "NAT", goldenPcap[1], "")
	nat := strings.Replace(src, `source6 = "2001:db8::1"
  }`, `source6 = "2001:db8::1"
    `+natPorts, 1)
	if nat == src {
		t.Fatal("goldenConfig's encapsulation block changed; update this test")
	}
	return nat
}

// TestGoldenNAT runs, per client family, the golden capture followed by
// the backends' replies through the default graph with NAT, and compares
// output and counters with testdata/golden/ipv<family>-nat. The replies
// are made from a first run's output: a SYN-ACK for every SYN and an
// answer to every UDP query, each from the address and port the packet
// was translated to, plus one reply of a flow the node never saw (dropped
// as conntrack.reply_unknown, as is the capture's packet to no VIP). Each output frame is also checked on its
// own: its checksums computed from scratch, a client's packet sent to a
// backend's address and mapped port, a reply sent from VIP:port, every
// known reply translated.
func TestGoldenNAT(t *testing.T) {
	goldenTranslated(t, natSource(t), "nat", nil)
}

// TestGoldenFullNAT is TestGoldenNAT with FullNAT, swapped in by its type
// word and a source_pool, compared with
// testdata/golden/ipv<family>-fullnat: a client's packet also leaves from
// the node's source address, and a reply reaches the client from VIP:port.
func TestGoldenFullNAT(t *testing.T) {
	src := strings.Replace(natSource(t), `"NAT" "encap" {`, `"FullNAT" "encap" {
    source_pool = ["192.0.2.201", "2001:db8::201"]`, 1)
	goldenTranslated(t, src, "fullnat", map[int]string{4: "192.0.2.201", 6: "2001:db8::201"})
}

// goldenTranslated is TestGoldenNAT's body for graph src, whose golden
// files are ipv<family>-<mode>; source, when not nil, is the address a
// client's packet must leave from, by family (FullNAT's).
func goldenTranslated(t *testing.T, src, mode string, source map[int]string) {
	for _, family := range []int{4, 6} {
		name := fmt.Sprintf("ipv%d-%s", family, mode)
		t.Run(name, func(t *testing.T) {
			first := t.TempDir()
			goldenInput(t, filepath.Join(first, "input.pcap"), family)
			out, _, _ := runCapture(t, first, src)
			in, err := os.ReadFile(filepath.Join(first, "input.pcap"))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			c := createCapture(t, filepath.Join(dir, "input.pcap"), family)
			// The replies start the second batch (RxPcap reads 64
			// packets at a time): in one batch with their flows' first
			// packets, they would be looked up before those are learned.
			// The batch is filled with the TCP flows' last packets again.
			frames := readFrames(t, in)
			for _, f := range frames {
				c.write(f)
			}
			for i := len(frames); i < pipeline.MaxBatch; i++ {
				c.write(frames[24+i%12])
			}
			replies := natReplies(t, c, readFrames(t, out))
			if source != nil {
				replies += backendErrors(t, c, readFrames(t, out))
			}
			c.close()
			out, counters, _ := runCapture(t, dir, src)
			// The capture's packet to no VIP is one too: with NAT, what
			// reaches the graph not for a VIP is a reply.
			if !bytes.Contains(counters, []byte(`reason="conntrack.reply_unknown"} 2`)) {
				t.Errorf("the unknown reply and the packet to no VIP are not counted as conntrack.reply_unknown:\n%s", counters)
			}
			vip := map[int]string{4: "192.0.2.10", 6: "2001:db8::10"}[family]
			backends := map[string]uint16{"198.51.100.1": 0, "198.51.100.2": 8080, "2001:db8:1::1": 8443}
			sent := 0
			for n, o := range readFrames(t, out) {
				if err := csumtest.Check(o); err != nil {
					t.Errorf("packet %d: %v", n, err)
				}
				pkt := gopacket.NewPacket(o, layers.LayerTypeEthernet, gopacket.Default)
				src, dst := pkt.NetworkLayer().NetworkFlow().Endpoints()
				if q := quoted(pkt); q != nil {
					// An ICMP error quotes a packet its destination sent
					// (a client's, to the VIP; a backend's reply, to
					// FullNAT's source or NAT's client), so that its
					// stack finds it.
					qs, qd := q.NetworkLayer().NetworkFlow().Endpoints()
					want := qd.String()
					if src.String() == vip {
						want = vip
					} else if source != nil {
						want = source[family]
					}
					if qs != dst || qd.String() != want {
						t.Errorf("packet %d: ICMP error %s > %s quoting %s > %s, want %s > %s", n, src, dst, qs, qd, dst, want)
					}
					if src.String() == vip {
						sent++
					}
					continue
				}
				var sport, dport uint16
				if tl := pkt.TransportLayer(); tl != nil {
					s, d := tl.TransportFlow().Endpoints()
					sport, dport = be16(s.Raw()), be16(d.Raw())
				}
				if src.String() == vip {
					if sport != 80 && sport != 9000 {
						t.Errorf("packet %d: reply from %s port %d, not the VIP's", n, src, sport)
					}
					sent++
					continue
				}
				if source != nil && src.String() != source[family] {
					t.Errorf("packet %d: to a backend from %s, not the source %s", n, src, source[family])
				}
				bp, ok := backends[dst.String()]
				if !ok {
					t.Errorf("packet %d: to %s, neither a backend nor a reply", n, dst)
				}
				if tl := pkt.TransportLayer(); ok && bp != 0 && tl != nil && dport != bp {
					t.Errorf("packet %d: to %s port %d, not its mapped port %d", n, dst, dport, bp)
				}
			}
			if sent != replies {
				t.Errorf("%d replies translated, want %d", sent, replies)
			}
			compareGoldenFiles(t, name, out, counters)
		})
	}
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// natReplies writes to c, for each frame NAT sent in out, the reply its
// backend would send: a SYN-ACK to a SYN, an answer to a UDP query; then
// one reply of a flow no client opened. It returns how many replies of
// known flows it wrote.
func natReplies(t *testing.T, c *capture, out [][]byte) int {
	n := 0
	var last gopacket.Packet
	for _, o := range out {
		pkt := gopacket.NewPacket(o, layers.LayerTypeEthernet, gopacket.Default)
		nl := pkt.NetworkLayer()
		if nl == nil || pkt.Layer(layers.LayerTypeIPv6Fragment) != nil {
			continue
		}
		if ip4, ok := nl.(*layers.IPv4); ok && ip4.Flags&layers.IPv4MoreFragments != 0 {
			continue
		}
		src, dst := net.IP(nl.NetworkFlow().Src().Raw()), net.IP(nl.NetworkFlow().Dst().Raw())
		switch tl := pkt.TransportLayer().(type) {
		case *layers.TCP:
			if !tl.SYN || tl.ACK {
				continue
			}
			c.write(c.ser(c.eth(), c.ip(dst, src, layers.IPProtocolTCP),
				&layers.TCP{SrcPort: tl.DstPort, DstPort: tl.SrcPort, SYN: true, ACK: true, Seq: 7, Ack: tl.Seq + 1, Window: 512}))
		case *layers.UDP:
			c.write(c.ser(c.eth(), c.ip(dst, src, layers.IPProtocolUDP),
				&layers.UDP{SrcPort: tl.DstPort, DstPort: tl.SrcPort}, gopacket.Payload([]byte("answer"))))
		default:
			continue
		}
		n++
		last = pkt
	}
	if last == nil {
		t.Fatal("NAT sent no packet to reply to")
	}
	// From the last backend that replied, to a client port no flow used.
	nl := last.NetworkLayer()
	client := net.IP(nl.NetworkFlow().Src().Raw())
	c.write(c.ser(c.eth(), c.ip(net.IP(nl.NetworkFlow().Dst().Raw()), client, layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 80, DstPort: 39999, ACK: true, Window: 512}))
	return n
}

// natAmbiguous adds to the golden graph's VIPs a UDP VIP of pool p on
// another address and port per family: b4-2 and b6-1, whose port is
// mapped (natPorts), then serve on it both udp4's (udp6's) port 9000 and
// this VIP's 9001, an ambiguous endpoint.
const natAmbiguous = `
vip "alt4" {
  address  = "192.0.2.11"
  protocol = "udp"
  ports    = [9001]
  pool     = "p"
}
vip "alt6" {
  address  = "2001:db8::11"
  protocol = "udp"
  ports    = [9001]
  pool     = "p"
}
`

// TestGoldenNATStateless runs, per client family, the backends' replies of
// TestGoldenNAT without their flows' packets, as a node (or a worker)
// receives them that did not see the flows, and compares output and
// counters with testdata/golden/ipv<family>-nat-stateless. Every reply is
// translated from its backend endpoint alone (stateless, counted in
// xlb_nat_reply_stateless_total) back from VIP:port, but those from an
// ambiguous endpoint (natAmbiguous), dropped as conntrack.reply_unknown,
// as is the reply of no flow.
func TestGoldenNATStateless(t *testing.T) {
	src := natSource(t) + natAmbiguous
	for _, family := range []int{4, 6} {
		name := fmt.Sprintf("ipv%d-nat-stateless", family)
		t.Run(name, func(t *testing.T) {
			first := t.TempDir()
			goldenInput(t, filepath.Join(first, "input.pcap"), family)
			out, _, _ := runCapture(t, first, src)
			dir := t.TempDir()
			c := createCapture(t, filepath.Join(dir, "input.pcap"), family)
			replies := natReplies(t, c, readFrames(t, out))
			c.close()
			out, counters, _ := runCapture(t, dir, src)
			vip := map[int]string{4: "192.0.2.10", 6: "2001:db8::10"}[family]
			sent := 0
			for n, o := range readFrames(t, out) {
				if err := csumtest.Check(o); err != nil {
					t.Errorf("packet %d: %v", n, err)
				}
				pkt := gopacket.NewPacket(o, layers.LayerTypeEthernet, gopacket.Default)
				src, _ := pkt.NetworkLayer().NetworkFlow().Endpoints()
				sport, _ := pkt.TransportLayer().TransportFlow().Endpoints()
				if p := be16(sport.Raw()); src.String() != vip || p != 80 && p != 9000 {
					t.Errorf("packet %d: from %s port %d, not the VIP's", n, src, p)
				}
				sent++
			}
			stateless := metricValue(t, counters, `xlb_nat_reply_stateless_total`)
			unknown := metricValue(t, counters, `xlb_drop_packets_total{element="ct",reason="conntrack.reply_unknown"}`)
			if sent == 0 || stateless != sent || unknown != replies-sent+1 || unknown < 2 {
				t.Errorf("%d of %d replies translated, %d stateless, %d unknown: want every reply but the ambiguous endpoints' (some) stateless, and those and the reply of no flow unknown:\n%s",
					sent, replies, stateless, unknown, counters)
			}
			compareGoldenFiles(t, name, out, counters)
		})
	}
}

// metricValue is the value of metric name in counters (pipeline.WriteText),
// 0 when it is not there.
func metricValue(t *testing.T, counters []byte, name string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(name) + ` (\d+)$`).FindSubmatch(counters)
	if m == nil {
		return 0
	}
	v, err := strconv.Atoi(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// backendErrors writes to c, for each TCP SYN FullNAT sent in out, the
// ICMP error its backend sends the source about it: Port Unreachable
// (ICMPv6 Destination Unreachable, port), quoting it whole. It returns
// how many it wrote, each to reach its client from the VIP.
func backendErrors(t *testing.T, c *capture, out [][]byte) int {
	n := 0
	for _, o := range out {
		pkt := gopacket.NewPacket(o, layers.LayerTypeEthernet, gopacket.Default)
		tcp, ok := pkt.TransportLayer().(*layers.TCP)
		if !ok || !tcp.SYN {
			continue
		}
		nl := pkt.NetworkLayer()
		src, dst := net.IP(nl.NetworkFlow().Src().Raw()), net.IP(nl.NetworkFlow().Dst().Raw())
		if c.family == 6 {
			c.write(c.ser(c.eth(), c.ip(dst, src, layers.IPProtocolICMPv6),
				&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodePortUnreachable)},
				gopacket.Payload(append([]byte{0, 0, 0, 0}, o[14:]...))))
		} else {
			c.write(c.ser(c.eth(), c.ip(dst, src, layers.IPProtocolICMPv4),
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)},
				gopacket.Payload(o[14:])))
		}
		n++
	}
	if n == 0 {
		t.Fatal("FullNAT sent no SYN for a backend to refuse")
	}
	return n
}

// quoted is the packet an ICMP error quotes, nil for another packet.
func quoted(pkt gopacket.Packet) gopacket.Packet {
	if l, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && l.TypeCode.Type() != layers.ICMPv4TypeEchoRequest && l.TypeCode.Type() != layers.ICMPv4TypeEchoReply {
		return gopacket.NewPacket(l.Payload, layers.LayerTypeIPv4, gopacket.Default)
	}
	if l, ok := pkt.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok && l.TypeCode.Type() < 128 && len(l.Payload) >= 4 {
		return gopacket.NewPacket(l.Payload[4:], layers.LayerTypeIPv6, gopacket.Default)
	}
	return nil
}
