package all

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/xlbproject/xlb/control/snapshot"
)

// snatConnect is the default graph with SNATReturn between Parse5Tuple and
// ConnTrack: replies to backends' outbound connections go from it to the
// encapsulation, everything else on to ConnTrack.
const snatConnect = `connect = [
    "rx -> parse -> snat -> ct",
    "snat.reply -> encap",
    "ct.hit -> encap -> tx",
    "encap.icmp -> tx",
    "ct.miss -> sel -> ct.learn",
    "parse.bad -> drop",
    "sel.nobackend -> drop",
    "encap.bad -> drop",
    "snat.bad -> drop",
  ]`

// snatGoldenConfig is goldenConfig with SNATReturn in the graph and ranges
// of 1000 ports on the TCP VIPs (the UDP VIPs' port 9000 takes the range
// 8024-9023 out of use on both addresses).
func snatGoldenConfig(t testing.TB, enc string) string {
	t.Helper()
	src := fmt.Sprintf(goldenConfig, goldenPcap[0], enc, goldenPcap[1], `element "SNATReturn" "snat" {}`)
	out := strings.Replace(src, "connect = default_graph()", snatConnect, 1)
	out = strings.ReplaceAll(out, "ports   = [80]\n  pool    = \"p\"\n", "ports   = [80]\n  pool    = \"p\"\n  snat_ports = 1000\n")
	if strings.Count(out, "snat_ports") != 2 || !strings.Contains(out, snatConnect) {
		t.Fatal("goldenConfig changed; update snatGoldenConfig")
	}
	return out
}

// snatInput writes, for one family, replies from a server (source port
// 80) to the first and the last port of every range of 1000 from 1024
// (three of them a backend's), to ports 1023 and 65535, a UDP datagram to
// a range's port (UDP is not the TCP VIP's protocol: on to ConnTrack and
// Maglev, which drops it as no VIP's), and one client SYN to the service
// port, load-balanced as ever.
func snatInput(t testing.TB, path string, family int) {
	c := createCapture(t, path, family)
	defer c.close()
	vip, server, client := net.ParseIP("192.0.2.10"), net.ParseIP("203.0.113.77"), net.ParseIP("203.0.113.1")
	if family == 6 {
		vip, server, client = net.ParseIP("2001:db8::10"), net.ParseIP("2001:db8:c::77"), net.ParseIP("2001:db8:c::1")
	}
	reply := func(port int) {
		c.write(c.ser(c.eth(), c.ip(server, vip, layers.IPProtocolTCP), &layers.TCP{SrcPort: 80, DstPort: layers.TCPPort(port), SYN: true, ACK: true, Seq: 7, Ack: 8, Window: 512}))
	}
	for k := range 64 {
		reply(1024 + 1000*k)
		reply(1024 + 1000*k + 999)
	}
	reply(1023)
	reply(65535)
	c.write(c.ser(c.eth(), c.ip(server, vip, layers.IPProtocolUDP), &layers.UDP{SrcPort: 53, DstPort: 1024}, gopacket.Payload([]byte("answer"))))
	c.write(c.ser(c.eth(), c.ip(client, vip, layers.IPProtocolTCP), &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 512}))
}

// TestGoldenSNAT runs the SNAT captures through the graph of
// snatGoldenConfig with GRE and compares output and counters with
// testdata/golden/ipv<family>-snat. Every reply leaves encapsulated to the
// backend whose range holds its destination port, as the snapshot says;
// each backend gets its two; the rest are snat.norange drops.
func TestGoldenSNAT(t *testing.T) {
	for _, family := range []int{4, 6} {
		name := fmt.Sprintf("ipv%d-snat", family)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "input.pcap")
			snatInput(t, in, family)
			out, counters, ctl := runCapture(t, dir, snatGoldenConfig(t, "GREEncap"))
			checkOutput(t, in, out, "GREEncap", ctl.Snapshot())
			s := ctl.Snapshot()
			var v *snapshot.VIP
			for i := range s.VIPs {
				if s.VIPs[i].Name == fmt.Sprintf("tcp%d", family) {
					v = &s.VIPs[i]
				}
			}
			replies := map[netip.Addr]int{}
			r, err := pcapgo.NewReader(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			for {
				data, _, err := r.ReadPacketData()
				if err != nil {
					break
				}
				pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
				tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if tcp == nil || tcp.SrcPort != 80 {
					continue
				}
				var outer netip.Addr
				switch l := pkt.Layers()[1].(type) {
				case *layers.IPv4:
					outer, _ = netip.AddrFromSlice(l.DstIP.To4())
				case *layers.IPv6:
					outer, _ = netip.AddrFromSlice(l.DstIP)
				}
				owner := v.SNAT.Owner(uint16(tcp.DstPort))
				if owner == snapshot.NoReal || s.Reals.At(owner).Addr != outer {
					t.Errorf("reply to port %d sent to %s", tcp.DstPort, outer)
				}
				replies[outer]++
			}
			if len(replies) != 3 {
				t.Errorf("replies by backend %v, want 2 to each of 3", replies)
			}
			for a, n := range replies {
				if n != 2 {
					t.Errorf("%d replies to %s, want 2", n, a)
				}
			}
			if !bytes.Contains(counters, []byte(`reason="snat.norange"} 124`)) {
				t.Errorf("counters:\n%s", counters)
			}
			compareGoldenFiles(t, name, out, counters)
		})
	}
}
