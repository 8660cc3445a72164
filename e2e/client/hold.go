package client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// DialFunc opens a TCP connection from local (address and port may be
// zero: any) to remote. The lab's Dialer makes one that creates the socket
// in a namespace; the socket is then used from any goroutine.
type DialFunc func(local, remote netip.AddrPort) (net.Conn, error)

// Dial is a DialFunc in the current network namespace.
func Dial(local, remote netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	if local.IsValid() || local.Port() != 0 {
		d.LocalAddr = net.TCPAddrFromAddrPort(local)
	}
	return d.Dial("tcp", remote.String())
}

// dialTimeout covers a few SYN retransmissions (1, 2 s).
const dialTimeout = 5 * time.Second

// HoldOptions configures Hold.
type HoldOptions struct {
	// Conns is the number of connections, spread round-robin over
	// Targets (default 300).
	Conns int
	// Targets are the HTTP servers (the VIPs, port 80).
	Targets []netip.AddrPort
	// Interval is the time from one request's start to the next on a
	// connection (default 100 ms); a late answer is followed by the next
	// request at once. Connections start at random phases within it, so
	// the load is even.
	Interval time.Duration
	// Timeout is how long a request may wait for its answer before the
	// connection counts as dead (default 30 s): generous, so that a stall
	// of seconds while routes converge (TCP retransmits, backing off)
	// is a stall, not a failure.
	Timeout time.Duration
	// BasePort, if not zero, binds connection i to local port BasePort+i
	// instead of an ephemeral port, for runs that must use the same flows.
	// Ephemeral ports are spread already: the kernel picks them at random
	// in its range, so an ECMP hash over the 5-tuple spreads the
	// connections over every next hop either way.
	BasePort uint16
	// Dial opens the connections (default Dial).
	Dial DialFunc
}

// Held is a set of long-lived keep-alive connections, each sending an
// HTTP/1.1 GET every Interval and checking the X-Backend of every answer.
type Held struct {
	opts  HoldOptions
	conns []*heldConn
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
	final Snapshot
}

// heldConn is one connection and its counters.
type heldConn struct {
	nc     net.Conn
	local  netip.AddrPort
	target netip.AddrPort

	mu        sync.Mutex
	requests  uint64
	answers   uint64
	errors    uint64
	lastErr   string
	dead      bool
	backends  []string // distinct, in the order first seen
	maxStall  time.Duration
	sent      time.Time // of the request in flight; zero: none
	lastReply time.Time // last answer, or the first request's start
}

// ConnStats is one connection's state.
type ConnStats struct {
	Local    netip.AddrPort `json:"local"`
	Target   netip.AddrPort `json:"target"`
	Requests uint64         `json:"requests"` // sent
	Answers  uint64         `json:"answers"`  // 200 with an X-Backend
	Errors   uint64         `json:"errors"`   // failed requests: bad answers, and the one that killed the connection
	LastErr  string         `json:"last_error,omitempty"`
	// Dead: the connection failed (reset, closed, or no answer within
	// Timeout); it is not reopened.
	Dead bool `json:"dead"`
	// Alive: not dead; after Stop, it lived to the end.
	Alive bool `json:"alive"`
	// Backends are the X-Backend values seen, in order; more than one
	// means the connection moved to another backend.
	Backends []string `json:"backends"`
	// MaxStall is the longest wait for an answer, measured from the
	// request's start and from the previous answer (so at least
	// Interval): a request in flight counts up to now.
	MaxStall time.Duration `json:"max_stall_ns"`
}

// Backend is the connection's backend: the first X-Backend seen.
func (c ConnStats) Backend() string {
	if len(c.Backends) == 0 {
		return ""
	}
	return c.Backends[0]
}

// HoldSummary sums a Snapshot.
type HoldSummary struct {
	Conns    int    `json:"conns"`
	Alive    int    `json:"alive"`
	Dead     int    `json:"dead"`
	Requests uint64 `json:"requests"`
	Answers  uint64 `json:"answers"`
	Errors   uint64 `json:"errors"`
	// Moved counts connections that saw more than one backend.
	Moved int `json:"moved"`
	// Backends counts connections by their first backend.
	Backends map[string]int `json:"backends"`
	// NoAnswer counts connections without any answer yet.
	NoAnswer   int           `json:"no_answer"`
	MaxStall   time.Duration `json:"max_stall_ns"`
	FirstError string        `json:"first_error,omitempty"`
}

