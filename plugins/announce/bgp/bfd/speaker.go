package bfd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Port is the UDP port single-hop BFD control packets are sent to
// (RFC 5881 section 4).
const Port = 3784

// Source ports are taken from this range (RFC 5881 section 4), one per
// session.
const (
	srcPortMin = 49152
	srcPortMax = 65535
)

// ttl is the only TTL / hop limit sent and accepted (RFC 5881 section 5):
// a packet that crossed a router cannot carry it.
const ttl = 255

// Defaults for a Peer's zero fields.
const (
	DefaultInterval   = 300 * time.Millisecond
	DefaultMultiplier = 3
)

// Options configure a Speaker.
type Options struct {
	// Logger receives state changes and socket errors; nil discards them.
	Logger *slog.Logger
}

// Peer is one single-hop BFD session.
type Peer struct {
	// Local is the source address of the packets sent; the zero Addr lets
	// the kernel choose one of Remote's family.
	Local netip.Addr
	// Remote is the peer's address: the session's key.
	Remote netip.Addr
	// Interface, when set, binds the session's socket to that interface
	// (SO_BINDTODEVICE), and is the zone of a link-local Remote.
	Interface string
	// MinTx is the desired min TX interval once the session is Up, MinRx
	// the required min RX interval (0: DefaultInterval each).
	MinTx, MinRx time.Duration
	// Multiplier is the detect multiplier (0: DefaultMultiplier).
	Multiplier uint8
}

// Event is a session's change of state.
type Event struct {
	Remote netip.Addr
	State  State
	Diag   Diag
	Time   time.Time
}

// Stats are the Speaker's counters since New.
type Stats struct {
	Received      uint64 // valid packets applied to a session
	Sent          uint64
	SendErrors    uint64
	EventsDropped uint64 // events lost because nobody read Events
	// Dropped counts discarded packets by reason: short, version, length,
	// detect-mult-zero, multipoint, my-discriminator-zero,
	// your-discriminator-zero, authentication, ttl, unknown-discriminator,
	// unknown-peer, local-admin-down.
	Dropped map[string]uint64
}

// Speaker runs BFD sessions: one receive socket per address family on
// Port, one sending socket per session, and one goroutine that drives
// every session's timers. Its methods are safe for concurrent use.
//
// Sockets are created by AddPeer in the network namespace of the calling
// thread.
type Speaker struct {
	log *slog.Logger

	mu      sync.Mutex
	byDiscr map[uint32]*session
	byAddr  map[netip.Addr]*session
	conns   map[*session]*net.UDPConn
	rx      [2]*net.UDPConn // IPv4, IPv6
	closed  bool
	txBuf   [controlLen]byte

	events chan Event
	wake   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup

	received, sent, sendErrors, eventsDropped atomic.Uint64
	drops                                     [nDropReasons]atomic.Uint64
}

// New returns a Speaker without sessions.
func New(o Options) *Speaker {
	sp := newSpeaker(o)
	sp.wg.Add(1)
	go sp.run()
	return sp
}

