package bfd_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/plugins/announce/bgp/bfd"
)

// helperEnv, when set, makes the test binary a BFD speaker process (run in
// a lab namespace) instead of running tests: "local>remote,local>remote".
const helperEnv = "XLB_BFD_HELPER"

// fast is the interval the tests' sessions run at once Up: 100 ms × 3,
// the lab router's BIRD setting.
const fast = 100 * time.Millisecond

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(speakerProcess(spec))
	}
	os.Exit(m.Run())
}

// speakerProcess runs a Speaker with the sessions of spec until SIGTERM
// (Close, AdminDown) or SIGKILL (a node's death: silence).
func speakerProcess(spec string) int {
	// Before the first packet: a test may stop the process as soon as its
	// peer sees the session Up.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	sp := bfd.New(bfd.Options{})
	for _, pair := range strings.Split(spec, ",") {
		local, remote, _ := strings.Cut(pair, ">")
		err := sp.AddPeer(bfd.Peer{Local: netip.MustParseAddr(local), Remote: netip.MustParseAddr(remote),
			MinTx: fast, MinRx: fast, Multiplier: 3})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	go func() {
		for e := range sp.Events() {
			fmt.Printf("%s %s %s\n", e.Remote, e.State, e.Diag)
		}
	}()
	<-sig
	sp.Close()
	return 0
}

// speakerIn returns a Speaker whose sockets live in namespace ns, bound to
// its interface iface, with a session per pair of addresses, closed at the
// end of the test.
func speakerIn(t *testing.T, l *lab.Lab, ns, iface string, pairs ...[2]netip.Addr) *bfd.Speaker {
	t.Helper()
	sp := bfd.New(bfd.Options{})
	t.Cleanup(func() { sp.Close() })
	err := l.Do(ns, func() error {
		for _, p := range pairs {
			if err := sp.AddPeer(bfd.Peer{Local: p[0], Remote: p[1], Interface: iface, MinTx: fast, MinRx: fast, Multiplier: 3}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// waitState waits for every address of remotes to report state st (with
// diag d, unless d is -1), skipping other events, and returns when the
// last one did.
func waitState(t *testing.T, sp *bfd.Speaker, st bfd.State, d int, remotes ...netip.Addr) time.Time {
	t.Helper()
	left := make(map[netip.Addr]bool)
	for _, r := range remotes {
		left[r] = true
	}
	timeout := time.After(10 * time.Second)
	var last time.Time
	for len(left) > 0 {
		select {
		case e := <-sp.Events():
			if left[e.Remote] && e.State == st && (d < 0 || e.Diag == bfd.Diag(d)) {
				delete(left, e.Remote)
				last = e.Time
			}
		case <-timeout:
			t.Fatalf("%v not %s after 10 s (stats %+v)", left, st, sp.Stats())
		}
	}
	return last
}

// startSpeaker runs the test binary as a speaker process in namespace ns
// with the sessions of pairs (local, remote); the lab stops it at the end.
func startSpeaker(t *testing.T, l *lab.Lab, ns string, pairs ...[2]netip.Addr) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var spec []string
	for _, p := range pairs {
		spec = append(spec, p[0].String()+">"+p[1].String())
	}
	cmd, err := l.Start(ns, "env", helperEnv+"="+strings.Join(spec, ","), exe)
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

// Two speakers on two LB nodes of the lab come Up over IPv4 and IPv6;
// when one's process is killed the other detects the silence, it recovers
// when the process is back, and hears AdminDown when it stops.
func TestTwoSpeakers(t *testing.T) {
	testenv.RequireRoot(t)
	l := lab.New(t, lab.Topology{LBNodes: 2, IPv6: true, Backends: []string{}})
	a, b := l.LB(0), l.LB(1)
	spA := speakerIn(t, l, a.NS, a.Iface, [2]netip.Addr{a.Addr4, b.Addr4}, [2]netip.Addr{a.Addr6, b.Addr6})
	pairsB := [][2]netip.Addr{{b.Addr4, a.Addr4}, {b.Addr6, a.Addr6}}
	procB := startSpeaker(t, l, b.NS, pairsB...)
	waitState(t, spA, bfd.Up, -1, b.Addr4, b.Addr6)

	if err := procB.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	at := waitState(t, spA, bfd.Down, int(bfd.DiagDetectExpired), b.Addr4, b.Addr6)
	t.Logf("a killed peer detected after %v (100 ms × 3)", at.Sub(killed).Round(time.Millisecond))

	procB = startSpeaker(t, l, b.NS, pairsB...)
	waitState(t, spA, bfd.Up, -1, b.Addr4, b.Addr6)

	if err := procB.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitState(t, spA, bfd.Down, int(bfd.DiagNeighborDown), b.Addr4, b.Addr6)
	st := spA.Stats()
	for reason, n := range st.Dropped {
		if n != 0 {
			t.Errorf("%d packets dropped as %s", n, reason)
		}
	}
	// While b was dead its kernel answered with ICMP port unreachable;
	// that must not fail (and so swallow) later packets.
	if st.Received == 0 || st.Sent == 0 || st.SendErrors != 0 {
		t.Errorf("stats %+v: want packets both ways and no send errors", st)
	}

	err := l.Do(a.NS, func() error { return spA.AddPeer(bfd.Peer{Remote: b.Addr4}) })
	if err == nil {
		t.Error("a second session with the same peer was accepted")
	}
	if err := spA.RemovePeer(b.Addr6); err != nil {
		t.Errorf("RemovePeer: %v", err)
	}
	if err := spA.RemovePeer(b.Addr6); err == nil {
		t.Error("RemovePeer of a removed peer succeeded")
	}
	spA.Close()
	for range spA.Events() {
		// Close ends Events once the goroutines are done.
	}
	if err := spA.AddPeer(bfd.Peer{Remote: b.Addr6}); err == nil {
		t.Error("AddPeer after Close succeeded")
	}
}

// birdStates returns the state of each BFD session of the lab router's
// BIRD, by peer address.
func birdStates(t *testing.T, b *lab.Bird) map[netip.Addr]string {
	t.Helper()
	out, err := b.Cmd("show", "bfd", "sessions")
	if err != nil {
		t.Fatalf("birdc show bfd sessions: %v\n%s", err, out)
	}
	states := make(map[netip.Addr]string)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		addr, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, w := range f[1:] {
			switch w {
			case "Up", "Down", "Init", "AdminDown":
				states[addr] = w
			}
		}
	}
	return states
}

// waitBird waits until BIRD's sessions with every address of peers are in
// state want (or, with want "!Up", in any other state) and returns the
// time it first saw that.
func waitBird(t *testing.T, b *lab.Bird, want string, peers ...netip.Addr) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		states := birdStates(t, b)
		now := time.Now()
		done := true
		for _, p := range peers {
			st := states[p]
			if want == "!Up" && (st == "Up" || st == "") || want != "!Up" && st != want {
				done = false
			}
		}
		if done {
			return now
		}
		if now.After(deadline) {
			t.Fatalf("BIRD's BFD sessions with %v not %s after 10 s: %v", peers, want, states)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BIRD 2's `protocol bfd` (the lab router's, 100 ms × 3, requested by its
// BGP sessions with `bfd on`) comes Up with the speaker in an LB node over
// IPv4 and IPv6, reports it down about 300 ms after the speaker's process
// is killed, ten times, and hears AdminDown when it stops.
func TestBird(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird")
	testenv.RequireTool(t, "birdc")
	l := lab.New(t, lab.Topology{LBNodes: 1, IPv6: true, Backends: []string{}, BGP: &lab.BGP{BFD: true}})
	b, n, r := l.Bird(), l.LB(0), l.Router()
	pairs := [][2]netip.Addr{{n.Addr4, r.BridgeAddr4}, {n.Addr6, r.BridgeAddr6}}
	const trials = 10
	var ds []time.Duration
	for range trials {
		proc := startSpeaker(t, l, n.NS, pairs...)
		waitBird(t, b, "Up", n.Addr4, n.Addr6)
		// Kill at a random point of the transmit interval, not just after
		// the packet that brought the session Up.
		time.Sleep(time.Duration(200+len(ds)*37) * time.Millisecond)
		if err := proc.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		ds = append(ds, waitBird(t, b, "!Up", n.Addr4, n.Addr6).Sub(killed))
	}
	var sum time.Duration
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		sum += d
		lo, hi = min(lo, d), max(hi, d)
	}
	t.Logf("BIRD's detection of a killed speaker over %d trials: min %v, mean %v, max %v (all %v)",
		trials, lo.Round(time.Millisecond), (sum / trials).Round(time.Millisecond), hi.Round(time.Millisecond), ds)

	proc := startSpeaker(t, l, n.NS, pairs...)
	waitBird(t, b, "Up", n.Addr4, n.Addr6)
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitBird(t, b, "Down", n.Addr4, n.Addr6)
}
