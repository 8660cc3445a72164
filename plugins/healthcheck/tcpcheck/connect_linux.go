//go:build linux

package tcpcheck

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/plugins/healthcheck/internal/probe"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// connectAll checks targets with non-blocking sockets driven by one epoll
// loop on the calling goroutine, with at most concurrency sockets open at
// once. A probe is socket, connect, epoll_ctl, a share of one epoll_wait,
// setsockopt(SO_LINGER) and close, with no allocation when it passes.
// net.Dialer adds, per connect, a goroutine hand-off, a context watcher,
// address parsing, netpoll registration, keepalive and nodelay options a
// check never uses, and some twenty allocations: at 10,000 targets a
// second that was a third of the plugin's CPU (see BenchmarkCheck1000 and
// xlb-bench-health).
//
// A batch naming a target by host name (or by a scoped IPv6 address) goes
// to dialAll instead, whose net.Dialer resolves it: xlbd sends IP
// addresses, so that is only ever a direct caller's batch.
func connectAll(ctx context.Context, targets []sdk.Target, concurrency int, port portFunc) []sdk.Result {
	res := make([]sdk.Result, len(targets))
	addrs := make([]netip.AddrPort, len(targets))
	for i, t := range targets {
		a, err := netip.ParseAddr(t.Address)
		if err != nil || a.Zone() != "" {
			return dialAll(ctx, targets, concurrency, port)
		}
		res[i].ID = t.ID
		p, err := port(t)
		if err == nil && (p < 1 || p > 65535) {
			err = errors.New("invalid port " + strconv.Itoa(p))
		}
		if err != nil {
			res[i].Status, res[i].Message = sdk.StatusFail, err.Error()
			continue
		}
		addrs[i] = netip.AddrPortFrom(a.Unmap(), uint16(p))
	}
	if len(targets) == 0 {
		return res
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probe.DefaultTimeout)
		defer cancel()
	}
	b, err := newBatch(ctx, res, addrs, max(1, min(concurrency, len(targets))))
	if err != nil {
		// No epoll instance (out of descriptors, say): net.Dialer shares
		// the runtime's.
		return dialAll(ctx, targets, concurrency, port)
	}
	defer b.close()
	b.run()
	return res
}

// wakeSlot marks the eventfd's epoll event, written when ctx ends.
const wakeSlot = -1

// rstLinger makes close send a RST, as HAProxy does after a check: a
// graceful close would leave the probing side in TIME_WAIT, and at 10,000
// targets a second that is 600,000 sockets per minute.
var rstLinger = unix.Linger{Onoff: 1, Linger: 0}

// errCanceled is net.Dialer's text for a connect cut short by cancellation.
var errCanceled = errors.New("operation was canceled")

// batch is one connectAll call's state: the epoll instance, and one slot
// per socket that may be in flight, whose index is the epoll event's data.
type batch struct {
	ctx      context.Context
	deadline time.Time
	res      []sdk.Result
	addrs    []netip.AddrPort // invalid: the target already failed (no port)
	epfd     int
	wakefd   int
	stopWake func() bool
	woken    chan struct{}
	slots    []slot
	free     []int32 // indices of slots with no socket
	events   []unix.EpollEvent
	sa4      unix.SockaddrInet4
	sa6      unix.SockaddrInet6
}

type slot struct {
	fd    int // -1: free
	i     int // the target
	start time.Time
}

func newBatch(ctx context.Context, res []sdk.Result, addrs []netip.AddrPort, concurrency int) (*batch, error) {
	deadline, _ := ctx.Deadline()
	b := &batch{ctx: ctx, deadline: deadline, res: res, addrs: addrs, epfd: -1, wakefd: -1,
		slots: make([]slot, concurrency), free: make([]int32, concurrency),
		events: make([]unix.EpollEvent, min(concurrency+1, 256))}
	for k := range b.slots {
		b.slots[k].fd = -1
		b.free[k] = int32(concurrency - 1 - k)
	}
	var err error
	if b.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// An eventfd written when ctx ends wakes epoll_wait at once, so a
	// cancelled batch stops without waiting out its deadline.
	if b.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		b.close()
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeSlot}
	if err := unix.EpollCtl(b.epfd, unix.EPOLL_CTL_ADD, b.wakefd, &ev); err != nil {
		b.close()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	b.woken = make(chan struct{})
	b.stopWake = context.AfterFunc(ctx, func() {
		defer close(b.woken)
		one := [8]byte{1}
		_, _ = unix.Write(b.wakefd, one[:])
	})
	return b, nil
}

// close releases the epoll instance and the eventfd; no socket is open by
// then.
func (b *batch) close() {
	// The eventfd's number must not be reused while the AfterFunc may
	// still write to it.
	if b.stopWake != nil && !b.stopWake() {
		<-b.woken
	}
	if b.wakefd >= 0 {
		unix.Close(b.wakefd)
	}
	if b.epfd >= 0 {
		unix.Close(b.epfd)
	}
}