// newSpeaker returns a Speaker whose timer goroutine is not started.
func newSpeaker(o Options) *Speaker {
	l := o.Logger
	if l == nil {
		l = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Speaker{
		log:     l,
		byDiscr: make(map[uint32]*session),
		byAddr:  make(map[netip.Addr]*session),
		conns:   make(map[*session]*net.UDPConn),
		events:  make(chan Event, 64),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// Events delivers every session's state changes, in order. It is closed by
// Close. A reader that falls 64 events behind loses the newest ones
// (counted in Stats.EventsDropped): the timers never wait for it.
func (sp *Speaker) Events() <-chan Event { return sp.events }

var errClosed = errors.New("bfd: speaker closed")

// AddPeer starts a session with p.Remote, in state Down, sending at most one
// packet a second until it comes Up.
func (sp *Speaker) AddPeer(p Peer) error {
	p, err := p.check()
	if err != nil {
		return err
	}
	fam := 0
	if p.Remote.Is6() {
		fam = 1
	}
	key := p.Remote.WithZone("")

	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		return errClosed
	}
	if _, dup := sp.byAddr[key]; dup {
		return fmt.Errorf("bfd: peer %s: already has a session", p.Remote)
	}
	if sp.rx[fam] == nil {
		c, err := listen(fam == 1)
		if err != nil {
			return fmt.Errorf("bfd: peer %s: %w", p.Remote, err)
		}
		sp.rx[fam] = c
		sp.wg.Add(1)
		go sp.read(c)
	}
	conn, err := sender(p)
	if err != nil {
		return fmt.Errorf("bfd: peer %s: %w", p.Remote, err)
	}
	discr := rand.Uint32()
	for discr == 0 || sp.byDiscr[discr] != nil {
		discr = rand.Uint32()
	}
	s := newSession(p, discr, time.Now())
	sp.byDiscr[discr] = s
	sp.byAddr[key] = s
	sp.conns[s] = conn
	sp.log.Info("bfd session added", "remote", p.Remote, "local", p.Local, "discriminator", discr,
		"min_tx", p.MinTx, "min_rx", p.MinRx, "multiplier", p.Multiplier)
	sp.poke()
	return nil
}

// check validates p and fills its defaults.
func (p Peer) check() (Peer, error) {
	if !p.Remote.IsValid() || p.Remote.IsUnspecified() || p.Remote.IsMulticast() {
		return p, fmt.Errorf("bfd: peer %q: not a unicast address", p.Remote)
	}
	p.Remote = p.Remote.Unmap()
	if p.Local.IsValid() {
		p.Local = p.Local.Unmap()
		if p.Local.Is4() != p.Remote.Is4() {
			return p, fmt.Errorf("bfd: peer %s: local address %s is of another family", p.Remote, p.Local)
		}
	}
	if p.Remote.Is6() && p.Remote.IsLinkLocalUnicast() && p.Remote.Zone() == "" {
		if p.Interface == "" {
			return p, fmt.Errorf("bfd: peer %s: a link-local peer needs an interface", p.Remote)
		}
		p.Remote = p.Remote.WithZone(p.Interface)
	}
	if p.MinTx == 0 {
		p.MinTx = DefaultInterval
	}
	if p.MinRx == 0 {
		p.MinRx = DefaultInterval
	}
	if p.Multiplier == 0 {
		p.Multiplier = DefaultMultiplier
	}
	// Below a millisecond the timer goroutine cannot keep the promise;
	// above an hour the wire's 32-bit microseconds overflow.
	for _, d := range []time.Duration{p.MinTx, p.MinRx} {
		if d < time.Millisecond || d > time.Hour {
			return p, fmt.Errorf("bfd: peer %s: interval %v out of range [1ms, 1h]", p.Remote, d)
		}
	}
	return p, nil
}

// RemovePeer ends the session with remote, telling the peer AdminDown.
func (sp *Speaker) RemovePeer(remote netip.Addr) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	s := sp.byAddr[remote.Unmap().WithZone("")]
	if s == nil {
		return fmt.Errorf("bfd: peer %s: no session", remote)
	}
	sp.adminDown(s, time.Now())
	sp.log.Info("bfd session removed", "remote", s.peer.Remote)
	return nil
}

// adminDown sends AdminDown once and forgets s (section 6.8.16). One packet
// is enough for a peer that hears it; one that does not times out.
func (sp *Speaker) adminDown(s *session, now time.Time) {
	s.setState(AdminDown, DiagAdminDown, now)
	sp.send(s, false)
	sp.conns[s].Close()
	delete(sp.conns, s)
	delete(sp.byDiscr, s.localDiscr)
	delete(sp.byAddr, s.peer.Remote.WithZone(""))
}

// Close sends AdminDown on every session, closes every socket, stops the
// goroutines and closes Events.
func (sp *Speaker) Close() error {
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return nil
	}
	sp.closed = true
	now := time.Now()
	for _, s := range sp.byDiscr {
		sp.adminDown(s, now)
	}
	for _, c := range sp.rx {
		if c != nil {
			c.Close()
		}
	}
	close(sp.done)
	sp.mu.Unlock()
	sp.wg.Wait()
	close(sp.events)
	return nil
}

// Stats returns the counters.
func (sp *Speaker) Stats() Stats {
	st := Stats{
		Received:      sp.received.Load(),
		Sent:          sp.sent.Load(),
		SendErrors:    sp.sendErrors.Load(),
		EventsDropped: sp.eventsDropped.Load(),
		Dropped:       make(map[string]uint64),
	}
	for r := dropShort; r < nDropReasons; r++ {
		st.Dropped[r.String()] = sp.drops[r].Load()
	}
	return st
}

// poke wakes the timer goroutine to look at the sessions again.
func (sp *Speaker) poke() {
	select {
	case sp.wake <- struct{}{}:
	default:
	}
}

// run drives every session's timers: transmissions and detection.
func (sp *Speaker) run() {
	defer sp.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		now := time.Now()
		sp.mu.Lock()
		next := now.Add(time.Hour)
		for _, s := range sp.byDiscr {
			if n := sp.tick(s, now); n.Before(next) {
				next = n
			}
		}
		sp.mu.Unlock()
		t.Reset(next.Sub(now))
		select {
		case <-t.C:
		case <-sp.wake:
		case <-sp.done:
			return
		}
	}
}

// tick does what s owes at now and returns when it is next due.
func (sp *Speaker) tick(s *session, now time.Time) time.Time {
	for {
		expire, periodic, final, next := s.due(now)
		switch {
		case expire:
			if s.expire(now) {
				sp.emit(s, now)
			}
		case periodic || final:
			sp.send(s, final || s.finalDue)
			s.sent(periodic, now)
		default:
			return next
		}
	}
}

// send transmits s's current packet, with F when final.
func (sp *Speaker) send(s *session, final bool) {
	var c ctrl
	s.fill(&c, final)
	n := c.marshal(sp.txBuf[:])
	if _, err := sp.conns[s].WriteToUDPAddrPort(sp.txBuf[:n], netip.AddrPortFrom(s.peer.Remote, Port)); err != nil {
		sp.sendErrors.Add(1)
		return
	}
	sp.sent.Add(1)
}

