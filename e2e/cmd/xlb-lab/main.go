// Command xlb-lab brings the network-namespace lab up for a person to look
// around in: it builds the topology, starts xlb-backend in every backend
// namespace, prints the namespaces and a few commands to try, and tears
// everything down on Ctrl-C or SIGTERM. Run it as root. With -bgp the
// router runs BIRD and learns the VIPs from the LB nodes (a cluster, as
// docs/cluster.md describes). With -sweep it only removes namespaces left
// by killed runs.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/xlbproject/xlb/e2e/lab"
)

func main() {
	lbs := flag.Int("lbnodes", 1, "number of LB nodes")
	backends := flag.String("backends", "be1,be2,be3", "comma-separated backend names")
	six := flag.Bool("6", true, "IPv6 addresses and VIP too")
	mtu := flag.Int("mtu", lab.DefaultInnerMTU, "MTU behind the router")
	bin := flag.String("backend", "", "xlb-backend binary (default: next to this one, else built with go build)")
	sweep := flag.Bool("sweep", false, "only remove namespaces left by killed runs, then exit")
	verbose := flag.Bool("v", false, "print the lab's log (backend output) on stderr")
	bgp := flag.Bool("bgp", false, "the router runs BIRD 2 and learns the VIPs from the LB nodes over eBGP (AS 65000, nodes AS 65001), instead of a static route")
	bfd := flag.Bool("bfd", false, "with -bgp: BFD on every session (100 ms x 3)")
	flag.Parse()
	var b *lab.BGP
	if *bgp {
		b = &lab.BGP{BFD: *bfd}
	}
	if err := run(*lbs, *backends, *six, *mtu, *bin, b, *sweep, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "xlb-lab:", err)
		os.Exit(1)
	}
}

func run(lbs int, backends string, six bool, mtu int, bin string, bgp *lab.BGP, sweep, verbose bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces)")
	}
	if sweep {
		removed, err := lab.Sweep()
		for _, ns := range removed {
			fmt.Println("removed", ns)
		}
		return err
	}
	if bin == "" {
		exe, _ := os.Executable()
		bin = filepath.Join(filepath.Dir(exe), "xlb-backend")
		if _, err := os.Stat(bin); err != nil {
			dir, err := os.MkdirTemp("", "xlb-lab-bin-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			bins, err := lab.Build(dir, "./e2e/cmd/xlb-backend")
			if err != nil {
				return err
			}
			bin = bins["xlb-backend"]
		}
	}
	topo := lab.Topology{LBNodes: lbs, Backends: strings.Split(backends, ","), IPv6: six, InnerMTU: mtu, BGP: bgp}
	if verbose {
		topo.Log = os.Stderr
	}
	l, err := lab.Up(topo)
	if err != nil {
		return err
	}
	defer l.Down()
	if err := l.StartBackends(bin); err != nil {
		return err
	}

	r, c := l.Router(), l.Client()
	fmt.Printf("lab %s is up (Ctrl-C tears it down)\n\n", l.Prefix())
	fmt.Printf("  %-8s %-32s %s\n", "node", "namespace", "addresses")
	fmt.Printf("  %-8s %-32s %s %s\n", "client", c.NS, c.Addr4, addr(c.Addr6))
	fmt.Printf("  %-8s %-32s %s %s (%s), %s %s (%s, MAC %s)\n", "router", r.NS,
		r.ClientAddr4, addr(r.ClientAddr6), r.ClientIface, r.BridgeAddr4, addr(r.BridgeAddr6), r.Bridge, r.BridgeMAC)
	for _, n := range append(l.LBs(), l.Backends()...) {
		fmt.Printf("  %-8s %-32s %s %s\n", n.Name, n.NS, n.Addr4, addr(n.Addr6))
	}
	fmt.Printf("\n  VIP %s %s, routed by the router to the LB node(s); backend stats: curl --unix-socket %s http://x/stats\n",
		l.VIP(), addr(l.VIP6()), l.StatsSocket(l.Backends()[0].Name))
	fmt.Printf("\n  shell:   ip netns exec %s bash\n", c.NS)
	fmt.Printf("  backend: ip netns exec %s curl -s http://%s/\n", c.NS, l.Backends()[0].Addr4)
	fmt.Printf("  via VIP: ip netns exec %s bin/xlb-client -n 100   (needs xlbd on %s)\n", c.NS, l.LB(0).NS)
	if b := l.Bird(); b != nil {
		fmt.Printf("  node i:  ip netns exec <lb i namespace> bin/xlbd run -config examples/cluster/cluster.hcl -var node=i -pin=false   (its api4 VIP needs be4: -backends be1,be2,be3,be4)\n")
		fmt.Printf("  router:  birdc -s %s show protocols; ip netns exec %s ip route show %s\n", b.Socket(), r.NS, l.VIP())
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	fmt.Println("tearing down")
	return nil
}

func addr(a interface{ IsValid() bool }) string {
	if !a.IsValid() {
		return ""
	}
	return fmt.Sprint(a)
}
