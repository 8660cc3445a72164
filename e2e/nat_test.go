package e2e_test

import (
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/ethtool"
	"github.com/xlbproject/xlb/internal/testenv"
)

// TestNAT: the lab's file with GREEncap's type word changed to NAT, and
// kernel backends without the VIP whose default route is the LB node,
// which forwards like a router. Real HTTP over 1,000 new connections from
// the client reaches every backend in proportion to its weight, and every
// reply comes back to the client from the VIP: the client's kernel would
// reset a connection whose replies came from a backend's address, and a
// capture on the client sees none. A reply forged by a backend for a flow
// the node does not hold, from its service port, is translated from that
// endpoint alone (xlb_nat_reply_stateless_total), as in a cluster a reply
// of another node's flow is (TestNATCluster), and does not reach the
// client from the backend's address either. IPv6: the same over a VIP of the lab's IPv6
// address on port 8080, served by the backends' IPv6 addresses on port 80
// (NAT's ports).
func TestNAT(t *testing.T) {
	t.Run("IPv4", func(t *testing.T) { testNAT(t, 4) })
	t.Run("IPv6", func(t *testing.T) { testNAT(t, 6) })
}

// natIPv6 is a VIP of the lab's IPv6 address on another port than web6's,
// over the backends' IPv6 addresses, by the weights of web's.
const natIPv6 = `
vip "nat6" {
  address  = "fd00:90:100::10"
  protocol = "tcp"
  ports    = [8080]
  pool     = "web6"
}
pool "web6" {
  health_check "tcp" {
    interval = "500ms"
    port     = 80
  }
  backend "be1v6" {
    address = "fd00:90:2::21"
    weight  = 1
  }
  backend "be2v6" {
    address = "fd00:90:2::22"
    weight  = 2
  }
  backend "be3v6" {
    address = "fd00:90:2::23"
    weight  = 3
  }
}
`

func testNAT(t *testing.T, family int) {
	testenv.RequireRoot(t)
	b := binaries(t)
	six := family == 6
	l := lab.New(t, lab.Topology{Backends: []string{"be1", "be2", "be3"}, IPv6: six})
	kernelBackends(t, l, false)
	lb := l.LB(0)
	forwarding, gw, client := "ipv4/ip_forward", lb.Addr4, l.Client().Addr4
	if six {
		forwarding, gw, client = "ipv6/conf/all/forwarding", lb.Addr6, l.Client().Addr6
	}
	config, url := translatorConfig(t, l, "NAT", six, "")
	if err := l.Sysctl(lb.NS, forwarding, "1"); err != nil {
		t.Fatal(err)
	}
	backends := map[netip.Addr]bool{}
	for _, be := range l.Backends() {
		backends[be.Addr4], backends[be.Addr6] = true, true
		h, err := l.Handle(be.NS)
		if err != nil {
			t.Fatal(err)
		}
		err = h.RouteReplace(&netlink.Route{Gw: gw.AsSlice()})
		h.Close()
		if err != nil {
			t.Fatalf("%s: default route via the LB: %v", be.Name, err)
		}
	}
	x := startTranslator(t, l, b, config, url)
	defer x.Stop()
	fromBackend := watchSources(t, l, l.Client(), func(src netip.Addr) bool { return backends[src] })
	const n = 1000
	runTranslated(t, l, b, url, n)
	checkTranslated(t, l, x, l.Backends()[0], client, fromBackend, "xlb_nat_packets_total", n, regexp.QuoteMeta("xlb_nat_reply_stateless_total"))
}

// runTranslated has the client open n new connections to url through a
// translator, each of which must succeed, over as many connections and
// about as many source ports, reaching the backends by their weights.
func runTranslated(t *testing.T, l *lab.Lab, b map[string]string, url string, n int) {
	t.Helper()
	s, err := l.RunClient(b["xlb-client"], "-url", url, "-n", strconv.Itoa(n), "-c", "8")
	if err != nil {
		t.Fatalf("%v (%+v)", err, s)
	}
	if s.OK != n || s.Connections < n || s.SourcePorts < n*9/10 {
		t.Fatalf("%+v, want %d ok over as many connections and about as many source ports", s, n)
	}
	checkShares(t, url, s, 4)
}

