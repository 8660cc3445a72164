package xsk

import (
	"cmp"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	asv "github.com/asavie/xdp"
	"golang.org/x/sys/unix"
)

// Options size a socket.
type Options struct {
	Frames    int // UMEM frames, a power of two
	FrameSize int // 2048 or 4096
	RxRing    int // RX and fill ring descriptors, a power of two; 0: Frames/2
	TxRing    int // TX and completion ring descriptors, a power of two; 0: Frames/2
	TxBatch   int // descriptors queued before a forced flush
	// BusyPoll, when positive, makes the socket busy-poll its queue's
	// NAPI for up to that many microseconds per system call, preferred
	// over the softirq (SO_BUSY_POLL, SO_PREFER_BUSY_POLL), taking up to
	// BusyPollBudget packets a poll (SO_BUSY_POLL_BUDGET). Per socket:
	// no sysctl.
	BusyPoll, BusyPollBudget int
}

// asavieRings is the kernel side over asavie/xdp's Socket. It uses asavie
// to create, register and bind the socket and to move descriptors on the
// fill, RX and TX rings, but not its frame flags (Receive marks frames
// free at once; GetDescs scans them all), nor its Poll and Complete, which
// consume completions without saying which frames they freed: the
// completion ring is mapped a second time here and read directly.
type asavieRings struct {
	s      *asv.Socket
	fd     int
	txSize int

	comp struct {
		mem        []byte
		prod, cons *uint32
		descs      []uint64
		mask       uint32
	}
	fill []asv.Desc // scratch for Fill
	tx   []asv.Desc // scratch for Transmit
}

// Open creates an AF_XDP socket on the interface's queue with a UMEM of
// opts.Frames frames, binds it, and returns its accounting. The socket
// is in copy or zero-copy mode as the driver allows (ZeroCopy says which).
func Open(ifindex, queue int, opts Options) (_ *Socket, err error) {
	if opts.Frames < 64 || opts.Frames&(opts.Frames-1) != 0 {
		return nil, fmt.Errorf("frames %d is not a power of two of at least 64", opts.Frames)
	}
	rxRing, txRing := cmp.Or(opts.RxRing, opts.Frames/2), cmp.Or(opts.TxRing, opts.Frames/2)
	for _, n := range []int{rxRing, txRing} {
		if n <= 0 || n > opts.Frames || n&(n-1) != 0 {
			return nil, fmt.Errorf("ring of %d descriptors is not a power of two up to the %d frames", n, opts.Frames)
		}
	}
	so := asv.SocketOptions{NumFrames: opts.Frames, FrameSize: opts.FrameSize,
		FillRingNumDescs: rxRing, CompletionRingNumDescs: txRing, RxRingNumDescs: rxRing, TxRingNumDescs: txRing}
	r := &asavieRings{fd: -1, txSize: txRing, fill: make([]asv.Desc, rxRing), tx: make([]asv.Desc, txRing)}
	err = guard(func() error {
		var err error
		r.s, err = asv.NewSocket(ifindex, queue, &so)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("AF_XDP socket on queue %d: %w", queue, err)
	}
	r.fd = r.s.FD()
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if err := r.mapCompletion(txRing); err != nil {
		return nil, err
	}
	if opts.BusyPoll > 0 {
		for _, o := range [][2]int{{unix.SO_PREFER_BUSY_POLL, 1}, {unix.SO_BUSY_POLL, opts.BusyPoll}, {unix.SO_BUSY_POLL_BUDGET, opts.BusyPollBudget}} {
			if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, o[0], o[1]); err != nil {
				return nil, fmt.Errorf("setsockopt busy poll (%#x = %d): %w", o[0], o[1], err)
			}
		}
	}
	var umem []byte
	err = guard(func() error {
		umem = r.s.GetFrame(asv.Desc{Addr: 0, Len: uint32(opts.Frames * opts.FrameSize)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return New(r, umem, opts.FrameSize, opts.TxBatch)
}

// guard runs f, turning a panic inside asavie/xdp into an error.
func guard(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("asavie/xdp: %v", v)
		}
	}()
	return f()
}

func (r *asavieRings) mapCompletion(n int) error {
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(r.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return fmt.Errorf("getsockopt XDP_MMAP_OFFSETS: %w", e)
	}
	mem, err := unix.Mmap(r.fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, int(off.Cr.Desc)+n*8,
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mapping the completion ring: %w", err)
	}
	c := &r.comp
	c.mem = mem
	c.prod = (*uint32)(unsafe.Pointer(&mem[off.Cr.Producer]))
	c.cons = (*uint32)(unsafe.Pointer(&mem[off.Cr.Consumer]))
	c.descs = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off.Cr.Desc])), n)
	c.mask = uint32(n - 1)
	return nil
}

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode.
func ZeroCopy(s *Socket) (bool, error) {
	r, ok := s.r.(*asavieRings)
	if !ok {
		return false, nil
	}
	var opts uint32
	size := uint32(unsafe.Sizeof(opts))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(r.fd), unix.SOL_XDP, unix.XDP_OPTIONS,
		uintptr(unsafe.Pointer(&opts)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return false, fmt.Errorf("getsockopt XDP_OPTIONS: %w", e)
	}
	return opts&unix.XDP_OPTIONS_ZEROCOPY != 0, nil
}

