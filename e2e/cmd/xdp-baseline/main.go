// Command xdp-baseline is the baseline of the wire benchmark (issue #3,
// e2e/bench): the least a program can do to forward packets over AF_XDP —
// receive a batch, rewrite the Ethernet addresses, transmit it from the
// same UMEM frames — so that xlb's cost can be read against it.
//
// It drives xlb's own RxXDP and TxXDP elements directly (Provision, Pull,
// Push, EndBatch), without the pipeline engine and without any of the
// default graph's elements (parse, conntrack, Maglev, encapsulation). So
// the socket layer (xlb's XDP program, the frame accounting, the TX ring
// handling) is identical in both measurements, and xlb minus the baseline
// is exactly the cost of the pipeline. The socket wrapper lives in
// elements/xdp/internal, which Go does not let this directory import;
// the elements are its public face.
//
// Departure from the "swap MACs": a swap would send each frame
// back to the generator's own address, where the kernel delivers it to
// the IP stack, while xlb's frames go to the next hop. TxXDP instead writes
// source = the interface's MAC and destination = the gateway's, the same
// twelve-byte write, so both programs hand the sink identical work.
//
// Run it as root inside the namespace of -iface, pinned with taskset: the
// receive loop runs on a locked OS thread bound to the first CPU of the
// process's affinity mask, as xlbd pins its worker 0. With -queues N it
// runs N such loops, loop i on queue -queue+i and on the i-th CPU of the
// mask, as xlbd's N workers. It runs until SIGINT or SIGTERM, then prints
// the elements' counters.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/xdp"
	"github.com/xlbproject/xlb/internal/affinity"
	"github.com/xlbproject/xlb/pipeline"
)

// Ready is printed on stderr once the socket is bound and the next hop
// resolved; e2e/bench waits for it.
const Ready = "xdp-baseline: running"

type addrList []netip.Addr

func (a *addrList) String() string { return fmt.Sprint(*a) }

func (a *addrList) Set(s string) error {
	v, err := netip.ParseAddr(s)
	if err != nil {
		return err
	}
	*a = append(*a, v)
	return nil
}

func main() {
	var vips addrList
	// RxXDP's own defaults, so that both systems get the same socket.
	rx := &xdp.RxXDP{Mode: "native", Receive: "poll", Queue: 0, Frames: xdp.DefaultFrames, FrameSize: 4096, PollTimeout: "10ms"}
	tx := &xdp.TxXDP{}
	flag.StringVar(&rx.Interface, "iface", "", "interface to receive from and transmit on (required)")
	flag.Var(&vips, "vip", "destination address whose packets the XDP program redirects to the socket (repeatable, required)")
	flag.StringVar(&tx.Gateway, "gateway", "", "next hop whose MAC becomes the destination address (required)")
	flag.StringVar(&rx.Mode, "mode", rx.Mode, `XDP attach mode: "native" or "generic"`)
	flag.StringVar(&rx.Receive, "receive", rx.Receive, `"poll" (sleep in poll(2) when idle) or "busy"`)
	flag.IntVar(&rx.Queue, "queue", rx.Queue, "RX queue (of the first loop)")
	queues := flag.Int("queues", 1, "RX queues, one loop each on its own CPU")
	flag.IntVar(&rx.Frames, "frames", rx.Frames, "UMEM frames")
	flag.IntVar(&rx.FrameSize, "frame-size", rx.FrameSize, "bytes per UMEM frame, 2048 or 4096")
	flag.IntVar(&rx.RxRing, "rx-ring", rx.RxRing, "RX and fill ring descriptors (default frames/2)")
	flag.IntVar(&rx.TxRing, "tx-ring", rx.TxRing, "TX and completion ring descriptors (default frames/2)")
	flag.IntVar(&rx.Batch, "batch", rx.Batch, "packets a receive takes at most (default 64)")
	flag.StringVar(&rx.BusyPoll, "busy-poll", rx.BusyPoll, `busy polling per receive, such as "50us" (default off)`)
	flag.StringVar(&rx.PollTimeout, "poll-timeout", rx.PollTimeout, "longest wait in poll mode")
	flag.Parse()
	if rx.Interface == "" || tx.Gateway == "" || len(vips) == 0 || *queues < 1 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	tx.Interface = rx.Interface
	if err := run(rx, tx, *queues, vips, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "xdp-baseline:", err)
		os.Exit(1)
	}
}

