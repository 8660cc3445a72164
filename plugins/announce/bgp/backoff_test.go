package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/xlbproject/xlb/plugins/sdk"
)

func noJitter(time.Duration) time.Duration { return 0 }

func fullJitter(n time.Duration) time.Duration { return n - 1 }

// TestBackoffSchedule: a failing session's waits start at connect_retry
// and double up to connect_retry_max; jitter adds at most a quarter;
// reports of a failure already being waited out do not count; a session
// established for stableAfter starts over, a shorter one does not.
func TestBackoffSchedule(t *testing.T) {
	b := newBackoff(neighbor{ConnectRetry: 5 * time.Second, ConnectRetryMax: time.Minute})
	now := time.Unix(1e9, 0)
	var got []time.Duration
	for range 7 {
		d, start := b.fail(now, noJitter)
		if !start {
			t.Fatalf("failure %d did not start a wait", len(got))
		}
		if d2, again := b.fail(now, noJitter); again || d2 != d {
			t.Fatalf("a second report of failure %d: wait %v, new %v; want %v, false", len(got), d2, again, d)
		}
		got = append(got, d)
		b.waiting = false // the wait is over: the next attempt fails
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute, time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	for i, w := range want {
		if d := b.next(i, fullJitter); d < w || d >= w+w/4 {
			t.Errorf("wait %d with jitter %v, want in [%v, %v)", i, d, w, w+w/4)
		}
	}

	// Up for less than stableAfter: the flap keeps the wait at the cap.
	b.up(now)
	d, _ := b.fail(now.Add(stableAfter-time.Second), noJitter)
	if d != time.Minute {
		t.Errorf("after a session up %v, wait %v, want %v", stableAfter-time.Second, d, time.Minute)
	}
	b.waiting = false
	b.up(now)
	if d, _ := b.fail(now.Add(stableAfter), noJitter); d != 5*time.Second {
		t.Errorf("after a session up %v, wait %v, want %v", stableAfter, d, 5*time.Second)
	}

	// The cap is reached without overflowing, whatever the count.
	b = newBackoff(neighbor{ConnectRetry: time.Hour, ConnectRetryMax: time.Hour})
	if d := b.next(1000, noJitter); d != time.Hour {
		t.Errorf("wait after 1000 failures %v, want 1h", d)
	}
}

// TestFailedLogsRetry: a neighbor's failure is logged once with the wait
// before its next attempt, and starts one wait however many of gobgp's
// messages report it.
func TestFailedLogsRetry(t *testing.T) {
	var out logLines
	s := newSpeaker(hclog.New(&hclog.LoggerOptions{Output: &out}))
	s.setBackoff(neighbor{Address: netip.MustParseAddr("10.0.0.1"), ConnectRetry: 2 * time.Second, ConnectRetryMax: time.Minute})
	t.Cleanup(func() { s.dropBackoff(netip.MustParseAddr("10.0.0.1")) })
	g := &gobgpLog{log: hclog.NewNullLogger(), failed: s.failed}
	g.Warn("sent notification", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.1", "Code": uint8(2), "Subcode": uint8(2)})
	g.Info("Peer Down", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.1", "Reason": "notification-sent code 2"})
	lines := out.get()
	if len(lines) != 2 || !strings.Contains(lines[0], "bad peer as") || !strings.Contains(lines[0], "retry_in=2") || !strings.Contains(lines[1], "retry_in=2") {
		t.Errorf("logged\n\t%s\nwant both reasons with retry_in=2s to 2.5s", strings.Join(lines, "\n\t"))
	}
	s.bmu.Lock()
	fails := s.backoffs[netip.MustParseAddr("10.0.0.1")].fails
	s.bmu.Unlock()
	if fails != 1 {
		t.Errorf("%d failures counted, want 1", fails)
	}
}

// TestBackoffPausesPeer: against a gobgp router on loopback, a neighbor
// whose OPEN carries the wrong AS is taken out of its gobgp server after
// each failure and added again after its wait, three times, while the
// other neighbor's session stays up and SetRoutes reaches it; fixed by a
// reload, the neighbor connects.
func TestBackoffPausesPeer(t *testing.T) {
	r := newRouter(t)
	wrong := strings.Replace(settingsFor(r, "3s", ""), `"address": "::1", "peer_as": 65000`, `"address": "::1", "peer_as": 65099, "connect_retry_max": "2s"`, 1)
	s := newSpeaker(hclog.NewNullLogger())
	t.Cleanup(func() { s.Stop(context.Background()) })
	if err := s.Configure([]byte(wrong)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.SetRoutes(ctx, []sdk.Route{{Prefix: netip.MustParsePrefix("192.0.2.10/32")}}); err != nil {
		t.Fatal(err)
	}
	six := netip.MustParseAddr("::1")
	inGobgp := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		found := false
		s.groups[six.String()].srv.ListPeer(ctx, &api.ListPeerRequest{Address: six.String()}, func(*api.Peer) { found = true })
		return found
	}
	fails := func() int {
		s.bmu.Lock()
		defer s.bmu.Unlock()
		return s.backoffs[six].fails
	}
	for i := 1; i <= 3; i++ {
		waitFor(t, fmt.Sprintf("failure %d to take ::1 out of gobgp", i), func() bool { return fails() >= i && !inGobgp() })
		waitFor(t, fmt.Sprintf("::1 back in gobgp after wait %d", i), inGobgp)
	}
	r.waitRoutes(t, "192.0.2.10/32 nh=127.0.0.1 as=[65001] comm=[] large=[] med=-")
	if err := s.SetRoutes(ctx, []sdk.Route{{Prefix: netip.MustParsePrefix("192.0.2.11/32")}}); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t, "192.0.2.11/32 nh=127.0.0.1 as=[65001] comm=[] large=[] med=-")
	if ev := r.peerEvents(); !slices.Equal(ev, []string{"127.0.0.1 up"}) {
		t.Errorf("router's session events %v, want only 127.0.0.1 up", ev)
	}
	if err := s.Configure([]byte(settingsFor(r, "3s", ""))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the fixed neighbor's session", func() bool { return slices.Contains(r.peerEvents(), "::1 up") })
}

// TestOpenFailed: a session that fails while opening, but not by a
// NOTIFICATION (reported on its own) or by our own doing, is a failure.
func TestOpenFailed(t *testing.T) {
	for _, tc := range []struct {
		old, new, reason string
		want             string
	}{
		{"BGP_FSM_OPENSENT", "BGP_FSM_IDLE", "read-failed", "opening the session: read-failed"},
		{"BGP_FSM_OPENSENT", "BGP_FSM_IDLE", "invalid-msg", "opening the session: invalid-msg (the neighbor's OPEN or first message refused: check peer_as)"},
		{"BGP_FSM_OPENCONFIRM", "BGP_FSM_IDLE", "hold-timer-expired", "opening the session: hold-timer-expired"},
		{"BGP_FSM_OPENSENT", "BGP_FSM_IDLE", "notification-sent code 2(open) subcode 2(bad peer as)", ""},
		{"BGP_FSM_OPENSENT", "BGP_FSM_IDLE", "dying", ""},
		{"BGP_FSM_ESTABLISHED", "BGP_FSM_IDLE", "read-failed", ""}, // "Peer Down"
		{"BGP_FSM_ACTIVE", "BGP_FSM_OPENSENT", "new-connection", ""},
	} {
		got, ok := openFailed(gobgplog.Fields{"Key": "10.0.0.1", "old": tc.old, "new": tc.new, "reason": tc.reason})
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s to %s (%s): %q, %v; want %q", tc.old, tc.new, tc.reason, got, ok, tc.want)
		}
	}
}
