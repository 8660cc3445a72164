package e2e_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

// kernelBackends makes the lab's backends kernel ones: each serves HTTP
// with the kernel's TCP on port 80 of every address of both families, its own included for
// the health checks, answering with its name in X-Backend as xlb-backend
// does, or ?bytes=N zero bytes. With vipOnLo, as LVS/DR wants them, each also holds the VIP on
// loopback (the lab sets arp_ignore=1 and arp_announce=2 on backends, so
// none answers ARP for it). The listeners are made in the backends'
// namespaces and served from this process until the test ends.
func kernelBackends(t *testing.T, l *lab.Lab, vipOnLo bool) {
	t.Helper()
	for _, b := range l.Backends() {
		h, err := l.Handle(b.NS)
		if err != nil {
			t.Fatal(err)
		}
		lo, err := h.LinkByName("lo")
		if err == nil && vipOnLo {
			err = h.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: l.VIP().AsSlice(), Mask: net.CIDRMask(32, 32)}})
		}
		h.Close()
		if err != nil {
			t.Fatalf("%s: the VIP on loopback: %v", b.Name, err)
		}
		var ln net.Listener
		if err := l.Do(b.NS, func() (err error) { ln, err = net.Listen("tcp", ":80"); return }); err != nil {
			t.Fatal(err)
		}
		name := b.Name
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			if n, err := strconv.Atoi(r.URL.Query().Get("bytes")); err == nil && n > 0 {
				// A download (TestFullNATPathMTU): full-size segments.
				_, _ = w.Write(make([]byte, n))
				return
			}
			fmt.Fprintf(w, "%s\n", name)
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
	}
}

// TestDirectRoute: the lab's file with GREEncap's type word changed to
// DirectRoute, and kernel backends on the LB's segment holding the VIP on
// loopback. Real HTTP over new connections from the client reaches every
// backend in proportion to its weight, unencapsulated (the backends have
// no decapsulation of any kind); every reply goes
// from the backend to the client directly, never through the LB; nothing
// is dropped.
func TestDirectRoute(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{Backends: []string{"be1", "be2", "be3"}})
	kernelBackends(t, l, true)
	x, err := l.StartXLBD(l.LB(0), b["xlbd"], labConfig(t, "DirectRoute"), "-var", "interface="+l.LB(0).Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Stop()
	url := "http://" + l.VIP().String() + "/"
	// The health checks bring the backends up within a second or two.
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := l.RunClient(b["xlb-client"], "-url", url, "-n", "30", "-c", "3")
		if err == nil && s.OK == 30 && len(s.Backends) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backend answers through DirectRoute: %+v %v\n%s", s, err, x.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopWatch := watchReplies(t, l)
	const n = 600
	s, err := l.RunClient(b["xlb-client"], "-url", url, "-n", strconv.Itoa(n), "-c", "8")
	if err != nil {
		t.Fatalf("%v (%+v)", err, s)
	}
	if s.OK != n || s.SourcePorts < n*9/10 {
		t.Fatalf("%+v, want %d ok from about as many source ports", s, n)
	}
	checkShares(t, url, s, 4)
	if replies := stopWatch(); replies != 0 {
		t.Errorf("the LB node received %d packets from the VIP: replies must go from the backends to the client directly", replies)
	}
	out, err := x.Stop()
	if err != nil {
		t.Fatalf("xlbd: %v\n%s", err, x.Log())
	}
	for _, want := range []string{"drop (Discard)\n  in  in                      0\n", "xlb_dr_packets_total"} {
		if !strings.Contains(out, want) {
			t.Errorf("xlbd's counters lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "xlb_encap_packets_total") {
		t.Error(errors.New("an encapsulation element ran: the file should differ from the GRE one by DirectRoute only"))
	}
}
