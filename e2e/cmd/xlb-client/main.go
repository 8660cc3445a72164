// Command xlb-client is the lab's HTTP client: run it in the client's
// network namespace (Go's HTTP client dials from goroutines on other OS
// threads, so the whole process must be in the namespace). It sends -n GET
// requests to -url, each on a new TCP connection (so a new source port and
// flow) with -c in parallel, or, with -keepalive, all over one connection,
// and prints a JSON summary: requests ok and failed, responses per backend
// (X-Backend header), errors by kind, connections and source ports used.
// It exits 1 if any request failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/xlbproject/xlb/e2e/client"
)

func main() {
	var cfg client.Config
	flag.StringVar(&cfg.URL, "url", "http://10.90.100.10/", "URL to request (the VIP)")
	flag.IntVar(&cfg.Requests, "n", 100, "number of requests")
	flag.IntVar(&cfg.Concurrency, "c", 8, "parallel requests, each on its own new connection")
	flag.BoolVar(&cfg.KeepAlive, "keepalive", false, "send all requests in sequence over one keep-alive connection")
	flag.DurationVar(&cfg.Timeout, "timeout", 0, "per-request timeout (default 5s)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := client.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlb-client:", err)
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s)
	if s.Failed > 0 {
		os.Exit(1)
	}
}