// Snapshot is the state of every connection at one time.
type Snapshot struct {
	Time    time.Time   `json:"time"`
	Conns   []ConnStats `json:"-"`
	Summary HoldSummary `json:"summary"`
}

func (o *HoldOptions) setDefaults() error {
	if o.Conns == 0 {
		o.Conns = 300
	}
	if o.Conns < 0 || len(o.Targets) == 0 {
		return errors.New("client: Hold needs Targets and Conns > 0")
	}
	if o.BasePort != 0 && int(o.BasePort)+o.Conns > 65536 {
		return fmt.Errorf("client: BasePort %d + %d connections passes port 65535", o.BasePort, o.Conns)
	}
	if o.Interval <= 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Dial == nil {
		o.Dial = Dial
	}
	return nil
}

// dialParallel is how many connections Hold opens at once.
const dialParallel = 16

// Hold opens the connections (all of them, or it closes those it opened
// and fails) and starts their requests. Stop ends them.
func Hold(opts HoldOptions) (*Held, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	h := &Held{opts: opts, stop: make(chan struct{}), conns: make([]*heldConn, opts.Conns)}
	var mu sync.Mutex
	var errs []error
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(dialParallel, opts.Conns) {
		wg.Go(func() {
			for i := range next {
				c, err := h.dial(i)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				h.conns[i] = c
				mu.Unlock()
			}
		})
	}
	for i := range opts.Conns {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		for _, c := range h.conns {
			if c != nil {
				c.nc.Close()
			}
		}
		return nil, fmt.Errorf("client: %d of %d connections failed to open: %w", len(errs), opts.Conns, errs[0])
	}
	for _, c := range h.conns {
		phase := rand.N(opts.Interval)
		h.wg.Go(func() { c.run(h, phase) })
	}
	return h, nil
}

