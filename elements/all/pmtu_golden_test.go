package all

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// pmtuInput writes a capture for one client family of packets around the
// path MTU of a 1500-byte link: a SYN that fits, full-size packets of the
// same flow and of others (each answered with ICMP until the burst of two
// is spent, the third over the rate), and for IPv4 one without DF
// (dropped: the outer is not fragmented).
func pmtuInput(t *testing.T, path string, family int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(ls ...gopacket.SerializableLayer) {
		buf := gopacket.NewSerializeBuffer()
		for _, l := range ls {
			if c, ok := l.(interface {
				SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
			}); ok {
				_ = c.SetNetworkLayerForChecksum(ls[1].(gopacket.NetworkLayer))
			}
		}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Millisecond)
		data := buf.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: now, CaptureLength: len(data), Length: len(data)}, data); err != nil {
			t.Fatal(err)
		}
	}
	vip := net.ParseIP("192.0.2.10")
	client := func(i int) net.IP { return net.IPv4(203, 0, 113, byte(i)) }
	et := layers.EthernetTypeIPv4
	if family == 6 {
		vip, et = net.ParseIP("2001:db8::10"), layers.EthernetTypeIPv6
		client = func(i int) net.IP { return net.ParseIP(fmt.Sprintf("2001:db8:c::%x", i)) }
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et}
	ip := func(src net.IP, proto layers.IPProtocol, df bool) gopacket.NetworkLayer {
		if family == 6 {
			return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src, DstIP: vip}
		}
		h := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src, DstIP: vip, Id: 7}
		if df {
			h.Flags = layers.IPv4DontFragment
		}
		return h
	}
	hdr := map[bool]int{true: 20, false: 40}[family == 4] + 20 // IP and TCP
	full := gopacket.Payload(bytes.Repeat([]byte{0x5a}, 1500-hdr))
	tcp := func(port int, syn bool) *layers.TCP {
		return &layers.TCP{SrcPort: layers.TCPPort(port), DstPort: 80, Seq: 1, ACK: !syn, SYN: syn, Window: 1024}
	}
	write(eth, ip(client(1), layers.IPProtocolTCP, true).(gopacket.SerializableLayer), tcp(40001, true))
	write(eth, ip(client(1), layers.IPProtocolTCP, true).(gopacket.SerializableLayer), tcp(40001, false), full)
	write(eth, ip(client(2), layers.IPProtocolTCP, true).(gopacket.SerializableLayer), tcp(40002, false), full)
	write(eth, ip(client(3), layers.IPProtocolTCP, true).(gopacket.SerializableLayer), tcp(40003, false), full)
	if family == 4 {
		write(eth, ip(client(4), layers.IPProtocolTCP, false).(gopacket.SerializableLayer), tcp(40004, false), full)
	}
}

// TestGoldenPMTU runs pmtuInput through the default graph with mtu = 1500,
// icmp_rate = 1, icmp_burst = 2 and too_big_no_df = "drop", for each
// client family and tunnel,
// and compares the output (encapsulated packets and ICMP replies) and the
// counters with testdata/golden/pmtu-*. Run with -update to rewrite them.
func TestGoldenPMTU(t *testing.T) {
	for _, family := range []int{4, 6} {
		for _, enc := range []string{"GREEncap", "IPIPEncap"} {
			name := fmt.Sprintf("pmtu-ipv%d-%s", family, strings.ToLower(strings.TrimSuffix(enc, "Encap")))
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				pmtuInput(t, filepath.Join(dir, "input.pcap"), family)
				cfg := strings.Replace(fmt.Sprintf(goldenConfig, goldenPcap[0], enc, goldenPcap[1], ""),
					`source6 = "2001:db8::1"`, "source6 = \"2001:db8::1\"\n    mtu = 1500\n    icmp_rate = 1\n    icmp_burst = 2\n    too_big_no_df = \"drop\"", 1)
				out, counters, _ := runCapture(t, dir, cfg)
				checkReplies(t, out, family)
				compareGoldenFiles(t, name, out, counters)
			})
		}
	}
}

// checkReplies decodes the output with gopacket: the SYN is tunnelled, and
// the two replies that follow are ICMP errors of the client's family, from
// the VIP, with the MTU left after a tunnel header and quoting a
// full-size packet.
func checkReplies(t *testing.T, out []byte, family int) {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var replies int
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if l := pkt.Layer(layers.LayerTypeICMPv4); l != nil && family == 4 {
			icmp := l.(*layers.ICMPv4)
			if icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || icmp.Seq < 1456 || icmp.Seq > 1480 {
				t.Errorf("ICMP %v MTU %d", icmp.TypeCode, icmp.Seq)
			}
			if ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ip.SrcIP.String() != "192.0.2.10" || ipv4Checksum(data[14:34]) != 0 {
				t.Errorf("reply from %v, or its checksum is wrong", ip.SrcIP)
			}
			replies++
		}
		if l := pkt.Layer(layers.LayerTypeICMPv6); l != nil && family == 6 {
			if icmp := l.(*layers.ICMPv6); icmp.TypeCode != layers.CreateICMPv6TypeCode(2, 0) {
				t.Errorf("ICMPv6 %v", icmp.TypeCode)
			}
			if ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ip.SrcIP.String() != "2001:db8::10" || len(data) != 14+1280 {
				t.Errorf("reply from %v of %d bytes", ip.SrcIP, len(data))
			}
			replies++
		}
	}
	if replies != 2 {
		t.Errorf("%d ICMP replies, want 2 (the burst)", replies)
	}
}

// TestGoldenMSSClamp runs SYNs of both families through MSSClamp (mss =
// 1396) between parse and ct, GRE after: a SYN announcing 1460 leaves with
// 1396, one announcing 1200 and a non-SYN leave as they came.
func TestGoldenMSSClamp(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "input.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, addrs := range [][2]net.IP{{net.IPv4(203, 0, 113, 1), net.ParseIP("192.0.2.10")}, {net.ParseIP("2001:db8:c::1"), net.ParseIP("2001:db8::10")}} {
		// 0: an ACK that carries an MSS option of 1460.
		for i, mss := range []int{1460, 1200, 0} {
			eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
			var ip gopacket.NetworkLayer = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: addrs[0], DstIP: addrs[1], Flags: layers.IPv4DontFragment}
			if addrs[0].To4() == nil {
				eth.EthernetType = layers.EthernetTypeIPv6
				ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: addrs[0], DstIP: addrs[1]}
			}
			v := map[bool]int{true: 1460, false: mss}[mss == 0]
			tcp := &layers.TCP{SrcPort: layers.TCPPort(41000 + i), DstPort: 80, Seq: 1, SYN: mss != 0, ACK: mss == 0, Window: 1024,
				Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(v >> 8), byte(v)}}}}
			_ = tcp.SetNetworkLayerForChecksum(ip)
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip.(gopacket.SerializableLayer), tcp); err != nil {
				t.Fatal(err)
			}
			now = now.Add(time.Millisecond)
			if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: now, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.Close()
	cfg := strings.Replace(fmt.Sprintf(goldenConfig, goldenPcap[0], "GREEncap", goldenPcap[1], `element "MSSClamp" "clamp" {
    mss = 1396
  }`), "connect = default_graph()", `connect = ["rx -> parse -> clamp -> ct", "ct.hit -> encap -> tx", "encap.icmp -> tx",
    "ct.miss -> sel -> ct.learn", "parse.bad -> drop", "sel.nobackend -> drop", "encap.bad -> drop"]`, 1)
	out, counters, _ := runCapture(t, dir, cfg)
	compareGoldenFiles(t, "pmtu-mss-gre", out, counters)
}
