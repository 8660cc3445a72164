package e2e_test

import (
	"net/netip"
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
// which forwards like a router (ip_forward=1). Real HTTP over 1,000 new
// connections from the client reaches every backend in proportion to its
// weight, and every reply comes back to the client from the VIP: the
// client's kernel would reset a connection whose replies came from a
// backend's address, and a capture on the client sees none. A reply
// forged by a backend for a flow the node does not hold is counted as
// conntrack.reply_unknown and does not reach the client either.
func TestNAT(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{Backends: []string{"be1", "be2", "be3"}})
	kernelBackends(t, l, false)
	lb := l.LB(0)
	if err := l.Sysctl(lb.NS, "ipv4/ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	backends := map[netip.Addr]bool{}
	for _, be := range l.Backends() {
		backends[be.Addr4] = true
		h, err := l.Handle(be.NS)
		if err != nil {
			t.Fatal(err)
		}
		err = h.RouteReplace(&netlink.Route{Gw: lb.Addr4.AsSlice()})
		h.Close()
		if err != nil {
			t.Fatalf("%s: default route via the LB: %v", be.Name, err)
		}
		// As on the client (lab.build): veth leaves offloaded TCP
		// checksums partial, and a reply the LB copies out with AF_XDP
		// would reach the client with a bad one. A NIC fills them in
		// before the wire.
		if err := l.Do(be.NS, func() error { return ethtool.SetTxChecksum(be.Iface, false) }); err != nil {
			t.Fatal(err)
		}
	}
	x, err := l.StartXLBD(lb, b["xlbd"], labConfig(t, "NAT"), "-var", "interface="+lb.Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Stop()
	url := "http://" + l.VIP().String() + "/"
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := l.RunClient(b["xlb-client"], "-url", url, "-n", "30", "-c", "3", "-timeout", "1s")
		if err == nil && s.OK == 30 && len(s.Backends) == 3 {
			break
		}
		if time.Now().After(deadline) {
			out, _ := x.Stop()
			t.Fatalf("no backend answers through NAT: %+v %v\n%s\n%s", s, err, x.Log(), out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fromBackend := watchSources(t, l, l.Client(), func(src netip.Addr) bool { return backends[src] })
	const n = 1000
	s, err := l.RunClient(b["xlb-client"], "-url", url, "-n", strconv.Itoa(n), "-c", "8")
	if err != nil {
		t.Fatalf("%v (%+v)", err, s)
	}
	if s.OK != n || s.Connections < n || s.SourcePorts < n*9/10 {
		t.Fatalf("%+v, want %d ok over as many connections and about as many source ports", s, n)
	}
	checkShares(t, url, s, 4)

	// A reply from be1's service to a client port no flow uses.
	be1 := l.Backends()[0]
	forged := rawIPv4(be1.Addr4.As4(), l.Client().Addr4.As4(), 0x4e41, 0, tcpSegment(80, 40404, 0))
	if err := l.Do(be1.NS, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for range 3 {
			if err := unix.Sendto(fd, forged, 0, &unix.SockaddrInet4{Addr: l.Client().Addr4.As4()}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // for anything that should not come
	if leaked := fromBackend(); leaked != 0 {
		t.Errorf("the client received %d packets from a backend's address: every reply must leave translated", leaked)
	}
	out, err := x.Stop()
	if err != nil {
		t.Fatalf("xlbd: %v\n%s", err, x.Log())
	}
	if got := counter(t, out, `ct\s+conntrack\.reply_unknown`); got < 3 {
		t.Errorf("%d unknown replies counted, want the 3 forged:\n%s", got, out)
	}
	if got := counter(t, out, regexp.QuoteMeta(`xlb_nat_packets_total{direction="reply"}`)); got < n*3 {
		t.Errorf("%d replies translated, want at least 3 a connection:\n%s", got, out)
	}
	if !strings.Contains(out, "drop (Discard)\n  in  in                      0\n") {
		t.Errorf("xlbd dropped packets:\n%s", out)
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