// checkTranslated has be forge replies to to for flows the node does not
// hold, then checks that the client got no packet from a backend's address
// (fromBackend counts them), stops x and checks its exit counters: the
// forged replies counted by the counter forged matches (dropped as
// conntrack.reply_unknown, or NAT's stateless translations), at least 3
// replies a connection translated (metric, by direction), nothing dropped
// by Discard.
func checkTranslated(t *testing.T, l *lab.Lab, x *lab.XLBD, be lab.Node, to netip.Addr, fromBackend func() int64, metric string, n int, forged string) {
	t.Helper()
	forgeReply(t, l, be, to)
	time.Sleep(300 * time.Millisecond) // for anything that should not come
	if leaked := fromBackend(); leaked != 0 {
		t.Errorf("the client received %d packets from a backend's address: every reply must leave translated", leaked)
	}
	out, err := x.Stop()
	if err != nil {
		t.Fatalf("xlbd: %v\n%s", err, x.Log())
	}
	if got := counter(t, out, forged); got < 3 {
		t.Errorf("%d counted as %s, want the 3 forged replies:\n%s", got, forged, out)
	}
	if got := counter(t, out, regexp.QuoteMeta(metric+`{direction="reply"}`)); got < uint64(n)*3 {
		t.Errorf("%d replies translated, want at least 3 a connection:\n%s", got, out)
	}
	if !strings.Contains(out, "drop (Discard)\n  in  in                      0\n") {
		t.Errorf("xlbd dropped packets:\n%s", out)
	}
}

// addAddr adds prefix's address to node's interface.
func addAddr(t *testing.T, l *lab.Lab, node lab.Node, prefix netip.Prefix) {
	t.Helper()
	h, err := l.Handle(node.NS)
	if err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName(node.Iface)
	if err == nil {
		err = h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())}})
	}
	h.Close()
	if err != nil {
		t.Fatalf("%s: address %s: %v", node.Name, prefix, err)
	}
}

// translatorConfig is the lab's file with encap's type word in
// GREEncap's place and attrs added to its block; for IPv6, with natIPv6's
// VIP, its backends serving its port 8080 on port 80 (ports). url is the
// VIP's of the family.
func translatorConfig(t *testing.T, l *lab.Lab, encap string, six bool, attrs string) (config, url string) {
	t.Helper()
	config, url = labConfig(t, encap), "http://"+l.VIP().String()+"/"
	if six {
		config, url = labConfig(t, encap, natIPv6), "http://["+l.VIP6().String()+"]:8080/"
		attrs += "\n    ports = { be1v6 = 80, be2v6 = 80, be3v6 = 80 }"
	}
	src, err := os.ReadFile(config)
	if err == nil {
		block := `element "` + encap + `" "encap" {`
		err = os.WriteFile(config, []byte(strings.Replace(string(src), block, block+attrs, 1)), 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	return config, url
}

// startTranslator starts xlbd on the LB node with config, its backends'
// transmit checksums filled in, and waits until every backend answers at
// url through it.
func startTranslator(t *testing.T, l *lab.Lab, b map[string]string, config, url string) *lab.XLBD {
	t.Helper()
	for _, be := range l.Backends() {
		// As on the client (lab.build): veth leaves offloaded TCP
		// checksums partial, and a reply the LB copies out with AF_XDP
		// would reach the client with a bad one. A NIC fills them in
		// before the wire.
		if err := l.Do(be.NS, func() error { return ethtool.SetTxChecksum(be.Iface, false) }); err != nil {
			t.Fatal(err)
		}
	}
	lb := l.LB(0)
	x, err := l.StartXLBD(lb, b["xlbd"], config, "-var", "interface="+lb.Iface)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := l.RunClient(b["xlb-client"], "-url", url, "-n", "30", "-c", "3", "-timeout", "1s")
		if err == nil && s.OK == 30 && len(s.Backends) == 3 {
			return x
		}
		if time.Now().After(deadline) {
			out, _ := x.Stop()
			t.Fatalf("no backend answers through the translator: %+v %v\n%s\n%s", s, err, x.Log(), out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// forgeReply sends, three times from be, a TCP segment from its port 80
// (a steered endpoint of both tests) to a port of client no flow uses.
func forgeReply(t *testing.T, l *lab.Lab, be lab.Node, client netip.Addr) {
	t.Helper()
	if err := l.Do(be.NS, func() error {
		var fd int
		var err error
		var pkt []byte
		var to unix.Sockaddr
		if client.Is4() {
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			pkt, to = rawIPv4(be.Addr4.As4(), client.As4(), 0x4e41, 0, tcpSegment(80, 40404, 0)), &unix.SockaddrInet4{Addr: client.As4()}
		} else {
			// The kernel writes the IPv6 header, from be's address.
			fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
			pkt, to = tcpSegment(80, 40404, 0), &unix.SockaddrInet6{Addr: client.As16()}
		}
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for range 3 {
			if err := unix.Sendto(fd, pkt, 0, to); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// counter sums the values of the lines of xlbd's counters out that are
// what the regular expression name matches, then a number: a metric's
// line, or a drop's in the drops table (element, reason, packets).
func counter(t *testing.T, out, name string) uint64 {
	t.Helper()
	var sum uint64
	for _, m := range regexp.MustCompile(`(?m)^\s*`+name+`\s+(\d+)$`).FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}
