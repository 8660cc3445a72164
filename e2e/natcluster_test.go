package e2e_test

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/ethtool"
)

// TestNATCluster: examples/cluster/cluster.hcl with GREEncap's type word
// changed to NAT, on two nodes behind BIRD's ECMP, and the backends' route
// to the clients through lb1 alone: the replies of the flows ECMP sends
// through lb2 (about half) reach lb1, which never saw them. 1,000 HTTP
// connections from the client all complete: lb1 translates those replies
// from their backend endpoint alone (xlb_nat_reply_stateless_total), no
// node counts a conntrack.reply_unknown, and the client receives no packet
// from a backend's address.
func TestNATCluster(t *testing.T) {
	config := editedClusterConfig(t, "nat.hcl", [2]string{`element "GREEncap" "encap" {`, `element "NAT" "encap" {`})
	c := newClusterLab(t, lab.BGP{}, config)
	l := c.l
	gw := l.LB(0)
	if err := l.Sysctl(gw.NS, "ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	backends := map[netip.Addr]bool{}
	for _, be := range l.Backends() {
		backends[be.Addr4] = true
		if err := l.Do(be.NS, func() error { return ethtool.SetTxChecksum(be.Iface, false) }); err != nil {
			t.Fatal(err)
		}
		h, err := l.Handle(be.NS)
		if err != nil {
			t.Fatal(err)
		}
		n := lab.ClientNet4
		err = h.RouteReplace(&netlink.Route{Dst: &net.IPNet{IP: n.Addr().AsSlice(), Mask: net.CIDRMask(n.Bits(), 32)}, Gw: gw.Addr4.AsSlice()})
		h.Close()
		if err != nil {
			t.Fatalf("%s: route to the clients via %s: %v", be.Name, gw.Name, err)
		}
	}
	c.start(0)
	c.start(1)
	c.waitHops(web4, 0, 1)
	url := "http://" + lab.VIP4.String() + "/"
	waitTranslated(t, l, c.bins["xlb-client"], url, "NAT")
	fromBackend := watchSources(t, l, l.Client(), func(src netip.Addr) bool { return backends[src] })
	const n = 1000
	s, err := l.RunClient(c.bins["xlb-client"], "-url", url, "-n", strconv.Itoa(n), "-c", "8")
	if err != nil || s.OK != n || s.Connections < n {
		t.Fatalf("%v (%+v), want %d ok over as many connections", err, s, n)
	}
	if leaked := fromBackend(); leaked != 0 {
		t.Errorf("the client received %d packets from a backend's address: every reply must leave translated", leaked)
	}
	var forward, replies, stateless [2]uint64
	for i := range 2 {
		out, err := c.nodes[i].Stop()
		c.nodes[i] = nil
		if err != nil {
			t.Fatalf("%s: %v\n%s", l.LB(i).Name, err, out)
		}
		forward[i] = counter(t, out, regexp.QuoteMeta(`xlb_nat_packets_total{direction="forward"}`))
		replies[i] = counter(t, out, regexp.QuoteMeta(`xlb_nat_packets_total{direction="reply"}`))
		stateless[i] = counter(t, out, regexp.QuoteMeta(`xlb_nat_reply_stateless_total`))
		if got := counter(t, out, `ct\s+conntrack\.reply_unknown`); got != 0 {
			t.Errorf("%s: %d unknown replies, want 0:\n%s", l.LB(i).Name, got, out)
		}
		if forward[i] == 0 {
			t.Errorf("%s sent nothing to a backend: ECMP gave it no flow:\n%s", l.LB(i).Name, out)
		}
	}
	t.Logf("packets to backends: lb1 %d, lb2 %d; replies translated by lb1 %d, of which %d (%.0f%%) statelessly, by lb2 %d",
		forward[0], forward[1], replies[0], stateless[0], 100*float64(stateless[0])/float64(max(replies[0], 1)), replies[1])
	if stateless[0] == 0 || replies[1] != 0 {
		t.Errorf("lb1 translated %d replies statelessly and lb2 %d replies: want lb1 to take every reply, those of lb2's flows statelessly", stateless[0], replies[1])
	}
}

// waitTranslated waits until 30 requests to url all succeed through the
// translator kind (a name for the failure's message).
func waitTranslated(t *testing.T, l *lab.Lab, client, url, kind string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := l.RunClient(client, "-url", url, "-n", "30", "-c", "3", "-timeout", "1s")
		if err == nil && s.OK == 30 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backend answers through %s: %+v %v", kind, s, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
