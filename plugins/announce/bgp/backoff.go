package main

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// stableAfter is how long a session must stay established for its next
// failure to count as the first again. A session that a router accepts and
// then drops (a NOTIFICATION after our OPEN or UPDATEs, a hold timer that
// expires on a lossy path) flaps within seconds; resetting the backoff at
// once would retry it every connect_retry forever.
const stableAfter = 30 * time.Second

// backoff is one neighbor's retry schedule while its session keeps
// failing.
//
// gobgp retries at a pace of its own: every connect_retry to a neighbor
// that does not answer, and after 5 s of idle hold (a constant, whatever
// the settings) after a session that failed. So a failing neighbor is
// removed from its gobgp server as soon as it fails and added again when
// its delay has passed; a new peer starts connecting at once (gobgp waits
// 1 to 2 s before its first dial), as at start-up.
type backoff struct {
	first, max time.Duration
	fails      int           // failures since the session was last stable
	upSince    time.Time     // when the session came up; zero while down
	delay      time.Duration // the current wait, while waiting
	waiting    bool          // a failure is being waited out
	removed    bool          // the peer is out of gobgp (only with speaker.mu)
	done       chan struct{} // closed when the neighbor goes away
}

func newBackoff(n neighbor) *backoff {
	return &backoff{first: n.ConnectRetry, max: n.ConnectRetryMax, done: make(chan struct{})}
}

// next is the wait after the failures-th failure in a row (0 the first):
// connect_retry doubled each time up to connect_retry_max, plus up to a
// quarter more drawn by jitter(n) in [0, n), so that neighbors failing
// together do not retry in step.
func (b *backoff) next(failures int, jitter func(time.Duration) time.Duration) time.Duration {
	d := b.first
	for i := 0; i < failures && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	return d + jitter(d/4)
}

// fail records a failure at now, and returns the wait before the next
// attempt and whether this failure starts it (false: another report of a
// failure already being waited out).
func (b *backoff) fail(now time.Time, jitter func(time.Duration) time.Duration) (time.Duration, bool) {
	if b.waiting {
		return b.delay, false
	}
	if !b.upSince.IsZero() && now.Sub(b.upSince) >= stableAfter {
		b.fails = 0
	}
	b.upSince = time.Time{}
	b.delay = b.next(b.fails, jitter)
	b.fails++
	b.waiting = true
	return b.delay, true
}

// up records that the session was established at now.
func (b *backoff) up(now time.Time) { b.upSince = now }

// stop ends the neighbor's wait for good (it was removed or changed).
func (b *backoff) stop() { close(b.done) }

func randJitter(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return rand.N(n)
}

// failed is gobgp's report (through its log) that the session with addr
// failed or could not be made: the failure is logged with the wait before
// the next attempt, which starts the wait if it is a new failure.
func (s *speaker) failed(addr, reason string) {
	a, err := netip.ParseAddr(addr)
	var b *backoff
	var d time.Duration
	start := false
	if err == nil {
		s.bmu.Lock()
		if b = s.backoffs[a.Unmap()]; b != nil {
			d, start = b.fail(time.Now(), randJitter)
		}
		s.bmu.Unlock()
	}
	s.peers.failure(addr, reason, d)
	if start {
		go s.wait(a.Unmap(), b, d)
	}
}

// wait takes the neighbor at a out of gobgp for d, then adds it again.
// It runs on its own: gobgp reports failures from its session goroutines,
// which a DeletePeer would wait for.
func (s *speaker) wait(a netip.Addr, b *backoff, d time.Duration) {
	start := time.Now()
	s.withPeer(a, b, func(g *group, _ peerConf) {
		if err := g.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: a.String()}); err != nil {
			s.log.Warn("neighbor: pausing the failed session", "peer", a, "error", err)
			return
		}
		b.removed = true
	})
	t := time.NewTimer(d - time.Since(start))
	defer t.Stop()
	select {
	case <-b.done:
		return
	case <-t.C:
	}
	s.withPeer(a, b, func(g *group, pc peerConf) {
		s.bmu.Lock()
		b.waiting = false
		s.bmu.Unlock()
		if !b.removed {
			return
		}
		if err := g.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: s.peer(pc.neighbor)}); err != nil {
			s.log.Error("neighbor: adding it again after its backoff", "peer", a, "error", err)
			return
		}
		b.removed = false
	})
}

// withPeer runs f with speaker.mu held on the group and configuration of
// the neighbor at a, unless b is no longer its backoff (the neighbor was
// removed or changed meanwhile).
func (s *speaker) withPeer(a netip.Addr, b *backoff, f func(*group, peerConf)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bmu.Lock()
	cur := s.backoffs[a] == b
	s.bmu.Unlock()
	if !cur {
		return
	}
	for _, g := range s.groups {
		if pc, ok := g.peers[a]; ok {
			f(g, pc)
			return
		}
	}
}

// setBackoff starts the schedule of neighbor n, new in gobgp.
func (s *speaker) setBackoff(n neighbor) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if b := s.backoffs[n.Address]; b != nil {
		b.stop()
	}
	s.backoffs[n.Address] = newBackoff(n)
}

// dropBackoff ends the schedule of the neighbor at a (removed), and
// reports whether the neighbor was out of gobgp, waiting.
func (s *speaker) dropBackoff(a netip.Addr) (removed bool) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	b := s.backoffs[a]
	if b == nil {
		return false
	}
	b.stop()
	delete(s.backoffs, a)
	return b.removed
}

// established records that the session with addr came up.
func (s *speaker) established(addr string) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return
	}
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if b := s.backoffs[a.Unmap()]; b != nil {
		b.up(time.Now())
	}
}
