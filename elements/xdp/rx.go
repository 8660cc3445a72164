package xdp

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/xdp/internal/xdpprog"
	"github.com/xlbproject/xlb/elements/xdp/internal/xsk"
	"github.com/xlbproject/xlb/internal/ethtool"
	"github.com/xlbproject/xlb/pipeline"
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "RxXDP",
		Doc:     "Receives the packets addressed to a VIP from an interface's RX queue over AF_XDP; everything else goes to the kernel.",
		Outputs: []string{"out"},
		New: func() pipeline.Element {
			return &RxXDP{Mode: "native", Receive: "poll", Queue: -1, Frames: DefaultFrames, FrameSize: 4096, PollTimeout: "10ms"}
		},
	})
}

// DefaultFrames is frames' default, and so the RX ring's (half of it):
// on the wire bench (docs/benchmarks.md) an RX ring of 8192 descriptors,
// 40 ms at 200,000 packets a second, cut the packets the kernel dropped
// with the ring full by an order of magnitude against 2048, for xlb and the
// raw forwarder alike, whenever another task took the worker's CPU for a
// few milliseconds. 64 MiB of locked memory a worker at 4096-byte frames.
const DefaultFrames = 16384

// epoch is the origin of the batch clock: monotonic, shared by every
// worker so their timestamps compare.
var epoch = time.Now()

// RxXDP is the AF_XDP source of one worker. Exported fields are its HCL
// configuration.
type RxXDP struct {
	Interface   string `hcl:"interface" doc:"the interface to receive from, in xlbd's network namespace"`
	Mode        string `hcl:"mode,optional" doc:"XDP attach mode: \"native\" (the driver runs the program) or \"generic\" (the kernel's SKB path, for drivers without XDP support)"`
	Receive     string `hcl:"receive,optional" doc:"\"poll\" waits in poll(2) for packets; \"busy\" spins on the RX ring (a core at 100%, lower latency)"`
	Queue       int    `hcl:"queue,optional" doc:"the RX queue to bind; -1 is the worker's index"`
	Frames      int    `hcl:"frames,optional" doc:"UMEM frames per worker, a power of two"`
	FrameSize   int    `hcl:"frame_size,optional" doc:"bytes per UMEM frame, 2048 or 4096 (256 of them headroom)"`
	RxRing      int    `hcl:"rx_ring,optional" doc:"descriptors of the RX and fill rings, a power of two from 64 to frames/2 (default frames/2): what the kernel can hold for the worker while it is away, a millisecond per thousand at a million packets a second"`
	TxRing      int    `hcl:"tx_ring,optional" doc:"descriptors of the TX and completion rings, a power of two from 128 to frames/2 (default frames/2)"`
	BusyPoll    string `hcl:"busy_poll,optional" doc:"busy polling (SO_BUSY_POLL, SO_PREFER_BUSY_POLL, SO_BUSY_POLL_BUDGET = batch, set on the socket: no sysctl): each receive first runs the queue's NAPI poll on the worker's thread, for up to this long (\"10us\" to \"1ms\"), instead of waiting for the softirq; default off"`
	Batch       int    `hcl:"batch,optional" doc:"packets a receive takes from the RX ring at most, 1 to 64 (default 64)"`
	PollTimeout string `hcl:"poll_timeout,optional" doc:"how long a poll waits before the worker runs an empty batch (its timers), a duration from 1ms to 1s"`
	SYNRate     int    `hcl:"syn_rate,optional" doc:"TCP SYNs to a VIP the XDP program lets through to this worker's socket per second; those above are dropped before they take a slot of the RX ring, so that a SYN flood the worker cannot keep up with does not make the kernel drop established connections' packets with the flood's (counted in xlb_xdp_syn_limited_total); 0: no limit"`
	SYNBurst    int    `hcl:"syn_burst,optional" doc:"SYNs let through at once above syn_rate; default a tenth of a second's worth, at least half the RX ring"`

	// Owned by the worker; valid after Provision.
	ifc      *iface
	acquired bool
	sock     *xsk.Socket
	owner    pipeline.FrameOwner // r itself, converted once
	queue    int
	worker   int
	busy     bool
	waitMs   int
	batch    int
	busyPoll bool
	log      *slog.Logger
	pkts     [pipeline.MaxBatch]pipeline.Packet
	descs    [pipeline.MaxBatch]xsk.Desc
	// spares are lent in a batch (pipeline.FrameSupplier), over frames
	// from the socket's reserve; lent counts them since the last Pull.
	spares [pipeline.MaxBatch]pipeline.Packet
	lent   int
	fd     atomic.Int64 // the socket, for Stats; -1 when closed
	// closedKernel is the kernel's counters of the socket read just
	// before Cleanup closed it, so that Stats still reports them (xlbd
	// prints its counters at exit, after the pipeline is closed).
	closedKernel atomic.Pointer[kernelCounters]
	sockErr      atomic.Int64 // the socket's pending error once SelfCheck saw one
	pub          rxCounters
	reported     error // the last socket error logged
	// txRingFullCounted is the socket's TxRingFull that the worker's
	// TxXDPs have counted as drops.
	txRingFullCounted uint64
}