func (sp *Speaker) emit(s *session, now time.Time) {
	sp.log.Info("bfd session state", "remote", s.peer.Remote, "state", s.state.String(), "diag", s.localDiag.String())
	select {
	case sp.events <- Event{Remote: s.peer.Remote, State: s.state, Diag: s.localDiag, Time: now}:
	default:
		sp.eventsDropped.Add(1)
	}
}

// read receives on one family's socket until Close.
func (sp *Speaker) read(c *net.UDPConn) {
	defer sp.wg.Done()
	// A control packet's length is one byte: a larger datagram is
	// malformed whatever it holds, and is cut short and counted.
	var buf [256]byte
	var oob [64]byte
	for {
		if err := sp.readOne(c, buf[:], oob[:]); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			sp.log.Warn("bfd receive", "err", err)
		}
	}
}

// readOne receives and handles one datagram.
func (sp *Speaker) readOne(c *net.UDPConn, buf, oob []byte) error {
	n, oobn, _, src, err := c.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return err
	}
	sp.input(buf[:n], oob[:oobn], src.Addr(), time.Now())
	return nil
}

// input handles one received datagram. It never allocates.
func (sp *Speaker) input(b, oob []byte, src netip.Addr, now time.Time) {
	if hopLimit(oob) != ttl {
		sp.drops[dropTTL].Add(1)
		return
	}
	var c ctrl
	if r := decode(b, &c); r != dropNone {
		sp.drops[r].Add(1)
		return
	}
	src = src.Unmap().WithZone("")
	sp.mu.Lock()
	var s *session
	if c.YourDiscr != 0 {
		s = sp.byDiscr[c.YourDiscr]
		if s == nil {
			sp.mu.Unlock()
			sp.drops[dropUnknownDiscr].Add(1)
			return
		}
	} else {
		s = sp.byAddr[src]
	}
	// The discriminator alone would let any on-link host speak for the
	// peer; single hop ties the session to its address too.
	if s == nil || s.peer.Remote.WithZone("") != src {
		sp.mu.Unlock()
		sp.drops[dropUnknownPeer].Add(1)
		return
	}
	if s.state == AdminDown {
		sp.mu.Unlock()
		sp.drops[dropAdminDown].Add(1)
		return
	}
	changed := s.receive(&c, now)
	if changed {
		sp.emit(s, now)
	}
	poke := changed || s.finalDue || s.nextTx.Before(now)
	sp.mu.Unlock()
	sp.received.Add(1)
	if poke {
		sp.poke()
	}
}

// listen opens the receive socket of a family on Port, asking the kernel
// for each packet's TTL / hop limit.
func listen(v6 bool) (*net.UDPConn, error) {
	network, addr := "udp4", fmt.Sprintf("0.0.0.0:%d", Port)
	level, opt := unix.IPPROTO_IP, unix.IP_RECVTTL
	if v6 {
		network, addr = "udp6", fmt.Sprintf("[::]:%d", Port)
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return setsockopt(rc, level, opt, 1)
	}}
	pc, err := lc.ListenPacket(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// sender opens the sending socket of a session: bound to p.Local and a
// free source port in 49152-65535 (and to p.Interface), sending with TTL /
// hop limit 255. It is not connected: a connected UDP socket turns an ICMP
// port unreachable (a peer not listening yet) into an error that swallows
// the next packet sent. Nothing reads it, so its receive buffer is the
// smallest the kernel allows.
func sender(p Peer) (*net.UDPConn, error) {
	network, level, opt := "udp4", unix.IPPROTO_IP, unix.IP_TTL
	local := netip.IPv4Unspecified()
	if p.Remote.Is6() {
		network, level, opt = "udp6", unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS
		local = netip.IPv6Unspecified()
	}
	if p.Local.IsValid() {
		local = p.Local
	}
	if local.Is6() && local.IsLinkLocalUnicast() && local.Zone() == "" && p.Interface != "" {
		local = local.WithZone(p.Interface)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		if err := setsockopt(rc, level, opt, ttl); err != nil {
			return err
		}
		if err := setsockopt(rc, unix.SOL_SOCKET, unix.SO_RCVBUF, 0); err != nil {
			return err
		}
		if p.Interface == "" {
			return nil
		}
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, p.Interface)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	start := rand.IntN(srcPortMax - srcPortMin + 1)
	var err error
	// Ports in use are skipped; a few dozen tries find a free one unless
	// the range is nearly exhausted.
	for i := range 64 {
		port := srcPortMin + (start+i*7919)%(srcPortMax-srcPortMin+1)
		var pc net.PacketConn
		pc, err = lc.ListenPacket(context.Background(), network, netip.AddrPortFrom(local, uint16(port)).String())
		if err == nil {
			return pc.(*net.UDPConn), nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free source port in %d-%d: %w", srcPortMin, srcPortMax, err)
}

func setsockopt(rc syscall.RawConn, level, opt, v int) error {
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), level, opt, v)
	}); cerr != nil {
		return cerr
	}
	return err
}
