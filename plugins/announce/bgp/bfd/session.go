package bfd

import (
	"math/rand/v2"
	"time"
)

// slowTx is the least transmit interval while a session is not Up
// (RFC 5880 section 6.8.3: "not less than one second").
const slowTx = time.Second

// session holds the state variables of RFC 5880 section 6.8.1 for one
// peer and the timers that drive it. It does no I/O: the Speaker feeds it
// packets and the time, and sends what it asks for. Every method is called
// with the Speaker's mutex held.
type session struct {
	peer Peer

	state       State
	remoteState State
	localDiscr  uint32
	remoteDiscr uint32
	localDiag   Diag

	// desiredMinTx is what this end advertises (bfd.DesiredMinTxInterval);
	// requiredMinRx is bfd.RequiredMinRxInterval (the configured MinRx).
	desiredMinTx  time.Duration
	requiredMinRx time.Duration
	// remoteMinRx is bfd.RemoteMinRxInterval: the peer's Required Min RX.
	remoteMinRx time.Duration
	// remoteMinTx and remoteMult come from the peer's last packet and set
	// the detection time.
	remoteMinTx time.Duration
	remoteMult  uint8

	// polling: a Poll sequence is outstanding (section 6.5): the packets
	// this end sends carry P until one with F comes back.
	polling bool
	// finalDue: the peer polled; a packet with F is owed at once.
	finalDue bool

	nextTx     time.Time // next periodic transmission
	lastTx     time.Time
	lastFinal  time.Time // last out-of-schedule (Final) transmission
	detectAt   time.Time // zero: detection timer not armed
	lastChange time.Time
}

// finalGap bounds the out-of-schedule packets with F that a stream of
// Polls can draw from one session: a peer flooding Polls gets at most one
// reply per finalGap, not one per packet.
const finalGap = 10 * time.Millisecond

func newSession(p Peer, discr uint32, now time.Time) *session {
	s := &session{
		peer:          p,
		state:         Down,
		remoteState:   Down,
		localDiscr:    discr,
		requiredMinRx: p.MinRx,
		remoteMinRx:   time.Microsecond, // section 6.8.1: initialised to 1
		lastChange:    now,
		nextTx:        now,
	}
	s.desiredMinTx = max(p.MinTx, slowTx)
	return s
}

// txInterval is the interval between periodic packets before jitter: the
// slower of this end's desired min TX and the peer's required min RX
// (section 6.8.7).
func (s *session) txInterval() time.Duration {
	return max(s.desiredMinTx, s.remoteMinRx)
}

// jitter returns d reduced by a random 0-25 %, or 10-25 % when the detect
// multiplier is 1 (section 6.8.7), so that packets of many sessions do not
// synchronise.
func (s *session) jitter(d time.Duration) time.Duration {
	lo, hi := 0.75, 1.0
	if s.peer.Multiplier == 1 {
		hi = 0.90
	}
	return time.Duration(float64(d) * (lo + (hi-lo)*rand.Float64()))
}

// detectTime is the asynchronous-mode detection time (section 6.8.4): the
// peer's multiplier times the slower of this end's required min RX and the
// peer's desired min TX.
func (s *session) detectTime() time.Duration {
	return time.Duration(s.remoteMult) * max(s.requiredMinRx, s.remoteMinTx)
}

// fill fills c with the packet this session sends now.
func (s *session) fill(c *ctrl, final bool) {
	*c = ctrl{
		Diag:          s.localDiag,
		State:         s.state,
		DetectMult:    s.peer.Multiplier,
		MyDiscr:       s.localDiscr,
		YourDiscr:     s.remoteDiscr,
		DesiredMinTx:  micros(s.desiredMinTx),
		RequiredMinRx: micros(s.requiredMinRx),
	}
	// Poll and Final never share a packet (section 6.5): the reply carries
	// F alone and the next periodic packet resumes the Poll.
	if final {
		c.Final = true
	} else {
		c.Poll = s.polling
	}
}

func micros(d time.Duration) uint32 {
	us := d / time.Microsecond
	if us > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(us)
}

