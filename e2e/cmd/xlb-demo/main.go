// Command xlb-demo is `make demo` on a machine with root: it brings up the
// network-namespace lab (e2e/README.md), starts the three backends, runs
// xlbd on the LB node with examples/lab/lab.hcl, sends HTTP requests from
// the client over many source ports and then over one connection, takes a
// backend's link down and up (xlbd's health check takes it out of the
// tables and back), prints how many each backend served at each step and
// xlbd's counters. Then, in a second lab, the cluster: three xlbd nodes
// behind the router's BIRD, which spreads the VIPs' flows over them by
// ECMP; one node is killed in the middle of 300 held connections, and
// every one of them carries on. Everything is torn down, also when
// interrupted.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/e2e/client"
	"github.com/xlbproject/xlb/e2e/lab"
)

func main() {
	xlbd := flag.String("xlbd", "bin/xlbd", "the xlbd binary")
	backendBin := flag.String("backend", "bin/xlb-backend", "the xlb-backend binary")
	clientBin := flag.String("client", "bin/xlb-client", "the xlb-client binary")
	config := flag.String("config", "examples/lab/lab.hcl", "the pipeline file xlbd runs")
	n := flag.Int("n", 300, "requests, each on a new connection")
	clusterConfig := flag.String("cluster", "examples/cluster/cluster.hcl", "the file every node of the cluster act runs (empty: no cluster act)")
	flag.Parse()
	err := run(*xlbd, *backendBin, *clientBin, *config, *n)
	if err == nil && *clusterConfig != "" {
		err = cluster(*xlbd, *backendBin, *clusterConfig)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlb-demo:", err)
		os.Exit(1)
	}
}

func run(xlbd, backendBin, clientBin, config string, n int) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, XDP)")
	}
	l, sig, err := labUp(lab.Topology{Backends: []string{"be1", "be2", "be3"}, IPv6: true}, backendBin)
	if err != nil {
		return err
	}
	defer l.Down()
	defer signal.Stop(sig)
	lb := l.LB(0)
	fmt.Printf("lab up: client %s, router, LB node %s (%s), backends be1..be3; VIP %s and %s\n",
		l.Client().Addr4, lb.Addr4, lb.Iface, l.VIP(), l.VIP6())

	x, err := l.StartXLBD(lb, xlbd, config, "-var", "interface="+lb.Iface)
	if err != nil {
		return err
	}
	fmt.Printf("xlbd is running on %s in %s\n\n", lb.Iface, lb.NS)

	type run struct {
		what string
		args []string
	}
	for _, r := range []run{
		{fmt.Sprintf("%d requests to http://%s/, each on a new connection", n, l.VIP()),
			[]string{"-n", strconv.Itoa(n), "-c", "8"}},
		{fmt.Sprintf("%d requests to http://[%s]/, each on a new connection", n/3, l.VIP6()),
			[]string{"-n", strconv.Itoa(n / 3), "-c", "8", "-url", "http://[" + l.VIP6().String() + "]/"}},
		{"50 requests over one keep-alive connection", []string{"-n", "50", "-keepalive"}},
	} {
		select {
		case <-sig:
			return errors.New("interrupted")
		default:
		}
		s, err := l.RunClient(clientBin, r.args...)
		if err != nil && s.Requests == 0 {
			return err
		}
		printSummary(r.what, s)
	}
	if err := failover(l, x, clientBin, n); err != nil {
		return err
	}
	out, err := x.Stop()
	if err != nil {
		return fmt.Errorf("xlbd: %w\n%s", err, x.Log())
	}
	fmt.Println("xlbd's counters when it stopped:")
	fmt.Print(out)
	return nil
}

// labUp brings a lab up with its backends serving, and returns it with a
// channel of Ctrl-C and SIGTERM: the caller returns when one comes, so
// that its deferred Down still tears the lab down.
func labUp(topo lab.Topology, backendBin string) (*lab.Lab, chan os.Signal, error) {
	l, err := lab.Up(topo)
	if err != nil {
		return nil, nil, err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	if err := l.StartBackends(backendBin); err != nil {
		signal.Stop(sig)
		l.Down()
		return nil, nil, err
	}
	return l, sig, nil
}

// failover takes be2's link down, waits for xlbd's health check to take it
// out of the tables, shows new connections avoiding it, and brings it back.
func failover(l *lab.Lab, x *lab.XLBD, clientBin string, n int) error {
	be2, _ := l.Backend("be2")
	mark := x.LogMark()
	if err := l.SetLink(be2, false); err != nil {
		return err
	}
	fmt.Println("be2's link is down (as if its cable were pulled)")
	took, err := x.WaitLog(mark, 10*time.Second, `msg="backend unhealthy`, "backend=be2")
	if err != nil {
		return err
	}
	fmt.Printf("  xlbd's http health check marked be2 down after %v\n", took.Round(time.Millisecond))
	s, err := l.RunClient(clientBin, "-n", strconv.Itoa(n), "-c", "8")
	if err != nil && s.Requests == 0 {
		return err
	}
	printSummary(fmt.Sprintf("%d requests while be2 is down", n), s)

	mark = x.LogMark()
	if err := l.SetLink(be2, true); err != nil {
		return err
	}
	fmt.Println("be2's link is up again")
	if took, err = x.WaitLog(mark, 10*time.Second, `msg="backend healthy"`, "backend=be2"); err != nil {
		return err
	}
	fmt.Printf("  be2 passed its checks and is back after %v\n", took.Round(time.Millisecond))
	s, err = l.RunClient(clientBin, "-n", strconv.Itoa(n), "-c", "8")
	if err != nil && s.Requests == 0 {
		return err
	}
	printSummary(fmt.Sprintf("%d requests with be2 back", n), s)
	return nil
}

func printSummary(what string, s client.Summary) {
	fmt.Printf("%s: %d ok, %d failed, %d connections from %d source ports, %d ms\n",
		what, s.OK, s.Failed, s.Connections, s.SourcePorts, s.DurationMS)
	names := make([]string, 0, len(s.Backends))
	for b := range s.Backends {
		names = append(names, b)
	}
	sort.Strings(names)
	var parts []string
	for _, b := range names {
		parts = append(parts, fmt.Sprintf("%s %d (%.0f%%)", b, s.Backends[b], 100*float64(s.Backends[b])/float64(max(s.OK, 1))))
	}
	fmt.Printf("  served by: %s\n", strings.Join(parts, ", "))
	if s.FirstError != "" {
		fmt.Printf("  first error: %s\n", s.FirstError)
	}
	fmt.Println()
}
