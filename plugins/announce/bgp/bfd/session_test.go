package bfd

import (
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testPeer() Peer {
	p, err := Peer{Remote: netip.MustParseAddr("192.0.2.1"), MinTx: 50 * time.Millisecond,
		MinRx: 40 * time.Millisecond, Multiplier: 3}.check()
	if err != nil {
		panic(err)
	}
	return p
}

// from returns a valid packet from the peer in state st.
func from(st State) *ctrl {
	c := &ctrl{State: st, DetectMult: 3, MyDiscr: 77, YourDiscr: 1,
		DesiredMinTx: 30000, RequiredMinRx: 20000}
	if st == Down || st == AdminDown {
		c.YourDiscr = 0
	}
	return c
}

// The reception table of RFC 5880 section 6.8.6 (or 6.2's diagram).
func TestStateMachine(t *testing.T) {
	for _, tc := range []struct {
		local, remote State
		want          State
		diag          Diag
	}{
		{AdminDown, AdminDown, AdminDown, DiagAdminDown},
		{AdminDown, Down, AdminDown, DiagAdminDown},
		{AdminDown, Init, AdminDown, DiagAdminDown},
		{AdminDown, Up, AdminDown, DiagAdminDown},
		{Down, AdminDown, Down, DiagDetectExpired},
		{Down, Down, Init, DiagNone},
		{Down, Init, Up, DiagNone},
		{Down, Up, Down, DiagDetectExpired},
		{Init, AdminDown, Down, DiagNeighborDown},
		{Init, Down, Init, DiagNone},
		{Init, Init, Up, DiagNone},
		{Init, Up, Up, DiagNone},
		{Up, AdminDown, Down, DiagNeighborDown},
		{Up, Down, Down, DiagNeighborDown},
		{Up, Init, Up, DiagNone},
		{Up, Up, Up, DiagNone},
	} {
		s := newSession(testPeer(), 1, t0)
		s.state = tc.local
		switch tc.local {
		case AdminDown:
			s.localDiag = DiagAdminDown
		case Down:
			// A Down session remembers why it went down.
			s.localDiag = DiagDetectExpired
		}
		changed := s.receive(from(tc.remote), t0)
		if s.state != tc.want || s.localDiag != tc.diag || changed != (tc.local != tc.want) {
			t.Errorf("%s receives %s: %s (%s), changed %v; want %s (%s)",
				tc.local, tc.remote, s.state, s.localDiag, changed, tc.want, tc.diag)
		}
	}
}

func TestIntervals(t *testing.T) {
	s := newSession(testPeer(), 1, t0)
	// Until Up, at most one packet a second (section 6.8.3) whatever the
	// configured MinTx.
	if got := s.txInterval(); got != time.Second {
		t.Fatalf("Down: tx interval %v, want 1s", got)
	}
	var c ctrl
	s.fill(&c, false)
	if c.DesiredMinTx != 1000000 || c.RequiredMinRx != 40000 || c.Poll {
		t.Fatalf("Down: sends %+v", c)
	}
	s.receive(from(Init), t0)
	if s.state != Up || !s.polling {
		t.Fatalf("after Init: %s, polling %v; want Up and polling", s.state, s.polling)
	}
	// Up: the slower of my desired TX (50 ms) and the peer's required RX
	// (20 ms); the Poll announces the change.
	if got := s.txInterval(); got != 50*time.Millisecond {
		t.Fatalf("Up: tx interval %v, want 50ms", got)
	}
	s.fill(&c, false)
	if c.DesiredMinTx != 50000 || !c.Poll || c.Final {
		t.Fatalf("Up: sends %+v, want desired 50000 with P", c)
	}
	// The peer asks for slower packets: its required RX wins.
	slow := from(Up)
	slow.RequiredMinRx = 200000
	s.receive(slow, t0)
	if got := s.txInterval(); got != 200*time.Millisecond {
		t.Fatalf("peer RX 200ms: tx interval %v, want 200ms", got)
	}
	// Detection: the peer's multiplier times the slower of my required RX
	// (40 ms) and its desired TX (30 ms).
	if got := s.detectTime(); got != 120*time.Millisecond {
		t.Fatalf("detect time %v, want 120ms", got)
	}
	fin := from(Up)
	fin.Final = true
	s.receive(fin, t0)
	if s.polling {
		t.Fatal("Final did not end the Poll sequence")
	}
	s.fill(&c, false)
	if c.Poll {
		t.Fatal("P still set after the Poll sequence ended")
	}
	// Back to Down: slow again, and no Poll is owed outside Up.
	s.receive(from(Down), t0)
	if s.state != Down || s.txInterval() != time.Second || s.polling {
		t.Fatalf("after peer Down: %s, tx %v, polling %v", s.state, s.txInterval(), s.polling)
	}
}

func TestPollFinal(t *testing.T) {
	s := newSession(testPeer(), 1, t0)
	s.receive(from(Init), t0) // Up, own Poll outstanding
	s.sent(true, t0)
	poll := from(Up)
	poll.Poll = true
	now := t0.Add(time.Millisecond)
	s.receive(poll, now)
	_, periodic, final, _ := s.due(now)
	if periodic || !final {
		t.Fatalf("after a Poll: periodic %v final %v, want an immediate Final", periodic, final)
	}
	var c ctrl
	s.fill(&c, true)
	if !c.Final || c.Poll {
		t.Fatalf("reply %+v: want F without P", c)
	}
	s.sent(false, now)
	// A flood of Polls gets one reply per finalGap.
	s.receive(poll, now.Add(time.Millisecond))
	if _, _, final, next := s.due(now.Add(time.Millisecond)); final || !next.Equal(now.Add(finalGap)) {
		t.Fatalf("second Poll within %v: final %v next %v; want deferred to %v", finalGap, final, next, now.Add(finalGap))
	}
	if _, _, final, _ := s.due(now.Add(finalGap)); !final {
		t.Fatal("deferred Final not due after finalGap")
	}
}

func TestDetectionExpires(t *testing.T) {
	s := newSession(testPeer(), 1, t0)
	s.receive(from(Init), t0)
	if exp, _, _, next := s.due(t0); exp || next.After(t0.Add(120*time.Millisecond)) {
		t.Fatalf("just received: expire %v, next %v", exp, next)
	}
	at := t0.Add(120 * time.Millisecond)
	exp, _, _, _ := s.due(at)
	if !exp {
		t.Fatal("detection time passed but not expired")
	}
	if !s.expire(at) || s.state != Down || s.localDiag != DiagDetectExpired || s.remoteDiscr != 0 {
		t.Fatalf("expired: %s (%s), remote discriminator %d", s.state, s.localDiag, s.remoteDiscr)
	}
	// The new state is sent at once, then once a second.
	if _, periodic, _, _ := s.due(at); !periodic {
		t.Fatal("state change not sent at once")
	}
}

func TestQuietPeer(t *testing.T) {
	s := newSession(testPeer(), 1, t0)
	c := from(Down)
	c.RequiredMinRx = 0
	s.receive(c, t0)
	if _, periodic, _, _ := s.due(t0.Add(time.Minute)); periodic {
		t.Fatal("sent to a peer whose required min RX is 0")
	}
}

func TestJitter(t *testing.T) {
	for _, tc := range []struct {
		mult   uint8
		lo, hi time.Duration
	}{{3, 750 * time.Millisecond, time.Second}, {1, 750 * time.Millisecond, 900 * time.Millisecond}} {
		p := testPeer()
		p.Multiplier = tc.mult
		s := newSession(p, 1, t0)
		for range 1000 {
			if d := s.jitter(time.Second); d < tc.lo || d > tc.hi {
				t.Fatalf("multiplier %d: jittered 1s to %v, want [%v, %v]", tc.mult, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestPeerCheck(t *testing.T) {
	ll := netip.MustParseAddr("fe80::1")
	for _, tc := range []struct {
		name string
		p    Peer
		ok   bool
	}{
		{"defaults", Peer{Remote: netip.MustParseAddr("192.0.2.1")}, true},
		{"no remote", Peer{}, false},
		{"multicast", Peer{Remote: netip.MustParseAddr("224.0.0.1")}, false},
		{"families differ", Peer{Remote: netip.MustParseAddr("192.0.2.1"), Local: netip.MustParseAddr("2001:db8::1")}, false},
		{"link-local without interface", Peer{Remote: ll}, false},
		{"link-local with interface", Peer{Remote: ll, Interface: "eth0"}, true},
		{"interval too short", Peer{Remote: ll, Interface: "eth0", MinTx: time.Microsecond}, false},
	} {
		p, err := tc.p.check()
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok %v", tc.name, err, tc.ok)
		}
		if err == nil && (p.MinTx == 0 || p.MinRx == 0 || p.Multiplier == 0) {
			t.Errorf("%s: defaults not filled: %+v", tc.name, p)
		}
	}
}
