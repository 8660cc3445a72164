// Command xlb-backend is a lab backend: run it in a backend's network
// namespace. It decapsulates GRE and IPIP packets arriving on -iface into a
// TUN device holding the VIPs, and answers HTTP on each VIP with its name
// (body "<name>\n", header X-Backend). Replies leave by the default route,
// straight to the client. It prints its counters as JSON when it stops
// (SIGTERM or SIGINT), and serves them on the -stats Unix socket.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/xlbproject/xlb/e2e/backend"
)

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
	var cfg backend.Config
	var vips addrList
	flag.StringVar(&cfg.Name, "name", "", "backend name, answered to every request (required)")
	flag.StringVar(&cfg.Iface, "iface", "eth0", "interface receiving encapsulated packets")
	flag.StringVar(&cfg.Tun, "tun", "tun0", "TUN device to create for the VIPs")
	flag.Var(&vips, "vip", "virtual IP (IPv4 or IPv6) to hold and serve; repeatable, at least one")
	flag.IntVar(&cfg.Port, "listen", 80, "HTTP port")
	flag.BoolVar(&cfg.Real, "real", true, "also serve HTTP on -iface's own addresses (health checks)")
	flag.StringVar(&cfg.Stats, "stats", "", "Unix socket path serving GET /stats as JSON; created once ready")
	flag.Parse()
	cfg.VIPs = vips

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	st, err := backend.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlb-backend:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(st)
}
