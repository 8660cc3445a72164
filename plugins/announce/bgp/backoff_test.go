package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
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
