package all

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/ip4defrag"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// outerFragInput writes IPv4 datagrams without DF that a 1500-byte link
// cannot carry once tunnelled: UDP datagrams of size bytes (1480) from
// eight clients (their flows spread over the pool's IPv4 and IPv6
// backends), a full-size TCP segment, and a small datagram that fits.
func outerFragInput(t testing.TB, path string, size int) {
	c := createCapture(t, path, 4)
	defer c.close()
	vip := net.ParseIP("192.0.2.10")
	ip := func(i int, proto layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IPv4(203, 0, 113, byte(i)), DstIP: vip, Id: uint16(100 + i)}
	}
	for i := 1; i <= 8; i++ {
		body := bytes.Repeat([]byte{byte(i)}, size-28)
		c.write(c.ser(c.eth(), ip(i, layers.IPProtocolUDP), &layers.UDP{SrcPort: layers.UDPPort(50000 + i), DstPort: 9000}, gopacket.Payload(body)))
	}
	c.write(c.ser(c.eth(), ip(9, layers.IPProtocolTCP), &layers.TCP{SrcPort: 40009, DstPort: 80, Seq: 1, ACK: true, Window: 1024},
		gopacket.Payload(bytes.Repeat([]byte{0x5a}, 1500-40))))
	c.write(c.ser(c.eth(), ip(10, layers.IPProtocolUDP), &layers.UDP{SrcPort: 50010, DstPort: 9000}, gopacket.Payload([]byte("fits"))))
}

// TestGoldenOuterFrag runs outerFragInput through the default graph with
// mtu = 1500 and the default too_big_no_df ("fragment"), for each tunnel,
// and compares the output and the counters with
// testdata/golden/pmtu-outerfrag-*-ipv4. It also reassembles the output:
// every outer packet, IPv4 (gopacket's ip4defrag) or IPv6 (by Fragment
// header), decapsulates to its datagram whole, TTL decremented.
func TestGoldenOuterFrag(t *testing.T) {
	for _, enc := range []string{"GREEncap", "IPIPEncap"} {
		tun := strings.ToLower(strings.TrimSuffix(enc, "Encap"))
		name := fmt.Sprintf("pmtu-outerfrag-%s-ipv4", tun)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "input.pcap")
			outerFragInput(t, in, 1480)
			cfg := strings.Replace(fmt.Sprintf(goldenConfig, goldenPcap[0], enc, goldenPcap[1], ""),
				`source6 = "2001:db8::1"`, "source6 = \"2001:db8::1\"\n    mtu = 1500", 1)
			out, counters, _ := runCapture(t, dir, cfg)
			inners := reassemble(t, out, tun == "gre")
			input, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			want := readIPs(t, input)
			if len(inners) != len(want) {
				t.Fatalf("%d datagrams reassembled, want %d", len(inners), len(want))
			}
			for i, w := range want {
				w[8]-- // TTL, and the checksum with it
				binary.BigEndian.PutUint16(w[10:], 0)
				binary.BigEndian.PutUint16(w[10:], ipv4Checksum(w[:20]))
				if !bytes.Equal(inners[i], w) {
					t.Errorf("datagram %d differs after reassembly and decapsulation", i)
				}
			}
			compareGoldenFiles(t, name, out, counters)
		})
	}
}

// reassemble reads the output capture and returns the inner IP packets, in
// the order their last fragment (or whole packet) left; it fails the test
// unless both outer families were fragmented.
func reassemble(t *testing.T, out []byte, gre bool) [][]byte {
	t.Helper()
	d := ip4defrag.NewIPv4Defragmenter()
	v6 := map[uint32][]byte{}
	var inners [][]byte
	frag4, frag6 := 0, 0
	decap := func(outer []byte) {
		if gre {
			outer = outer[4:]
		}
		inners = append(inners, outer)
	}
	for _, data := range readFrames(t, out) {
		pkt := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			if ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 {
				frag4++
				if ipv4Checksum(data[14:34]) != 0 || len(data)-14 > 1500 || ip.Flags&layers.IPv4DontFragment != 0 {
					t.Errorf("IPv4 fragment %v", ip)
				}
			}
			r, err := d.DefragIPv4(ip)
			if err != nil {
				t.Fatal(err)
			}
			if r != nil {
				decap(r.Payload)
			}
			continue
		}
		ip := pkt.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		fh, ok := pkt.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
		if !ok {
			decap(ip.Payload)
			continue
		}
		frag6++
		if len(data)-14 > 1500 || int(fh.FragmentOffset)*8 != len(v6[fh.Identification]) {
			t.Fatalf("IPv6 fragment of %d bytes %+v", len(data), fh)
		}
		v6[fh.Identification] = append(v6[fh.Identification], data[14+40+8:]...)
		if !fh.MoreFragments {
			decap(v6[fh.Identification])
			delete(v6, fh.Identification)
		}
	}
	if frag4 == 0 || frag6 == 0 || len(v6) != 0 {
		t.Errorf("%d IPv4 and %d IPv6 outer fragments, %d datagrams incomplete; want both families fragmented", frag4, frag6, len(v6))
	}
	return inners
}

// outerFragFrames are the frames of outerFragInput with datagrams of size
// bytes.
func outerFragFrames(tb testing.TB, size int) [][]byte {
	path := filepath.Join(tb.TempDir(), "input.pcap")
	outerFragInput(tb, path, size)
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return readFrames(tb, b)
}

// readFrames returns the packets of a capture.
func readFrames(t testing.TB, capture []byte) [][]byte {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(capture))
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			return frames
		}
		frames = append(frames, data)
	}
}

// readIPs returns the IPv4 packets of a capture's Ethernet frames, without
// Ethernet padding.
func readIPs(t *testing.T, capture []byte) [][]byte {
	var ips [][]byte
	for _, f := range readFrames(t, capture) {
		ips = append(ips, f[14:14+binary.BigEndian.Uint16(f[16:])])
	}
	return ips
}