func (h *Held) dial(i int) (*heldConn, error) {
	target := h.opts.Targets[i%len(h.opts.Targets)]
	var local netip.AddrPort
	if h.opts.BasePort != 0 {
		unspec := netip.IPv4Unspecified()
		if target.Addr().Is6() {
			unspec = netip.IPv6Unspecified()
		}
		local = netip.AddrPortFrom(unspec, h.opts.BasePort+uint16(i))
	}
	nc, err := h.opts.Dial(local, target)
	if err != nil {
		return nil, fmt.Errorf("connection %d to %s: %w", i, target, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	la, _ := netip.ParseAddrPort(nc.LocalAddr().String())
	return &heldConn{nc: nc, local: la, target: target}, nil
}

// run sends a request every Interval, starting after phase, until the
// connection fails or Stop.
func (c *heldConn) run(h *Held, phase time.Duration) {
	req := []byte("GET / HTTP/1.1\r\nHost: " + c.target.String() + "\r\nUser-Agent: xlb-client-hold\r\n\r\n")
	br := bufio.NewReaderSize(c.nc, 1024)
	t := time.NewTimer(phase)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		start := time.Now()
		c.mu.Lock()
		c.requests++
		c.sent = start
		if c.lastReply.IsZero() {
			c.lastReply = start
		}
		c.mu.Unlock()
		_ = c.nc.SetDeadline(start.Add(h.opts.Timeout))
		backend, err := roundTrip(c.nc, br, req)
		now := time.Now()
		select {
		case <-h.stop:
			// Stop closed the connection under the request.
			return
		default:
		}
		fatal := c.record(now, backend, err)
		if fatal {
			c.nc.Close()
			return
		}
		t.Reset(max(0, h.opts.Interval-now.Sub(start)))
	}
}

// record counts a request's outcome at now and reports whether the
// connection is dead.
func (c *heldConn) record(now time.Time, backend string, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maxStall = max(c.maxStall, c.stallAt(now))
	c.sent = time.Time{}
	if err != nil {
		c.errors++
		c.lastErr = errKind(err)
		var he *httpError
		if !errors.As(err, &he) {
			c.dead = true
			return true
		}
		return false
	}
	c.answers++
	c.lastReply = now
	if !slices.Contains(c.backends, backend) {
		c.backends = append(c.backends, backend)
	}
	return false
}

// stallAt is the current wait at now: since the request in flight was
// sent, and since the last answer. Called with c.mu held.
func (c *heldConn) stallAt(now time.Time) time.Duration {
	var d time.Duration
	if !c.sent.IsZero() {
		d = now.Sub(c.sent)
		if !c.lastReply.IsZero() {
			d = max(d, now.Sub(c.lastReply))
		}
	}
	return d
}

// httpError is a bad answer on a connection that is still usable.
type httpError struct{ msg string }

func (e *httpError) Error() string { return e.msg }

// roundTrip writes req and reads one HTTP/1.1 answer, returning its
// X-Backend. Only what the lab's backends send is understood: a status
// line, headers, and a body of Content-Length bytes.
func roundTrip(nc net.Conn, br *bufio.Reader, req []byte) (string, error) {
	if _, err := nc.Write(req); err != nil {
		return "", err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	status := 0
	if f := bytes.Fields(line); len(f) >= 2 && bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		status, _ = strconv.Atoi(string(f[1]))
	}
	if status == 0 {
		return "", fmt.Errorf("client: bad status line %q", line)
	}
	var backend string
	length := -1
	closing := false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return "", fmt.Errorf("client: bad header line %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("X-Backend")):
			backend = string(v)
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.Atoi(string(v))
			if err != nil || length < 0 {
				return "", fmt.Errorf("client: bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	if length < 0 {
		return "", errors.New("client: answer without Content-Length")
	}
	if _, err := br.Discard(length); err != nil {
		return "", err
	}
	switch {
	case closing:
		return "", errors.New("client: the server closes the connection")
	case status != 200:
		return "", &httpError{fmt.Sprintf("HTTP status %d", status)}
	case backend == "":
		return "", &httpError{"no X-Backend header"}
	}
	return backend, nil
}

// Snapshot returns every connection's state now.
func (h *Held) Snapshot() Snapshot {
	now := time.Now()
	s := Snapshot{Time: now, Conns: make([]ConnStats, len(h.conns))}
	for i, c := range h.conns {
		c.mu.Lock()
		s.Conns[i] = ConnStats{
			Local: c.local, Target: c.target,
			Requests: c.requests, Answers: c.answers, Errors: c.errors,
			LastErr: c.lastErr, Dead: c.dead, Alive: !c.dead,
			Backends: slices.Clone(c.backends),
			MaxStall: max(c.maxStall, c.stallAt(now)),
		}
		c.mu.Unlock()
	}
	s.Summary = summarize(s.Conns)
	return s
}

func summarize(cs []ConnStats) HoldSummary {
	s := HoldSummary{Conns: len(cs), Backends: map[string]int{}}
	for _, c := range cs {
		if c.Alive {
			s.Alive++
		}
		if c.Dead {
			s.Dead++
		}
		s.Requests += c.Requests
		s.Answers += c.Answers
		s.Errors += c.Errors
		if len(c.Backends) > 1 {
			s.Moved++
		}
		if b := c.Backend(); b != "" {
			s.Backends[b]++
		} else {
			s.NoAnswer++
		}
		s.MaxStall = max(s.MaxStall, c.MaxStall)
		if s.FirstError == "" && c.LastErr != "" {
			s.FirstError = fmt.Sprintf("%s -> %s: %s", c.Local, c.Target, c.LastErr)
		}
	}
	return s
}

// Stop ends every connection (closing it) and returns their final state;
// later calls return the same.
func (h *Held) Stop() Snapshot {
	h.once.Do(func() {
		// The final state is taken before the connections close, so
		// that a request Stop cuts short is not counted.
		close(h.stop)
		h.final = h.Snapshot()
		for _, c := range h.conns {
			c.nc.Close()
		}
		h.wg.Wait()
	})
	return h.final
}

// String is a one-line account, for logs and the demo.
func (s HoldSummary) String() string {
	return fmt.Sprintf("%d connections: %d alive, %d dead, %d moved to another backend, %d without an answer; "+
		"%d requests, %d answers, %d errors; longest stall %v; per backend %v",
		s.Conns, s.Alive, s.Dead, s.Moved, s.NoAnswer, s.Requests, s.Answers, s.Errors,
		s.MaxStall.Round(time.Millisecond), s.Backends)
}
