package lab_test

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/client"
	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

// holdFor holds opts' connections from the client namespace for d and
// returns their state before Stop, logging the test process's CPU time
// (user+system) per second held.
func holdFor(t *testing.T, l *lab.Lab, opts client.HoldOptions, d time.Duration) client.Snapshot {
	t.Helper()
	opts.Dial = l.Dialer(l.Client().NS)
	h, err := client.Hold(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	start := time.Now()
	time.Sleep(d)
	s := h.Snapshot()
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	t.Logf("%v", s.Summary)
	t.Logf("CPU of the test process: %v in %v (%.1f%% of one core)", cpu.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond), 100*cpu.Seconds()/time.Since(start).Seconds())
	return s
}

// checkHeld: every connection alive, answered about every interval, on
// one backend, with sane stalls.
func checkHeld(t *testing.T, s client.Snapshot, d, interval time.Duration) {
	t.Helper()
	sum := s.Summary
	if sum.Alive != sum.Conns || sum.Dead != 0 || sum.Errors != 0 || sum.Moved != 0 || sum.NoAnswer != 0 {
		t.Errorf("%v (first error %s)", sum, sum.FirstError)
	}
	// Requests every interval, at a random phase: at least half of the
	// ideal count even on a loaded machine.
	want := uint64(d/interval) / 2
	for _, c := range s.Conns {
		if c.Answers < want || c.Requests-c.Answers > 1 || c.MaxStall < interval/2 || c.MaxStall > 5*time.Second {
			t.Errorf("%s -> %s: %+v; want at least %d answers", c.Local, c.Target, c, want)
		}
	}
}

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
	const d, interval = 2 * time.Second, 100 * time.Millisecond
	s := holdFor(t, l, client.HoldOptions{Conns: 300, Targets: targets, Interval: interval}, d)
	checkHeld(t, s, d, interval)
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
	const d, interval = 2 * time.Second, 100 * time.Millisecond
	targets := []netip.AddrPort{netip.AddrPortFrom(l.VIP(), 80), netip.AddrPortFrom(l.VIP6(), 80)}
	s := holdFor(t, l, client.HoldOptions{Conns: 300, Targets: targets, Interval: interval}, d)
	checkHeld(t, s, d, interval)
	if len(s.Summary.Backends) != 3 {
		t.Errorf("connections per backend %v, want all three", s.Summary.Backends)
	}
}

// TestHoldBGPFailover rehearses the cluster's first test with stand-ins:
// two LB nodes, each a fake LB (hashing flows alike) announcing the VIPs
// with a node BIRD; 300 held connections through the router's ECMP route.
// One node dies (its LB stops forwarding and its BIRD freezes, so nothing
// tells the router): its flows black-hole until the hold time expires and
// BIRD moves them to the survivor, where every connection carries on with
// its backend, having stalled for about the hold time plus TCP's
// retransmission backoff. The flows of the survivor never stall: the
// client's retransmissions do not wander to another next hop (the lab sets
// net.core.txrehash=0 in the client).
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
	startFakeLBOn(t, l, lb1, true)
	f2 := startFakeLBOn(t, l, lb2, true)
	both4, both6 := hopsOf(lb1, lb2)
	waitHops(t, bird, vip4, both4)
	waitHops(t, bird, vip6, both6)

	const interval = 100 * time.Millisecond
	targets := []netip.AddrPort{netip.AddrPortFrom(l.VIP(), 80), netip.AddrPortFrom(l.VIP6(), 80)}
	h, err := client.Hold(client.HoldOptions{Conns: 300, Targets: targets, Interval: interval, Dial: l.Dialer(l.Client().NS)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	time.Sleep(time.Second)
	before := h.Snapshot()
	if before.Summary.Alive != 300 || before.Summary.NoAnswer != 0 {
		t.Fatalf("before: %v", before.Summary)
	}
	w := bird.Watch(vip4, vip6)
	defer w.Close()
	if err := n2.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer n2.cmd.Process.Kill()
	f2.stop()
	died := time.Now()
	one4, one6 := hopsOf(lb1)
	waitHops(t, bird, vip4, one4)
	waitHops(t, bird, vip6, one6)
	t.Logf("router moved lb2's flows %v after it died", time.Since(died).Round(time.Millisecond))
	// The stalled connections recover at their next retransmission,
	// backing off from 200 ms (sent 0.2, 0.6, 1.4, 3.0, 6.2 s after the
	// first loss): up to about twice the outage later.
	moved := h.Snapshot()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := h.Snapshot()
		recovered := 0
		for i, c := range s.Conns {
			if c.Answers >= moved.Conns[i].Answers+3 {
				recovered++
			}
		}
		if recovered == len(s.Conns) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections answered 3 times since the route moved: %v", recovered, len(s.Conns), s.Summary)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s := h.Stop()
	t.Logf("%v", s.Summary)
	for _, c := range w.Changes() {
		t.Logf("route change at +%v: %s via %v", c.Time.Sub(died).Round(time.Millisecond), c.Prefix, c.NextHops)
	}
	if s.Summary.Alive != 300 || s.Summary.Moved != 0 || s.Summary.Errors != 0 {
		t.Errorf("after a node died: %v (first error %s)", s.Summary, s.Summary.FirstError)
	}
	// When each family's route lost lb2.
	outage := map[bool]time.Duration{}
	for _, c := range w.Changes() {
		if c.Time.After(died) && len(c.NextHops) == 1 {
			outage[c.Prefix.Addr().Is4()] = c.Time.Sub(died)
		}
	}
	stalled := 0
	for i, c := range s.Conns {
		// lb2's connections cannot recover before their route moved;
		// the others do not stall.
		if out := outage[c.Target.Addr().Is4()]; c.MaxStall > time.Second && c.MaxStall < out-100*time.Millisecond {
			t.Errorf("%s -> %s recovered after %v, before its route moved (%v): its flow changed next hop by itself",
				c.Local, c.Target, c.MaxStall.Round(time.Millisecond), out.Round(time.Millisecond))
		}
		if c.Backend() != before.Conns[i].Backend() {
			t.Errorf("%s: backend %q, was %q", c.Local, c.Backend(), before.Conns[i].Backend())
		}
		if c.MaxStall > time.Second {
			stalled++
		}
	}
	// ECMP put some connections on lb2: they stalled; the others did not.
	if stalled == 0 || stalled == 300 {
		t.Errorf("%d of 300 connections stalled over 1 s, want those lb2 carried", stalled)
	}
	t.Logf("%d connections stalled over 1 s (lb2's), the longest %v", stalled, s.Summary.MaxStall.Round(time.Millisecond))
}