// kernelCounters are what the kernel counts for the worker's socket and
// queue.
type kernelCounters struct {
	xsk        unix.XDPStatistics
	synLimited uint64 // SYNs the XDP program dropped over syn_rate
	otherShard uint64 // packets to another shard's VIP it passed
}

// readKernel reads the kernel's counters: a system call on the socket and
// a lookup in the program's map, safe from any goroutine while both are
// open. Once Cleanup closed them, it returns what they held before.
func (r *RxXDP) readKernel() (kernelCounters, bool) {
	var k kernelCounters
	var err error
	k.xsk, err = xsk.KernelStats(int(r.fd.Load()))
	if err == nil && r.ifc != nil {
		r.ifc.mu.Lock()
		if r.ifc.prog != nil {
			k.synLimited, err = r.ifc.prog.SYNsLimited(r.queue)
			if err == nil {
				k.otherShard, err = r.ifc.prog.OtherShardPassed(r.queue)
			}
		}
		r.ifc.mu.Unlock()
	}
	if err != nil {
		if last := r.closedKernel.Load(); last != nil {
			return *last, true
		}
		return k, false
	}
	return k, true
}

// rxCounters are published once per Pull for Stats.
type rxCounters struct {
	received, transmitted, starved, kickErrors, bad, lent atomic.Uint64
	frames                                                [xsk.NumStates]atomic.Uint64
}

func parseMode(s string) (xdpprog.Mode, bool) {
	switch s {
	case "native", "":
		return xdpprog.Native, true
	case "generic":
		return xdpprog.Generic, true
	}
	return 0, false
}

