package lab_test

import (
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/client"
	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

// TestHoldBackends: 300 held connections straight to the backends' own
// addresses (no LB), IPv4 and IPv6: each answers from the backend it
// connects to.
func TestHoldBackends(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{IPv6: true})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	var targets []netip.AddrPort
	name := map[netip.Addr]string{}
	for _, be := range l.Backends() {
		for _, a := range []netip.Addr{be.Addr4, be.Addr6} {
			targets = append(targets, netip.AddrPortFrom(a, 80))
			name[a] = be.Name
		}
	}
	const interval = 100 * time.Millisecond
	_, s := lab.Hold(t, l, client.HoldOptions{Conns: 300, Targets: targets, Interval: interval}, 10)
	lab.CheckHeld(t, s, interval)
	for _, c := range s.Conns {
		if c.Backend() != name[c.Target.Addr()] {
			t.Errorf("%s -> %s answered by %q", c.Local, c.Target, c.Backend())
		}
	}
	for _, be := range l.Backends() {
		if n := s.Summary.Backends[be.Name]; n != 100 {
			t.Errorf("%s holds %d connections, want 100", be.Name, n)
		}
	}
}

// TestHoldThroughFakeLB: 300 held connections through the VIPs (IPv4 and
// IPv6) and the test's stand-in LB: every connection stays on one backend,
// and all three backends hold some.
func TestHoldThroughFakeLB(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{IPv6: true})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	startFakeLB(t, l, true)
	const interval = 100 * time.Millisecond
	targets := []netip.AddrPort{netip.AddrPortFrom(l.VIP(), 80), netip.AddrPortFrom(l.VIP6(), 80)}
	_, s := lab.Hold(t, l, client.HoldOptions{Conns: 300, Targets: targets, Interval: interval}, 10)
	lab.CheckHeld(t, s, interval)
	if len(s.Summary.Backends) != 3 {
		t.Errorf("connections per backend %v, want all three", s.Summary.Backends)
	}
}

// TestHoldBGPFailover rehearses the cluster's first test with stand-ins:
// two LB nodes, each a fake LB (hashing flows alike) announcing the VIPs
// with a node BIRD; 300 held connections through the router's ECMP route.
//
// First lb2's LB stops forwarding while its BIRD still announces: its
// flows black-hole and must stay on lb2, retransmitting, however many
// retransmission timeouts pass (they wandered to lb1 before the lab set
// net.core.txrehash=0 in the client, a flow's next hop being the client
// socket's hash, which TCP redraws on a timeout by default). Then lb2's
// BIRD freezes too, so the router removes lb2 when the hold time expires:
// every connection carries on, on its backend, through lb1.
func TestHoldBGPFailover(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird")
	testenv.RequireTool(t, "birdc")
	b := binaries(t)
	l := lab.New(t, lab.Topology{LBNodes: 2, IPv6: true, BGP: &lab.BGP{}})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	lb1, lb2 := l.LB(0), l.LB(1)
	bird := l.Bird()
	startNodeBird(t, l, lb1, nodeBirdOpts{})
	n2 := startNodeBird(t, l, lb2, nodeBirdOpts{})
	f1 := startFakeLBOn(t, l, lb1, true)
	f2 := startFakeLBOn(t, l, lb2, true)
	both4, both6 := hopsOf(lb1, lb2)
	waitHops(t, bird, vip4, both4)
	waitHops(t, bird, vip6, both6)

	const interval = 100 * time.Millisecond
	targets := []netip.AddrPort{netip.AddrPortFrom(l.VIP(), 80), netip.AddrPortFrom(l.VIP6(), 80)}
	h, before := lab.Hold(t, l, client.HoldOptions{Conns: 300, Targets: targets, Interval: interval}, 3)
	lab.CheckHeld(t, before, interval)
	on1, on2 := f1.flows(), f2.flows()
	if len(on1) == 0 || len(on2) == 0 || len(on1)+len(on2) != 300 {
		t.Fatalf("flows at lb1 %d, at lb2 %d: want 300, some on each", len(on1), len(on2))
	}

	f2.stop()
	// Three retransmission timeouts (0.2, 0.6, 1.4 s after the loss):
	// with the hash redrawn at each, 7 of 8 flows would have left.
	time.Sleep(2 * time.Second)
	if hops, err := bird.NextHops(vip4); err != nil || !slices.Equal(hops, both4) {
		t.Fatalf("route changed while lb2's BIRD ran: %v %v", hops, err)
	}
	wandered := 0
	for f := range f1.flows() {
		if on2[f] {
			wandered++
		}
	}
	if wandered > 0 {
		t.Errorf("%d of lb2's %d flows reached lb1 while the route still held lb2", wandered, len(on2))
	}

	w := bird.Watch(vip4, vip6)
	defer w.Close()
	if err := n2.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer n2.cmd.Process.Kill()
	frozen := time.Now()
	one4, one6 := hopsOf(lb1)
	waitHops(t, bird, vip4, one4)
	waitHops(t, bird, vip6, one6)
	t.Logf("router removed lb2 %v after its BIRD froze", time.Since(frozen).Round(time.Millisecond))
	// The stalled connections recover at their next retransmission.
	lab.WaitAnswers(t, h, h.Snapshot(), 3)
	s := h.Stop()
	t.Logf("%v", s.Summary)
	for _, c := range w.Changes() {
		t.Logf("route change at +%v: %s via %v", c.Time.Sub(frozen).Round(time.Millisecond), c.Prefix, c.NextHops)
	}
	if s.Summary.Alive != 300 || s.Summary.Moved != 0 || s.Summary.Errors != 0 {
		t.Errorf("after a node died: %v (first error %s)", s.Summary, s.Summary.FirstError)
	}
	for i, c := range s.Conns {
		if c.Backend() != before.Conns[i].Backend() {
			t.Errorf("%s: backend %q, was %q", c.Local, c.Backend(), before.Conns[i].Backend())
		}
	}
	if got := len(f1.flows()); got != 300 {
		t.Errorf("lb1 carried %d flows, want all 300", got)
	}
}
