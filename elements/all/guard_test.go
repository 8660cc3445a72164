package all

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// guardVIPs adds a second VIP to the golden config: the one whose pool an
// ICMP error to the first must not reach.
const guardVIPs = `
vip "other4" {
  address = "192.0.2.20"
  ports   = [80]
  pool    = "p"
}
vip "other6" {
  address = "2001:db8::20"
  ports   = [80]
  pool    = "p"
}
`

// guardInput writes the capture of TestGoldenGuard for one family: ICMP
// errors quoting their own VIP's replies (forwarded, one before its
// flow's first packet with an 8-byte quote) and another VIP's (dropped),
// then one packet from each martian source class, another VIP's address
// among them.
func guardInput(t *testing.T, path string, family int) {
	t.Helper()
	c := createCapture(t, path, family)
	defer c.close()
	vipA, vipB := net.ParseIP("192.0.2.10"), net.ParseIP("192.0.2.20")
	client := func(i int) net.IP { return net.IPv4(203, 0, 113, byte(i)) }
	router := net.ParseIP("198.51.100.254")
	martians := []string{"255.255.255.255", "224.0.0.5", "239.1.2.3", "0.0.0.0", "0.1.2.3", "127.0.0.1", "192.0.2.10"}
	if family == 6 {
		vipA, vipB = net.ParseIP("2001:db8::10"), net.ParseIP("2001:db8::20")
		client = func(i int) net.IP { return net.ParseIP(fmt.Sprintf("2001:db8:c::%x", i)) }
		router = net.ParseIP("2001:db8:ffff::1")
		martians = []string{"::", "::1", "ff02::1", "ff0e::1234", "2001:db8::10"}
	}
	syn := func(src, dst net.IP, sport int, flags string) []byte {
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, Seq: 1000, Window: 1024, SYN: flags == "S", ACK: flags == "A"}
		return c.ser(c.eth(), c.ip(src, dst, layers.IPProtocolTCP), tcp)
	}
	// icmpErr is a Fragmentation Needed (Packet Too Big) from the router to
	// to, quoting the first n bytes after the IP header of a reply
	// from:80 -> client(i).
	icmpErr := func(to, from net.IP, i, n int) []byte {
		quoted := c.ser(c.ip(from, client(i), layers.IPProtocolTCP), &layers.TCP{SrcPort: 80, DstPort: layers.TCPPort(40000 + i), ACK: true, Window: 1})
		hl := map[bool]int{true: 40, false: 20}[family == 6]
		if family == 6 {
			return c.ser(c.eth(), c.ip(router, to, layers.IPProtocolICMPv6),
				&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)},
				gopacket.Payload(append([]byte{0, 0, 5, 0}, quoted[:hl+n]...)))
		}
		return c.ser(c.eth(), c.ip(router, to, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), Seq: 1400},
			gopacket.Payload(quoted[:hl+n]))
	}
	// Flow 1 to VIP A, then errors about it.
	c.write(syn(client(1), vipA, 40001, "S"))
	c.write(syn(client(1), vipA, 40001, "A"))
	c.write(icmpErr(vipA, vipA, 1, 20)) // forwarded to flow 1's backend
	c.write(icmpErr(vipA, vipB, 1, 20)) // quotes VIP B: dropped
	c.write(icmpErr(vipA, vipB, 2, 8))  // likewise with an 8-byte quote
	c.write(icmpErr(vipB, vipB, 3, 8))  // VIP B's own, before its flow: forwarded
	c.write(syn(client(3), vipB, 40003, "S"))
	c.write(icmpErr(vipA, client(1), 1, 20)) // quotes a packet to VIP A, not from it: dropped
	for _, m := range martians {
		c.write(syn(net.ParseIP(m), vipA, 40100, "S"))
	}
	// A martian router: dropped although its quote is right.
	router = net.ParseIP(martians[len(martians)-4])
	c.write(icmpErr(vipA, vipA, 1, 20))
	// Class E, link-local, and a source that is another VIP (B); IPv6:
	// link-local, IPv4-mapped and IPv4-compatible, and VIP B.
	more := []string{"240.0.0.1", "254.1.2.3", "169.254.0.1", "192.0.2.20"}
	if family == 6 {
		more = []string{"fe80::1", "::ffff:203.0.113.1", "::203.0.113.1", "2001:db8::20"}
	}
	for _, m := range more {
		c.write(syn(net.ParseIP(m), vipA, 40100, "S"))
	}
	// An ICMP error from VIP B to VIP A, quoting A's reply: VIP B sends
	// no errors, so it is dropped too.
	router = vipB
	c.write(icmpErr(vipA, vipA, 1, 20))
}

// TestGoldenGuard runs guardInput through the default graph with GREEncap
// and compares output and counters with testdata/golden/guard-*: which
// ICMP errors are forwarded, and a drop by reason for each of the others
// and for each martian source. guard-newflow-* runs goldenInput through a
// ConnTrack that admits a burst of 5 new flows and then 1 a second: the
// first 5 flows pass, every packet of the other new flows is dropped
// (conntrack.new_flow_rate).
func TestGoldenGuard(t *testing.T) {
	config := fmt.Sprintf(goldenConfig, goldenPcap[0], "GREEncap", goldenPcap[1], "")
	limited := strings.Replace(config, "capacity = 1024", "capacity = 1024\n    new_flow_rate = 1\n    new_flow_burst = 5", 1)
	for _, family := range []int{4, 6} {
		runGuard(t, fmt.Sprintf("guard-ipv%d", family), config+guardVIPs, func(path string) { guardInput(t, path, family) })
		runGuard(t, fmt.Sprintf("guard-newflow-ipv%d", family), limited, func(path string) { goldenInput(t, path, family) })
	}
}

// runGuard runs the capture that input writes through the graph of config
// and compares output and counters with testdata/golden/name.*.
func runGuard(t *testing.T, name, config string, input func(path string)) {
	t.Run(name, func(t *testing.T) {
		dir := t.TempDir()
		input(filepath.Join(dir, "input.pcap"))
		out, counters, ctl := runCapture(t, dir, config)
		checkOutput(t, filepath.Join(dir, "input.pcap"), out, "GREEncap", ctl.Snapshot())
		compareGoldenFiles(t, name, out, counters)
	})
}