// FD returns the socket's file descriptor (for the XSKMAP), -1 for a fake.
func FD(s *Socket) int {
	if r, ok := s.r.(*asavieRings); ok {
		return r.fd
	}
	return -1
}

// KernelStats reads the kernel's counters of the socket (XDP_STATISTICS).
// It is a system call on the descriptor, safe from any goroutine while
// the socket is open.
func KernelStats(fd int) (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	size := uint32(unsafe.Sizeof(st))
	if fd < 0 {
		return st, errors.New("no socket")
	}
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return st, e
	}
	return st, nil
}

func (r *asavieRings) FreeFillSlots() int { return r.s.NumFreeFillSlots() }

func (r *asavieRings) Fill(addrs []uint64) (n int, err error) {
	d := r.fill[:min(len(addrs), len(r.fill))]
	for i := range d {
		d[i] = asv.Desc{Addr: addrs[i]}
	}
	err = guard(func() error { n = r.s.Fill(d); return nil })
	return n, err
}

func (r *asavieRings) Receive(out []Desc) (n int, err error) {
	err = guard(func() error {
		for i, d := range r.s.Receive(len(out)) {
			out[i] = Desc{Addr: d.Addr, Len: d.Len}
			n++
		}
		return nil
	})
	return n, err
}

func (r *asavieRings) FreeTxSlots() int { return r.s.NumFreeTxSlots() }

func (r *asavieRings) TxQueued() int { return r.txSize - r.s.NumFreeTxSlots() }

// Transmit queues descs with asavie's Transmit, which also wakes the
// kernel and panics on a sendto error other than EAGAIN and EBUSY (the
// interface going down gives ENETDOWN or ENXIO): the panic becomes an
// error, and the descriptors, already on the ring, stay accounted as sent.
func (r *asavieRings) Transmit(descs []Desc) error {
	d := r.tx[:min(len(descs), len(r.tx))]
	for i := range d {
		d[i] = asv.Desc{Addr: descs[i].Addr, Len: descs[i].Len}
	}
	var n int
	err := guard(func() error { n = r.s.Transmit(d); return nil })
	if err == nil && n < len(d) {
		err = fmt.Errorf("TX ring took %d of %d descriptors", n, len(d))
	}
	if err != nil {
		return err
	}
	// In copy mode one sendto sends at most 32 descriptors and returns
	// EAGAIN, which asavie does not report: wake the kernel until the ring
	// is empty or it stops making progress.
	return r.Kick()
}

// maxKicks bounds the wake-ups of one Kick: 64 descriptors in copy mode
// take two, and a stalled device must not hold the worker.
const maxKicks = 4

func (r *asavieRings) Kick() error {
	for range maxKicks {
		if r.TxQueued() == 0 {
			return nil
		}
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(r.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0, unix.EAGAIN, unix.EINTR:
		case unix.EBUSY, unix.ENOBUFS:
			return nil // the kernel is busy or out of buffers: next batch
		default:
			return fmt.Errorf("sendto on AF_XDP socket: %w", e)
		}
	}
	return nil
}

func (r *asavieRings) Complete(out []uint64) int {
	c := &r.comp
	cons := *c.cons
	prod := atomic.LoadUint32(c.prod)
	n := min(int(prod-cons), len(out))
	for i := range n {
		out[i] = c.descs[(cons+uint32(i))&c.mask]
	}
	atomic.StoreUint32(c.cons, cons+uint32(n))
	return n
}

func (r *asavieRings) Wait(timeoutMs int) error {
	pfd := [1]unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
	_, err := unix.Poll(pfd[:], timeoutMs)
	if err == unix.EINTR {
		return nil
	}
	return err
}

func (r *asavieRings) BusyPoll() error {
	_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(r.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EINTR, unix.EBUSY:
		return nil
	}
	return fmt.Errorf("recvfrom on AF_XDP socket: %w", e)
}

func (r *asavieRings) Close() error {
	var errs []error
	if r.comp.mem != nil {
		errs = append(errs, unix.Munmap(r.comp.mem))
		r.comp.mem = nil
	}
	if r.s != nil {
		// asavie's Close leaves the fill, RX and TX ring mappings in place
		// (a few pages per socket, once per run); the UMEM is unmapped.
		errs = append(errs, guard(r.s.Close))
		r.s, r.fd = nil, -1
	}
	return errors.Join(errs...)
}
