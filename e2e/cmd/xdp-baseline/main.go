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
// process's affinity mask, as xlbd pins its worker 0. It runs until SIGINT
// or SIGTERM, then prints the elements' counters.
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
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/xdp"
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
	flag.IntVar(&rx.Queue, "queue", rx.Queue, "RX queue")
	flag.IntVar(&rx.Frames, "frames", rx.Frames, "UMEM frames")
	flag.IntVar(&rx.FrameSize, "frame-size", rx.FrameSize, "bytes per UMEM frame, 2048 or 4096")
	flag.IntVar(&rx.RxRing, "rx-ring", rx.RxRing, "RX and fill ring descriptors (default frames/2)")
	flag.IntVar(&rx.TxRing, "tx-ring", rx.TxRing, "TX and completion ring descriptors (default frames/2)")
	flag.IntVar(&rx.Batch, "batch", rx.Batch, "packets a receive takes at most (default 64)")
	flag.StringVar(&rx.BusyPoll, "busy-poll", rx.BusyPoll, `busy polling per receive, such as "50us" (default off)`)
	flag.StringVar(&rx.PollTimeout, "poll-timeout", rx.PollTimeout, "longest wait in poll mode")
	flag.Parse()
	if rx.Interface == "" || tx.Gateway == "" || len(vips) == 0 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	tx.Interface = rx.Interface
	if err := run(rx, tx, vips, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "xdp-baseline:", err)
		os.Exit(1)
	}
}

func run(rx *xdp.RxXDP, tx *xdp.TxXDP, vips []netip.Addr, stdout, stderr io.Writer) (err error) {
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

	// Provision and the loop run on one locked thread: the socket is
	// bound there and the loop is the thread the benchmark measures.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := pin(); err != nil {
		return err
	}

	// One Context for both, so TxXDP finds the RxXDP's socket.
	ctx := pipeline.NewContext("rx", 0, 1, snapshot.ContextValues(store))
	ctx.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	// TxXDP's drops, counted here as the engine would count them.
	drops := ctx.DropCounter()
	defer func() {
		// Before Cleanup, which closes the socket the kernel's counters
		// are read from.
		printStats(stdout, drops, rx, tx)
		err = errors.Join(err, tx.Cleanup(), rx.Cleanup())
	}()
	if err := rx.Provision(ctx); err != nil {
		return err
	}
	ctx.Name = "tx"
	if err := tx.Provision(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s on %s queue %d, %s mode, %s receive\n", Ready, rx.Interface, rx.Queue, rx.Mode, rx.Receive)

	var b pipeline.Batch
	for !stop.Load() {
		b.Reset()
		if err := rx.Pull(&b); err != nil {
			return err
		}
		if b.N == 0 {
			continue
		}
		tx.StartBatch(b.Now)
		for _, p := range b.Pkts[:b.N] {
			if tx.Push(0, p) == pipeline.Drop {
				drops.Drop(p)
			}
		}
		tx.EndBatch()
	}
	return nil
}

// pin binds the calling thread to the first CPU of the process's affinity
// mask, as xlbd does for its worker 0.
func pin() error {
	var allowed, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return err
	}
	for c := 0; c < len(allowed)*64; c++ {
		if allowed.IsSet(c) {
			set.Set(c)
			return unix.SchedSetaffinity(0, &set)
		}
	}
	return errors.New("no CPU in the affinity mask")
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
