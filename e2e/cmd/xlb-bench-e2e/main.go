// Command xlb-bench-e2e measures xlb forwarding on the wire against the
// AF_XDP baseline (issue #3; e2e/bench says how): it builds xlbd and
// xdp-baseline, brings up the benchmark's namespaces, runs each under
// the same trafgen load, prints a markdown table and, with -o, writes it
// to a file. Run it as root from the module (make bench-e2e):
//
//	go run ./e2e/cmd/xlb-bench-e2e [-duration 10s] [-rounds 3] [-o FILE]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/e2e/bench"
	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/elements/xdp"
	"github.com/xlbproject/xlb/internal/affinity"
)

func main() {
	o := bench.DefaultOptions()
	flag.DurationVar(&o.Duration, "duration", 10*time.Second, "measured window per system and round")
	flag.DurationVar(&o.Warmup, "warmup", 2*time.Second, "load before each window")
	flag.IntVar(&o.Rounds, "rounds", 3, "rounds, each measuring every system once, in turn")
	flag.IntVar(&o.GenCPU, "gen-cpu", o.GenCPU, "CPU for trafgen")
	flag.IntVar(&o.LBCPU, "lb-cpu", o.LBCPU, "CPU for xlbd and xdp-baseline")
	flag.StringVar(&o.Rate, "rate", "", `trafgen's rate, such as "200000pps" (default: as fast as it can)`)
	flag.StringVar(&o.Receive, "receive", "poll", `"poll" or "busy"`)
	flag.StringVar(&o.Mode, "mode", "native", `XDP attach mode: "native" or "generic"`)
	flag.IntVar(&o.Frames, "frames", xdp.DefaultFrames, "UMEM frames of the socket, both systems")
	flag.IntVar(&o.FrameSize, "frame-size", 4096, "bytes per UMEM frame, 2048 or 4096")
	flag.IntVar(&o.RxRing, "rx-ring", 0, "RX and fill ring descriptors (default frames/2)")
	flag.IntVar(&o.TxRing, "tx-ring", 0, "TX and completion ring descriptors (default frames/2)")
	flag.IntVar(&o.Batch, "batch", 0, "packets a receive takes at most (default 64)")
	flag.StringVar(&o.BusyPoll, "busy-poll", "", `busy polling per receive, such as "50us" (default off)`)
	systems := flag.String("systems", bench.Baseline+","+bench.XLB, "systems to measure, in order: "+bench.Baseline+", "+bench.XLB+", "+bench.RefXLB)
	queues := flag.String("queues", "1", "RX queue counts to measure each system at, such as 1,2: a worker per queue, the flows spread over them")
	spare := flag.String("spare-cpus", "", "CPUs xlbd may keep its threads other than the workers on, such as 0 (xlb only; default: none, all on the workers' CPUs)")
	flag.StringVar(&o.Xlbd, "xlbd", "", "xlbd binary (default: built from ./cmd/xlbd)")
	flag.StringVar(&o.XlbdRef, "xlbd-ref", "", "xlbd binary of the system "+bench.RefXLB+", such as a build of main, run as xlbd without -spare-cpus")
	flag.StringVar(&o.Baseline, "baseline", "", "xdp-baseline binary (default: built from ./e2e/cmd/xdp-baseline)")
	out := flag.String("o", "", "also write the markdown table to this file")
	verbose := flag.Bool("v", false, "print the programs' output and the lab's log on stderr")
	flag.Parse()
	o.Systems = strings.Split(*systems, ",")
	var err error
	if o.Queues, err = ints(*queues); err != nil {
		fmt.Fprintln(os.Stderr, "xlb-bench-e2e: -queues:", err)
		os.Exit(2)
	}
	if o.SpareCPUs, err = affinity.Parse(*spare); err != nil {
		fmt.Fprintln(os.Stderr, "xlb-bench-e2e: -spare-cpus:", err)
		os.Exit(2)
	}
	if *verbose {
		o.Log = os.Stderr
	}
	if err := run(o, *out); err != nil {
		fmt.Fprintln(os.Stderr, "xlb-bench-e2e:", err)
		os.Exit(1)
	}
}

func run(o bench.Options, out string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, XDP); run: sudo go run ./e2e/cmd/xlb-bench-e2e")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.Xlbd == "" || o.Baseline == "" {
		dir, err := os.MkdirTemp("", "xlb-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "building xlbd and xdp-baseline")
		bins, err := lab.Build(dir, "./cmd/xlbd", "./e2e/cmd/xdp-baseline")
		if err != nil {
			return err
		}
		if o.Xlbd == "" {
			o.Xlbd = bins["xlbd"]
		}
		if o.Baseline == "" {
			o.Baseline = bins["xdp-baseline"]
		}
	}
	fmt.Fprintf(os.Stderr, "measuring %s: %d round(s) of %v (+%v warm-up) each\n",
		strings.Join(o.Systems, ", "), max(o.Rounds, 1), o.Duration, o.Warmup)
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	md := rep.Markdown()
	fmt.Print(md)
	if out != "" {
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ints reads a comma-separated list of numbers.
func ints(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var v []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q: want numbers such as 1,2", s)
		}
		v = append(v, n)
	}
	return v, nil
}
