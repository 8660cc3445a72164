package all

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// fragRedirectNodes is the golden cluster: this node is lb1; lb2 and lb3
// have static MAC addresses (a live node follows them in the neighbour
// table), 02:00:00:00:0b:0N.
const fragRedirectNodes = `element "FragRedirect" "frag" {
    self  = "lb1"
    nodes = [
      { name = "lb3", address = "10.0.0.13" },
      { name = "lb1", address = "10.0.0.11" },
      { name = "lb2", address = "10.0.0.12" },
    ]
    macs = { lb2 = "02:00:00:00:0b:02", lb3 = "02:00:00:00:0b:03" }
  }
  element "Parse5Tuple" "parse" {}`

// fragRedirectConnect is the default graph with FragRedirect in front of
// Parse5Tuple; redirected frames leave by the same sink.
const fragRedirectConnect = `connect = [
    "rx -> frag -> parse -> ct",
    "frag.redirect -> tx",
    "ct.hit -> encap -> tx",
    "encap.icmp -> tx",
    "ct.miss -> sel -> ct.learn",
    "parse.bad -> drop",
    "sel.nobackend -> drop",
    "encap.bad -> drop",
  ]`

// TestGoldenFragRedirect runs, through a 3-node FragRedirect in front of
// the default graph, UDP datagrams of 12 clients in two fragments each
// plus one unfragmented packet per client; the last 4 clients' fragments
// come from lb2's MAC address (redirected to this node by a node whose
// list differs). It compares output and counters with
// testdata/golden/frag-redirect-ipv<family>, and checks, decoding them,
// that unfragmented packets and fragments chosen for lb1 are encapsulated,
// that the others leave unchanged but for the destination MAC address,
// lb2's or lb3's, both fragments of a datagram the same way, and that a
// fragment from lb2 is never sent on.
func TestGoldenFragRedirect(t *testing.T) {
	peerMAC := map[string]string{"02:00:00:00:0b:02": "lb2", "02:00:00:00:0b:03": "lb3"}
	for _, family := range []int{4, 6} {
		name := fmt.Sprintf("frag-redirect-ipv%d", family)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "input.pcap")
			c := &fragCapture{capture: createCapture(t, in, family)}
			var frames [][]byte // the input, by client: unfragmented, first, later
			for i := 1; i <= 12; i++ {
				if i > 8 {
					c.from = net.HardwareAddr{2, 0, 0, 0, 0x0b, 2}
				}
				src, dst := c.addrs(i)
				udp := &layers.UDP{SrcPort: layers.UDPPort(52000 + i), DstPort: 9000}
				flow := fmt.Sprintf("udp%d", i)
				c.write(flow, c.ser(c.eth(), c.ip(src, dst, layers.IPProtocolUDP).(gopacket.SerializableLayer), udp, gopacket.Payload([]byte("query"))))
				c.fragments(flow, src, dst, layers.IPProtocolUDP, uint32(0x700+i), c.l4(src, dst, udp, bytes.Repeat([]byte{byte(i)}, 40)), []int{24}, 0, 1)
			}
			frames = c.frames
			c.close()

			src := fmt.Sprintf(goldenConfig, goldenPcap[0], "GREEncap", goldenPcap[1], "")
			src = strings.Replace(src, `element "Parse5Tuple" "parse" {}`, fragRedirectNodes, 1)
			src = strings.Replace(src, `connect = default_graph()`, fragRedirectConnect, 1)
			out, counters, _ := runCapture(t, dir, src)

			r, err := pcapgo.NewReader(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			var got [][]byte
			for {
				data, _, err := r.ReadPacketData()
				if err != nil {
					break
				}
				got = append(got, data)
			}
			if len(got) != len(frames) {
				t.Fatalf("%d packets out, want %d", len(got), len(frames))
			}
			// Redirected frames reach the sink before the batch's
			// encapsulated ones: each input frame is matched with its
			// output by content.
			used := make([]bool, len(got))
			way := func(in []byte) string {
				// Without its Ethernet padding, which the parser trims.
				n, hl := 14+int(binary.BigEndian.Uint16(in[16:])), 20
				if family == 6 {
					n, hl = 14+40+int(binary.BigEndian.Uint16(in[18:])), 40
				}
				in = in[:n]
				for i, o := range got {
					if used[i] {
						continue
					}
					if peer, ok := peerMAC[net.HardwareAddr(o[0:6]).String()]; ok && bytes.Equal(o[6:], in[6:]) {
						used[i] = true
						return peer
					}
					// Encapsulated, its TTL decremented: the IP payload.
					if len(o) > len(in) && bytes.HasSuffix(o, in[14+hl:]) {
						used[i] = true
						return "lb1"
					}
				}
				return ""
			}
			ways := map[string]int{}
			for k := 0; k < len(frames); k += 3 {
				client := k/3 + 1
				way := [3]string{way(frames[k]), way(frames[k+1]), way(frames[k+2])}
				if slices.Contains(way[:], "") {
					t.Fatalf("client %d: a packet is neither encapsulated nor redirected unchanged: %q", client, way)
				}
				if way[0] != "lb1" {
					t.Errorf("client %d: its unfragmented packet went to %s, not through this node", client, way[0])
				}
				if way[1] != way[2] {
					t.Errorf("client %d: fragments split, %s and %s", client, way[1], way[2])
				}
				if client > 8 && way[1] != "lb1" {
					t.Errorf("client %d: a fragment from lb2 was sent on to %s", client, way[1])
				}
				if client <= 8 {
					ways[way[1]]++
				}
			}
			if len(ways) != 3 {
				t.Errorf("the 8 clients' datagrams went to %v: the fixture should exercise all 3 nodes; change the clients", ways)
			}
			compareGoldenFiles(t, name, out, counters)
		})
	}
}