// run starts connects in target order while a slot is free and waits for
// their outcomes, until every target has a result.
func (b *batch) run() {
	next := 0
	for {
		for len(b.free) > 0 && next < len(b.addrs) {
			i := next
			next++
			if !b.addrs[i].IsValid() {
				continue
			}
			// ctx.Err() lags the deadline by a timer's latency; a connect
			// started in that gap would time out at once, unprobed.
			now := time.Now()
			if b.ctx.Err() != nil || !now.Before(b.deadline) {
				b.res[i].Status, b.res[i].Message = sdk.StatusUnknown, probe.NotProbed
				continue
			}
			b.start(i, now)
		}
		if len(b.free) == len(b.slots) {
			return // nothing in flight, so nothing left to start either
		}
		b.wait()
	}
}

// start opens a socket to target i and begins its connect; a connect that
// fails at once (a local error) is judged here.
func (b *batch) start(i int, now time.Time) {
	ap := b.addrs[i]
	family, sa := unix.AF_INET6, unix.Sockaddr(&b.sa6)
	if ap.Addr().Is4() {
		b.sa4.Addr, b.sa4.Port = ap.Addr().As4(), int(ap.Port())
		family, sa = unix.AF_INET, &b.sa4
	} else {
		b.sa6.Addr, b.sa6.Port = ap.Addr().As16(), int(ap.Port())
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		b.fail(i, now, os.NewSyscallError("socket", err))
		return
	}
	switch err := unix.Connect(fd, sa); err {
	case unix.EINPROGRESS:
	case nil: // TCP on Linux always answers EINPROGRESS, but it may not
		closeRST(fd)
		b.pass(i, now)
		return
	default:
		unix.Close(fd)
		b.fail(i, now, os.NewSyscallError("connect", err))
		return
	}
	k := b.free[len(b.free)-1]
	ev := unix.EpollEvent{Events: unix.EPOLLOUT, Fd: k}
	if err := unix.EpollCtl(b.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		closeRST(fd)
		b.fail(i, now, os.NewSyscallError("epoll_ctl", err))
		return
	}
	b.free = b.free[:len(b.free)-1]
	b.slots[k] = slot{fd: fd, i: i, start: now}
}

// wait waits for connects to complete, until the deadline, and judges them;
// at the deadline (or ctx's end) it fails those still in flight.
func (b *batch) wait() {
	left := time.Until(b.deadline)
	if b.ctx.Err() != nil || left <= 0 {
		b.expire()
		return
	}
	n, err := unix.EpollWait(b.epfd, b.events, int((left+time.Millisecond-1)/time.Millisecond))
	if err == unix.EINTR {
		return
	}
	if err != nil {
		b.expireWith(os.NewSyscallError("epoll_wait", err))
		return
	}
	for _, ev := range b.events[:n] {
		if ev.Fd != wakeSlot {
			b.done(ev.Fd, ev.Events)
		}
	}
}

// done judges the connect in slot k, whose socket epoll reported, and
// closes it.
func (b *batch) done(k int32, events uint32) {
	s := b.slots[k]
	b.slots[k].fd = -1
	b.free = append(b.free, k)
	// Writable without an error or hang-up: the handshake completed, and
	// asking SO_ERROR would only cost a syscall.
	if events&(unix.EPOLLERR|unix.EPOLLHUP) == 0 {
		closeRST(s.fd)
		b.pass(s.i, s.start)
		return
	}
	v, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	unix.Close(s.fd)
	switch {
	case err != nil:
		err = os.NewSyscallError("getsockopt", err)
	case v != 0:
		err = os.NewSyscallError("connect", unix.Errno(v))
	default: // hung up with no error pending: reset after the handshake
		err = os.NewSyscallError("connect", unix.ECONNRESET)
	}
	b.fail(s.i, s.start, err)
}

// expire fails the connects still in flight when ctx ends, with
// net.Dialer's text for it.
func (b *batch) expire() {
	err := error(os.ErrDeadlineExceeded) // "i/o timeout"
	if errors.Is(b.ctx.Err(), context.Canceled) {
		err = errCanceled
	}
	b.expireWith(err)
}

func (b *batch) expireWith(err error) {
	for k := range b.slots {
		s := &b.slots[k]
		if s.fd < 0 {
			continue
		}
		// A handshake may have completed since the last epoll_wait: close
		// with a RST all the same.
		closeRST(s.fd)
		s.fd = -1
		b.free = append(b.free, int32(k))
		b.fail(s.i, s.start, err)
	}
}

func (b *batch) pass(i int, start time.Time) {
	r := &b.res[i]
	r.Status, r.Latency = sdk.StatusPass, time.Since(start)
}

// fail records target i's failure in net.Dialer's words ("dial tcp
// 10.0.0.1:80: connect: connection refused"), as the portable path does.
func (b *batch) fail(i int, start time.Time, err error) {
	r := &b.res[i]
	r.Status, r.Latency = sdk.StatusFail, time.Since(start)
	r.Message = (&net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(b.addrs[i]), Err: err}).Error()
}

func closeRST(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &rstLinger)
	unix.Close(fd)
}
