package lab

import (
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/client"
)

// Hold opens opts' connections from the client namespace and waits until
// each has answered n times (a minute at most: the machine may be
// loaded). It returns the Held and its state then, logging the test
// process's CPU time (user+system) while it waited.
func Hold(t testing.TB, l *Lab, opts client.HoldOptions, n uint64) (*client.Held, client.Snapshot) {
	t.Helper()
	opts.Dial = l.Dialer(l.Client().NS)
	h, err := client.Hold(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	start := time.Now()
	s := WaitAnswers(t, h, client.Snapshot{}, n)
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
	t.Logf("%v", s.Summary)
	t.Logf("CPU of the test process: %v in %v (%.1f%% of one core)", cpu.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond), 100*cpu.Seconds()/time.Since(start).Seconds())
	return h, s
}

// WaitAnswers waits until every connection has answered n times more than
// in since (the zero Snapshot: n in all), a minute at most, and returns
// the state then.
func WaitAnswers(t testing.TB, h *client.Held, since client.Snapshot, n uint64) client.Snapshot {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s := h.Snapshot()
		done := 0
		for i, c := range s.Conns {
			var base uint64
			if since.Conns != nil {
				base = since.Conns[i].Answers
			}
			if c.Answers >= base+n {
				done++
			}
		}
		if done == len(s.Conns) {
			return s
		}
		if s.Summary.Dead > 0 || time.Now().After(deadline) {
			t.Fatalf("%d of %d connections answered %d times: %v (first error %s)", done, len(s.Conns), n, s.Summary, s.Summary.FirstError)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CheckHeld checks every connection alive, without errors, on one backend. A
// stall is at least half the interval once a connection answered twice
// (from a request to its answer, or between answers).
func CheckHeld(t testing.TB, s client.Snapshot, interval time.Duration) {
	t.Helper()
	sum := s.Summary
	if sum.Alive != sum.Conns || sum.Dead != 0 || sum.Errors != 0 || sum.Moved != 0 || sum.NoAnswer != 0 {
		t.Errorf("%v (first error %s)", sum, sum.FirstError)
	}
	for _, c := range s.Conns {
		if c.Requests-c.Answers > 1 || c.MaxStall < interval/2 {
			t.Errorf("%s -> %s: %+v", c.Local, c.Target, c)
		}
	}
}