// Validate checks the configuration.
func (r *RxXDP) Validate() error {
	if r.Interface == "" {
		return &pipeline.AttrError{Attr: "interface", Msg: "must name a network interface"}
	}
	if _, ok := parseMode(r.Mode); !ok {
		return &pipeline.AttrError{Attr: "mode", Msg: `must be "native" or "generic"`}
	}
	if r.Receive != "poll" && r.Receive != "busy" {
		return &pipeline.AttrError{Attr: "receive", Msg: `must be "poll" or "busy"`}
	}
	if r.Queue < -1 || r.Queue >= xdpprog.MaxQueues {
		return &pipeline.AttrError{Attr: "queue", Msg: fmt.Sprintf("must be between 0 and %d (or omitted: the worker's index)", xdpprog.MaxQueues-1)}
	}
	if r.Frames < 2*pipeline.MaxBatch || r.Frames > 1<<20 || r.Frames&(r.Frames-1) != 0 {
		return &pipeline.AttrError{Attr: "frames", Msg: "must be a power of two between 128 and 1048576"}
	}
	if r.RxRing != 0 && (r.RxRing < 64 || r.RxRing > r.Frames/2 || r.RxRing&(r.RxRing-1) != 0) {
		return &pipeline.AttrError{Attr: "rx_ring", Msg: fmt.Sprintf("must be a power of two between 64 and half of frames (%d)", r.Frames/2)}
	}
	if r.TxRing != 0 && (r.TxRing < 2*pipeline.MaxBatch || r.TxRing > r.Frames/2 || r.TxRing&(r.TxRing-1) != 0) {
		return &pipeline.AttrError{Attr: "tx_ring", Msg: fmt.Sprintf("must be a power of two between %d and half of frames (%d)", 2*pipeline.MaxBatch, r.Frames/2)}
	}
	if r.Batch < 0 || r.Batch > pipeline.MaxBatch {
		return &pipeline.AttrError{Attr: "batch", Msg: fmt.Sprintf("must be between 1 and %d (or omitted: %d)", pipeline.MaxBatch, pipeline.MaxBatch)}
	}
	if r.SYNRate < 0 {
		return &pipeline.AttrError{Attr: "syn_rate", Msg: "must be 0 (no limit) or a number of SYNs a second"}
	}
	if r.SYNBurst < 0 {
		return &pipeline.AttrError{Attr: "syn_burst", Msg: "must be 0 (half the RX ring) or a number of SYNs"}
	}
	if r.FrameSize != 2048 && r.FrameSize != 4096 {
		return &pipeline.AttrError{Attr: "frame_size", Msg: "must be 2048 or 4096"}
	}
	d, err := time.ParseDuration(r.PollTimeout)
	if err != nil || d < time.Millisecond || d > time.Second {
		return &pipeline.AttrError{Attr: "poll_timeout", Msg: `must be a duration between "1ms" and "1s"`}
	}
	if _, err := r.busyPollUs(); err != nil {
		return err
	}
	return nil
}

// busyPollUs is busy_poll in microseconds, 0 when off.
func (r *RxXDP) busyPollUs() (int, error) {
	if r.BusyPoll == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.BusyPoll)
	if err != nil || d < 10*time.Microsecond || d > time.Millisecond {
		return 0, &pipeline.AttrError{Attr: "busy_poll", Msg: `must be a duration between "10us" and "1ms" (or omitted: off)`}
	}
	return int(d / time.Microsecond), nil
}

// SuggestWorkers suggests one worker per RX queue the interface uses (not
// per queue it allocated: a socket cannot bind to an inactive one).
func (r *RxXDP) SuggestWorkers() (int, error) {
	return ethtool.RxQueues(r.Interface)
}

