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