// run forwards with queues loops: rx and tx configure them, loop i
// receiving from queue rx.Queue+i.
func run(rx *xdp.RxXDP, tx *xdp.TxXDP, queues int, vips []netip.Addr, stdout, stderr io.Writer) (err error) {
	for _, v := range []pipeline.Validator{rx, tx} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	// The XDP program redirects the packets addressed to the snapshot's
	// VIPs; nothing else of the snapshot is read.
	vs := make([]snapshot.VIP, len(vips))
	for i, a := range vips {
		vs[i] = snapshot.VIP{Name: fmt.Sprint("vip", i), Addr: a}
	}
	store := snapshot.NewStore(snapshot.New(1, 0, vs, nil))

	var stop atomic.Bool
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		stop.Store(true)
	}()

	cpus, err := affinity.Mask()
	if err != nil {
		return err
	}
	// Loop i on the i-th CPU of the mask, as xlbd's worker i.
	// One Context per loop for both its elements, so that TxXDP finds the
	// loop's RxXDP's socket; all of them share the interface's program.
	ctxs := pipeline.NewContexts("rx", queues, snapshot.ContextValues(store))
	loops := make([]*loop, queues)
	for i := range loops {
		ctxs[i].Logger = slog.New(slog.NewTextHandler(stderr, nil))
		loops[i] = &loop{ctx: ctxs[i], rx: newRx(rx, rx.Queue+i), tx: &xdp.TxXDP{Interface: tx.Interface, Gateway: tx.Gateway}}
	}
	defer func() {
		// Before Cleanup, which closes the sockets the kernel's counters
		// are read from.
		for _, l := range loops {
			printStats(stdout, l.drops, l.rx, l.tx)
		}
		for _, l := range loops {
			if l.provisioned {
				err = errors.Join(err, l.tx.Cleanup(), l.rx.Cleanup())
			}
		}
	}()
	var provisioned, done sync.WaitGroup
	errs := make([]error, queues)
	provisioned.Add(queues)
	done.Add(queues)
	for i, l := range loops {
		go func() {
			defer done.Done()
			errs[i] = l.run(cpus[i%len(cpus)], &stop, provisioned.Done)
			if errs[i] != nil {
				stop.Store(true)
			}
		}()
	}
	provisioned.Wait()
	if !stop.Load() {
		fmt.Fprintf(stderr, "%s on %s queues %d-%d, %s mode, %s receive\n", Ready, rx.Interface, rx.Queue, rx.Queue+queues-1, rx.Mode, rx.Receive)
	}
	done.Wait()
	return errors.Join(errs...)
}

// newRx is an RxXDP configured as rx, on queue.
func newRx(rx *xdp.RxXDP, queue int) *xdp.RxXDP {
	return &xdp.RxXDP{Interface: rx.Interface, Mode: rx.Mode, Receive: rx.Receive, Queue: queue, Frames: rx.Frames,
		FrameSize: rx.FrameSize, RxRing: rx.RxRing, TxRing: rx.TxRing, Batch: rx.Batch, BusyPoll: rx.BusyPoll, PollTimeout: rx.PollTimeout}
}

// loop is one queue's forwarding loop.
type loop struct {
	ctx         *pipeline.Context
	rx          *xdp.RxXDP
	tx          *xdp.TxXDP
	drops       *pipeline.DropCounter // TxXDP's drops, counted here as the engine would count them
	provisioned bool
}

// run provisions the loop's elements and forwards until stop, on one
// locked thread pinned to cpu: the socket is bound there and the loop is
// the thread the benchmark measures. It calls ready once provisioned or
// failed.
func (l *loop) run(cpu int, stop *atomic.Bool, ready func()) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := l.provision(cpu)
	ready()
	if err != nil {
		return err
	}
	var b pipeline.Batch
	for !stop.Load() {
		b.Reset()
		if err := l.rx.Pull(&b); err != nil {
			return err
		}
		if b.N == 0 {
			continue
		}
		l.tx.StartBatch(b.Now)
		for _, p := range b.Pkts[:b.N] {
			if l.tx.Push(0, p) == pipeline.Drop {
				l.drops.Drop(p)
			}
		}
		l.tx.EndBatch()
	}
	return nil
}

func (l *loop) provision(cpu int) error {
	if err := affinity.Pin(cpu); err != nil {
		return err
	}
	l.drops = l.ctx.DropCounter()
	l.provisioned = true
	if err := l.rx.Provision(l.ctx); err != nil {
		return err
	}
	l.ctx.Name = "tx"
	return l.tx.Provision(l.ctx)
}

// printStats prints the elements' counters and the drops, one
// "name{labels} value" a line, leaving out zeros.
func printStats(w io.Writer, drops *pipeline.DropCounter, reporters ...pipeline.StatsReporter) {
	for r, name := range pipeline.Reasons() {
		if n := drops.Count(pipeline.Reason(r)); n != 0 {
			fmt.Fprintf(w, "%s{element=\"tx\",reason=%q} %d\n", pipeline.DropMetric, name, n)
		}
	}
	for _, r := range reporters {
		r.Stats(func(m pipeline.Metric) {
			if m.Value == 0 {
				return
			}
			ls := make([]string, len(m.Labels))
			for i, l := range m.Labels {
				ls[i] = fmt.Sprintf("%s=%q", l.Name, l.Value)
			}
			fmt.Fprintf(w, "%s{%s} %d\n", m.Name, strings.Join(ls, ","), m.Value)
		})
	}
}