// Provision attaches the interface's program (first worker only), opens
// this worker's socket on its queue and registers it with the program.
func (r *RxXDP) Provision(ctx *pipeline.Context) error {
	r.fd.Store(-1)
	if err := r.Validate(); err != nil {
		return err
	}
	st, err := snapshot.FromContext(ctx)
	if err != nil {
		return err
	}
	mode, _ := parseMode(r.Mode)
	d, _ := time.ParseDuration(r.PollTimeout)
	r.log, r.worker = ctx.Logger, ctx.Worker
	r.busy, r.waitMs = r.Receive == "busy", int(d/time.Millisecond)
	r.batch = cmp.Or(r.Batch, pipeline.MaxBatch)
	busyUs, _ := r.busyPollUs()
	r.busyPoll = busyUs > 0
	r.queue = r.Queue
	if r.queue < 0 {
		r.queue = ctx.Worker
	}
	r.owner = r

	r.ifc = ctx.Shared(ifaceKey{r.Interface}, func() any { return &iface{name: r.Interface} }).(*iface)
	ctx.Shared(pipeline.NeighborKey{Interface: r.Interface}, func() any { return r.ifc })
	ctx.Shared(pipeline.ReplySteerKey{Interface: r.Interface}, func() any { return r.ifc })
	if err := r.ifc.acquire(mode, st, r.log); err != nil {
		return err
	}
	r.acquired = true

	r.ifc.mu.Lock()
	other := r.ifc.rx[r.worker]
	r.ifc.mu.Unlock()
	if other != nil {
		return fmt.Errorf("worker %d already has an RxXDP on %s; use one per interface", r.worker, r.Interface)
	}
	r.sock, err = xsk.Open(r.ifc.index, r.queue, xsk.Options{Frames: r.Frames, FrameSize: r.FrameSize,
		RxRing: r.RxRing, TxRing: r.TxRing, TxBatch: 2 * pipeline.MaxBatch, BusyPoll: busyUs, BusyPollBudget: r.batch})
	if err != nil {
		return fmt.Errorf("%s: %w", r.Interface, err)
	}
	r.fd.Store(int64(xsk.FD(r.sock)))
	r.ifc.mu.Lock()
	err = r.ifc.prog.Register(r.queue, xsk.FD(r.sock))
	if err == nil {
		r.ifc.rx[r.worker] = r
		// SYNs reach the program in bursts however evenly they were
		// sent, whenever the CPUs on their path are busy elsewhere: the
		// default burst is wide enough for those not to be mistaken for
		// a rate above the limit.
		err = r.ifc.prog.SetSYNLimit(r.queue, r.SYNRate, cmp.Or(r.SYNBurst, max(r.SYNRate/10, cmp.Or(r.RxRing, r.Frames/2)/2)))
	}
	r.ifc.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s queue %d: %w", r.Interface, r.queue, err)
	}
	// The reserve is what one batch may lend (see Spare): frames kept
	// off the fill ring and replenished from completions, so that an
	// element emitting one more packet (an outer fragment) finds one
	// even while the kernel holds every other frame to receive into.
	r.sock.SetReserve(pipeline.MaxBatch)
	if err := r.sock.Refill(); err != nil {
		return err
	}
	zc, _ := xsk.ZeroCopy(r.sock)
	copyMode := "copy"
	if zc {
		copyMode = "zero-copy"
	}
	r.log.Info("AF_XDP socket bound", "interface", r.Interface, "queue", r.queue, "frames", r.Frames,
		"rx_ring", cmp.Or(r.RxRing, r.Frames/2), "tx_ring", cmp.Or(r.TxRing, r.Frames/2), "mode", copyMode)
	return nil
}

// Pull receives up to MaxBatch packets. In poll mode it waits up to
// poll_timeout for the first one and returns an empty batch when none
// came, so that timers downstream still run; in busy mode it never waits.
func (r *RxXDP) Pull(b *pipeline.Batch) error {
	s := r.sock
	r.lent = 0
	s.Reap()
	if err := s.Refill(); err != nil {
		return fmt.Errorf("%s: fill ring: %w", r.Interface, err)
	}
	if r.busyPoll {
		// Moves the queue's receive processing (the XDP program, the copy
		// into the UMEM) to this thread, ahead of the softirq. Its
		// errors are the socket's, which SelfCheck reports.
		_ = s.Rings().BusyPoll()
	}
	n, err := s.Receive(r.descs[:r.batch])
	if err == nil && n == 0 && !r.busy {
		if err := s.Rings().Wait(r.waitMs); err != nil {
			return fmt.Errorf("%s: poll: %w", r.Interface, err)
		}
		n, err = s.Receive(r.descs[:r.batch])
	}
	if err != nil {
		return fmt.Errorf("%s: RX ring: %w", r.Interface, err)
	}
	now := int64(time.Since(epoch))
	b.Now = now
	for i := range n {
		d := r.descs[i]
		base := s.Base(d.Addr)
		start := int(d.Addr - base)
		p := &r.pkts[i]
		p.Owner, p.Handle = r.owner, base
		p.SetFrame(s.Frame(base), start, start+int(d.Len))
		p.Time = now
		b.Add(p, 0)
	}
	r.publish()
	return nil
}

// MaxWait is the longest a Pull waits for packets: poll_timeout in poll
// mode, nothing in busy mode.
func (r *RxXDP) MaxWait() time.Duration {
	if r.busy {
		return 0
	}
	return time.Duration(r.waitMs) * time.Millisecond
}