// setState moves the session to st with diag d and adjusts the transmit
// interval: at least slowTx while not Up, the configured MinTx once Up,
// announced with a Poll sequence (section 6.8.3). It reports whether the
// state changed.
func (s *session) setState(st State, d Diag, now time.Time) bool {
	if st == s.state {
		return false
	}
	s.state = st
	s.localDiag = d
	s.lastChange = now
	if st == Up {
		// Lowering the desired TX may take effect at once; the Poll lets
		// the peer shorten its detection time only when it answers.
		if s.desiredMinTx != s.peer.MinTx {
			s.desiredMinTx = s.peer.MinTx
			s.polling = true
		}
	} else {
		s.desiredMinTx = max(s.peer.MinTx, slowTx)
		s.polling = false
	}
	// The new state reaches the peer now rather than after up to a second.
	s.nextTx = now
	return true
}

// receive applies a valid control packet (section 6.8.6, after the checks
// of decode and the demultiplexing) and reports whether the state changed.
func (s *session) receive(c *ctrl, now time.Time) bool {
	s.remoteDiscr = c.MyDiscr
	s.remoteState = c.State
	s.remoteMult = c.DetectMult
	s.remoteMinTx = time.Duration(c.DesiredMinTx) * time.Microsecond
	oldInterval := s.txInterval()
	s.remoteMinRx = time.Duration(c.RequiredMinRx) * time.Microsecond
	if c.Final && s.polling {
		s.polling = false
	}
	if c.Poll {
		s.finalDue = true
	}
	// A shorter interval asked by the peer takes effect from the last
	// transmission, not after the longer one already scheduled.
	if iv := s.txInterval(); iv < oldInterval && !s.lastTx.IsZero() {
		if t := s.lastTx.Add(s.jitter(iv)); t.Before(s.nextTx) {
			s.nextTx = t
		}
	}
	s.detectAt = now.Add(s.detectTime())

	if s.state == AdminDown {
		return false
	}
	if c.State == AdminDown {
		if s.state != Down {
			return s.setState(Down, DiagNeighborDown, now)
		}
		return false
	}
	switch s.state {
	case Down:
		switch c.State {
		case Down:
			return s.setState(Init, DiagNone, now)
		case Init:
			return s.setState(Up, DiagNone, now)
		}
	case Init:
		if c.State == Init || c.State == Up {
			return s.setState(Up, DiagNone, now)
		}
	case Up:
		if c.State == Down {
			return s.setState(Down, DiagNeighborDown, now)
		}
	}
	return false
}

// expire runs when the detection time has passed without a packet
// (section 6.8.4): a session in Init or Up goes Down, and in every state
// the peer's discriminator is forgotten (section 6.8.1).
func (s *session) expire(now time.Time) bool {
	s.detectAt = time.Time{}
	s.remoteDiscr = 0
	s.remoteState = Down
	s.remoteMinRx = time.Microsecond
	s.polling = false
	if s.state == Init || s.state == Up {
		return s.setState(Down, DiagDetectExpired, now)
	}
	return false
}

// due reports what the session must do at now: expire, send a periodic
// packet, send a Final; and when it next needs attention.
func (s *session) due(now time.Time) (expire, periodic, final bool, next time.Time) {
	if !s.detectAt.IsZero() && !now.Before(s.detectAt) {
		expire = true
	}
	// A peer that asks for no packets (Required Min RX 0) gets none
	// (section 6.8.7), except the answer to its Poll.
	quiet := s.remoteMinRx == 0
	if !quiet && !now.Before(s.nextTx) {
		periodic = true
	}
	if s.finalDue && !periodic && !now.Before(s.lastFinal.Add(finalGap)) {
		final = true
	}
	next = s.nextTx
	if quiet {
		next = now.Add(time.Hour)
	}
	if !s.detectAt.IsZero() && s.detectAt.Before(next) {
		next = s.detectAt
	}
	if s.finalDue && !final && !periodic {
		if t := s.lastFinal.Add(finalGap); t.Before(next) {
			next = t
		}
	}
	return expire, periodic, final, next
}

// sent records a transmission at now. A periodic packet that answers a
// Poll carries F instead of P (the caller built it with final set).
func (s *session) sent(periodic bool, now time.Time) {
	if periodic {
		s.lastTx = now
		s.nextTx = now.Add(s.jitter(s.txInterval()))
	} else {
		s.lastFinal = now
	}
	s.finalDue = false
}
