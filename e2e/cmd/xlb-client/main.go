// Command xlb-client is the lab's HTTP client: run it in the client's
// network namespace (Go's HTTP client dials from goroutines on other OS
// threads, so the whole process must be in the namespace). It sends -n GET
// requests to -url, each on a new TCP connection (so a new source port and
// flow) with -c in parallel, or, with -keepalive, all over one connection,
// and prints a JSON summary: requests ok and failed, responses per backend
// (X-Backend header), errors by kind, connections and source ports used.
// It exits 1 if any request failed.
//
// With -hold N it holds N long-lived keep-alive connections instead,
// spread over -targets, each sending a request every -interval for -for
// (or until SIGINT/SIGTERM), and prints a client.HoldSummary as JSON:
// connections alive and dead, answers, errors, connections that moved to
// another backend, connections per backend, the longest stall. It exits 1
// if a connection died or moved.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/e2e/client"
)

func main() {
	var cfg client.Config
	flag.StringVar(&cfg.URL, "url", "http://10.90.100.10/", "URL to request (the VIP)")
	flag.IntVar(&cfg.Requests, "n", 100, "number of requests")
	flag.IntVar(&cfg.Concurrency, "c", 8, "parallel requests, each on its own new connection")
	flag.BoolVar(&cfg.KeepAlive, "keepalive", false, "send all requests in sequence over one keep-alive connection")
	flag.DurationVar(&cfg.Timeout, "timeout", 0, "per-request timeout (default 5s; with -hold 30s)")
	hold := flag.Int("hold", 0, "hold this many long-lived connections instead (see -targets, -interval, -for)")
	targets := flag.String("targets", "10.90.100.10:80", "with -hold: comma-separated addr:port list the connections are spread over")
	interval := flag.Duration("interval", 100*time.Millisecond, "with -hold: time between requests on a connection")
	dur := flag.Duration("for", 10*time.Second, "with -hold: how long to hold the connections")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if *hold > 0 {
		os.Exit(runHold(ctx, enc, *hold, *targets, *interval, *dur, cfg.Timeout))
	}
	s, err := client.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlb-client:", err)
		os.Exit(2)
	}
	_ = enc.Encode(s)
	if s.Failed > 0 {
		os.Exit(1)
	}
}

func runHold(ctx context.Context, enc *json.Encoder, n int, targets string, interval, dur, timeout time.Duration) int {
	opts := client.HoldOptions{Conns: n, Interval: interval, Timeout: timeout}
	for _, t := range strings.Split(targets, ",") {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(t))
		if err != nil {
			fmt.Fprintln(os.Stderr, "xlb-client: -targets:", err)
			return 2
		}
		opts.Targets = append(opts.Targets, ap)
	}
	h, err := client.Hold(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlb-client:", err)
		return 2
	}
	select {
	case <-ctx.Done():
	case <-time.After(dur):
	}
	s := h.Stop()
	fmt.Fprintln(os.Stderr, "xlb-client:", s.Summary)
	_ = enc.Encode(s.Summary)
	if s.Summary.Dead > 0 || s.Summary.Moved > 0 {
		return 1
	}
	return 0
}