// SelfCheck reports a socket the kernel marked failed (the interface went
// away, say) or no longer registered with the program, and (worker 0's
// RxXDP, which every interface has) a program detached or replaced behind
// xlbd's back. It runs on the self-check's goroutine: it reads the socket's
// descriptor and the shared interface, never the worker's rings.
func (r *RxXDP) SelfCheck() error {
	if !r.acquired {
		return fmt.Errorf("%s: not provisioned", r.Interface)
	}
	fd := r.fd.Load()
	if fd < 0 {
		return fmt.Errorf("%s queue %d: the AF_XDP socket is closed", r.Interface, r.queue)
	}
	if e := r.sockErr.Load(); e != 0 {
		return fmt.Errorf("%s queue %d: the AF_XDP socket failed: %w", r.Interface, r.queue, syscall.Errno(e))
	}
	// SO_ERROR is cleared by reading it: kept, so that a failed socket
	// fails every check after the first.
	if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		if err != nil {
			return fmt.Errorf("%s queue %d: the AF_XDP socket: %w", r.Interface, r.queue, err)
		}
		r.sockErr.Store(int64(e))
		return fmt.Errorf("%s queue %d: the AF_XDP socket failed: %w", r.Interface, r.queue, syscall.Errno(e))
	}
	r.ifc.mu.Lock()
	registered := r.ifc.rx[r.worker] == r
	r.ifc.mu.Unlock()
	if !registered {
		return fmt.Errorf("%s queue %d: the AF_XDP socket is not registered with the XDP program", r.Interface, r.queue)
	}
	if r.worker == 0 {
		return r.ifc.selfCheck()
	}
	return nil
}

// Spare lends an empty packet in a free UMEM frame, sent in place by a
// TxXDP on this socket like a received one, or returns nil when the batch
// lent MaxBatch or the socket has no free frame (the reserve is spent and
// no completion came back).
func (r *RxXDP) Spare() *pipeline.Packet {
	if r.lent == len(r.spares) {
		return nil
	}
	base, ok := r.sock.Lend()
	if !ok {
		return nil
	}
	p := &r.spares[r.lent]
	r.lent++
	p.Owner, p.Handle = r.owner, base
	p.SetFrame(r.sock.Frame(base), xsk.Headroom, xsk.Headroom)
	return p
}

// Recycle returns a packet's frame to the free list (and so to the fill
// ring at the next Pull).
func (r *RxXDP) Recycle(p *pipeline.Packet) { r.sock.Recycle(p.Handle) }

// publish copies the socket's counters (shared by this worker's RxXDP and
// TxXDP) for Stats.
func (r *RxXDP) publish() {
	s := r.sock
	c := &s.C
	r.pub.received.Store(c.Received)
	r.pub.transmitted.Store(c.Transmitted)
	r.pub.starved.Store(c.FillStarved)
	r.pub.kickErrors.Store(c.KickErrors)
	r.pub.lent.Store(c.Lent)
	r.pub.bad.Store(c.BadDescs + c.BadRecycles + c.BadTxBounds)
	for st := range xsk.NumStates {
		r.pub.frames[st].Store(uint64(s.Count(st)))
	}
	if s.LastErr != nil && s.LastErr != r.reported {
		r.reported = s.LastErr
		r.log.Warn("AF_XDP transmit wake-up failed", "interface", r.Interface, "queue", r.queue, "err", s.LastErr)
	}
}

var (
	_ pipeline.SelfChecker = (*RxXDP)(nil)
	_ pipeline.PollWaiter  = (*RxXDP)(nil)
)

var frameStates = [xsk.NumStates]string{"free", "fill", "rx", "queued", "tx"}

