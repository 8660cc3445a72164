package e2e_test

import (
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/ethtool"
	"github.com/xlbproject/xlb/internal/testenv"
)

// The LB node's source pool in TestFullNAT: addresses of the backends'
// segment, on the LB's interface, used by nothing else.
var (
	fullNATPool4 = netip.MustParseAddr("10.90.2.250")
	fullNATPool6 = netip.MustParseAddr("fd00:90:2::250")
)

// TestFullNAT: the lab's file with GREEncap's type word changed to
// FullNAT and a source pool, and kernel backends left as the lab makes
// them: no VIP, and their default route the router, not the LB; the pool
// is on the LB's interface, on the backends' segment, which they reach by
// their connected route. Real HTTP over 1,000 new connections from the
// client reaches every backend in proportion to its weight (the health
// checks, from the LB's own address, keep passing: their replies stay the
// kernel's), every connection's packets reach the backend from the pool,
// never from the client's address, and every reply comes back to the
// client from the VIP: a capture on the client sees no packet from a
// backend's address. A reply a backend forges to the pool for a flow the
// node does not hold is counted as conntrack.reply_unknown. IPv6: the
// same over TestNAT's IPv6 VIP and port mapping.
func TestFullNAT(t *testing.T) {
	t.Run("IPv4", func(t *testing.T) { testFullNAT(t, 4) })
	t.Run("IPv6", func(t *testing.T) { testFullNAT(t, 6) })
}

func testFullNAT(t *testing.T, family int) {
	l, x, url, pool := startFullNAT(t, family, "")
	defer x.Stop()
	client := l.Client().Addr4
	if family == 6 {
		client = l.Client().Addr6
	}
	backends := map[netip.Addr]bool{}
	for _, be := range l.Backends() {
		backends[be.Addr4], backends[be.Addr6] = true, true
	}
	fromBackend := watchSources(t, l, l.Client(), func(src netip.Addr) bool { return backends[src] })
	be1 := l.Backends()[0]
	fromClient := watchSources(t, l, be1, func(src netip.Addr) bool { return src == client })
	fromPool := watchSources(t, l, be1, func(src netip.Addr) bool { return src == pool })
	const n = 1000
	runTranslated(t, l, binaries(t), url, n)
	if got := fromClient(); got != 0 {
		t.Errorf("%s received %d packets from the client's address: FullNAT sends them from the pool", be1.Name, got)
	}
	if got := fromPool(); got < n/6 {
		t.Errorf("%s received %d packets from the pool, want at least one a connection of its share", be1.Name, got)
	}
	checkTranslated(t, l, x, be1, pool, fromBackend, "xlb_fullnat_packets_total", n, `ct\s+conntrack\.reply_unknown`)
}

// startFullNAT builds TestFullNAT's lab for family, with kernel
// backends and the pool on the LB's interface, and starts xlbd on the
// lab's file with FullNAT and extra (HCL) appended; url is the VIP's of
// the family.
func startFullNAT(t *testing.T, family int, extra string) (l *lab.Lab, x *lab.XLBD, url string, pool netip.Addr) {
	t.Helper()
	testenv.RequireRoot(t)
	b := binaries(t)
	six := family == 6
	l = lab.New(t, lab.Topology{Backends: []string{"be1", "be2", "be3"}, IPv6: six})
	kernelBackends(t, l, false)
	pool, bits := fullNATPool4, 24
	if six {
		pool, bits = fullNATPool6, 64
	}
	addAddr(t, l, l.LB(0), netip.PrefixFrom(pool, bits))
	config, url := translatorConfig(t, l, "FullNAT", six, `
    source_pool = ["`+fullNATPool4.String()+`", "`+fullNATPool6.String()+`"]`)
	if extra != "" {
		f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString(extra)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return l, startTranslator(t, l, b, config, url), url, pool
}

// TestFullNATCluster: two xlbd nodes behind the router's ECMP run
// examples/cluster/cluster.hcl with FullNAT in GREEncap's place, each
// with a source pool of its own (10.90.2.(240+node), on its interface).
// 1,000 connections from the client, spread over both nodes by ECMP, all
// succeed: each backend answers the source its connection came from,
// which is the node that translated it, so no node meets a reply it does
// not know (conntrack.reply_unknown 0 on both), and both translate
// replies.
func TestFullNATCluster(t *testing.T) {
	config := editedClusterConfig(t, "fullnat.hcl", [2]string{`element "GREEncap" "encap" {`, `element "FullNAT" "encap" {
    source_pool = ["10.90.2.${240 + var.node}"]`})
	c := newClusterLab(t, lab.BGP{}, config)
	l := c.l
	for i := range 2 {
		addAddr(t, l, l.LB(i), netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 90, 2, byte(241 + i)}), 24))
	}
	for _, be := range l.Backends() {
		if err := l.Do(be.NS, func() error { return ethtool.SetTxChecksum(be.Iface, false) }); err != nil {
			t.Fatal(err)
		}
	}
	c.start(0)
	c.start(1)
	c.waitHops(web4, 0, 1)
	url := "http://" + lab.VIP4.String() + "/"
	waitTranslated(t, l, c.bins["xlb-client"], url, "FullNAT")
	const n = 1000
	s, err := l.RunClient(c.bins["xlb-client"], "-url", url, "-n", strconv.Itoa(n), "-c", "8")
	if err != nil || s.OK != n {
		t.Fatalf("%v (%+v), want %d ok", err, s, n)
	}
	for i := range 2 {
		out, err := c.nodes[i].Stop()
		c.nodes[i] = nil
		if err != nil {
			t.Fatalf("%s: %v\n%s", l.LB(i).Name, err, out)
		}
		replies := counter(t, out, regexp.QuoteMeta(`xlb_fullnat_packets_total{direction="reply"}`))
		t.Logf("%s translated %d replies", l.LB(i).Name, replies)
		if replies == 0 {
			t.Errorf("%s translated no reply: ECMP gave it no flow, or its replies went elsewhere:\n%s", l.LB(i).Name, out)
		}
		if got := counter(t, out, `ct\s+conntrack\.reply_unknown`); got != 0 {
			t.Errorf("%s: %d unknown replies, want 0: a reply reached another node than its flow's:\n%s", l.LB(i).Name, got, out)
		}
	}
}