// Stats reports the socket's counters, its frames by state and the
// kernel's own counters for the socket.
func (r *RxXDP) Stats(emit func(pipeline.Metric)) {
	q := []pipeline.Label{{Name: "interface", Value: r.Interface}, {Name: "queue", Value: fmt.Sprint(r.queue)}}
	c := func(name, help string, v uint64) {
		emit(pipeline.Metric{Name: name, Help: help, Labels: q, Value: v})
	}
	c("xlb_xdp_rx_packets_total", "Packets received from the AF_XDP socket.", r.pub.received.Load())
	c("xlb_xdp_tx_ring_packets_total", "Descriptors put on the AF_XDP TX ring.", r.pub.transmitted.Load())
	c("xlb_xdp_fill_starved_total", "Receive attempts while the kernel held no frame to receive into.", r.pub.starved.Load())
	c("xlb_xdp_spare_frames_total", "Spare frames lent to elements that emit more packets than they receive (outer fragments).", r.pub.lent.Load())
	c("xlb_xdp_kick_errors_total", "Failed transmit wake-ups (sendto); the descriptors stay queued.", r.pub.kickErrors.Load())
	c("xlb_xdp_accounting_errors_total", "Frames handed back twice or described out of bounds (a bug).", r.pub.bad.Load())
	if r.worker == 0 && r.ifc != nil {
		// The interface's, reported once: by worker 0, which has an
		// RxXDP on every interface any worker has.
		l := q[:1:1]
		emit(pipeline.Metric{Name: "xlb_xdp_vip_syncs_total", Help: "Updates of the XDP VIP maps after a publication of the snapshot.", Labels: l, Value: r.ifc.vipSyncs.Load()})
		emit(pipeline.Metric{Name: "xlb_xdp_vip_sync_errors_total", Help: "Failed updates of the XDP VIP maps.", Labels: l, Value: r.ifc.vipSyncErrors.Load()})
	}
	for st, name := range frameStates {
		emit(pipeline.Metric{Name: "xlb_xdp_frames", Help: "UMEM frames by owner.", Gauge: true,
			Labels: append(q[:2:2], pipeline.Label{Name: "state", Value: name}), Value: r.pub.frames[st].Load()})
	}
	if k, ok := r.readKernel(); ok {
		ks := &k.xsk
		c("xlb_xdp_kernel_rx_dropped_total", "Packets the kernel dropped for this socket (XDP_STATISTICS rx_dropped).", ks.Rx_dropped)
		c("xlb_xdp_kernel_rx_ring_full_total", "Packets the kernel dropped with the RX ring full.", ks.Rx_ring_full)
		c("xlb_xdp_kernel_fill_ring_empty_total", "Times the kernel found the fill ring empty.", ks.Rx_fill_ring_empty_descs)
		c("xlb_xdp_kernel_tx_invalid_total", "TX descriptors the kernel rejected.", ks.Tx_invalid_descs)
		c("xlb_xdp_syn_limited_total", "TCP SYNs to a VIP the XDP program dropped over syn_rate, before the RX ring.", k.synLimited)
		c("xlb_xdp_other_shard_passed_total", "Packets to another shard's VIP the XDP program passed to the kernel (this node does not serve the VIP).", k.otherShard)
	}
}

// Cleanup unregisters and closes the socket and, for the last worker on
// the interface, detaches the program. It works after a partial
// Provision.
func (r *RxXDP) Cleanup() error {
	var errs []error
	if r.sock != nil {
		if k, ok := r.readKernel(); ok {
			r.closedKernel.Store(&k)
		}
		r.fd.Store(-1)
		r.ifc.mu.Lock()
		if r.ifc.rx[r.worker] == r {
			delete(r.ifc.rx, r.worker)
			if err := r.ifc.prog.Unregister(r.queue); err != nil {
				errs = append(errs, fmt.Errorf("unregistering queue %d: %w", r.queue, err))
			}
		}
		r.ifc.mu.Unlock()
		errs = append(errs, r.sock.Close())
		r.sock = nil
	}
	if r.acquired {
		r.acquired = false
		errs = append(errs, r.ifc.release())
	}
	return errors.Join(errs...)
}

var (
	_ pipeline.Source          = (*RxXDP)(nil)
	_ pipeline.Validator       = (*RxXDP)(nil)
	_ pipeline.Provisioner     = (*RxXDP)(nil)
	_ pipeline.Cleaner         = (*RxXDP)(nil)
	_ pipeline.StatsReporter   = (*RxXDP)(nil)
	_ pipeline.FrameOwner      = (*RxXDP)(nil)
	_ pipeline.WorkerSuggester = (*RxXDP)(nil)
	_ pipeline.FrameSupplier   = (*RxXDP)(nil)
)
