package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/e2e/client"
	"github.com/xlbproject/xlb/e2e/lab"
)

// cluster is the demo's second act: BIRD in the router namespace peers
// with three LB nodes, each running xlbd with config, and installs each
// VIP as one ECMP route over the nodes that announce it. 300 keep-alive
// connections (IPv4 and IPv6) ask for a page every 100 ms; one xlbd is
// killed; the router drops that node, ECMP moves its flows to the two
// others, and since every node builds the same Maglev tables, every
// connection keeps its backend.
func cluster(xlbd, backendBin, config string) error {
	fmt.Println("== the cluster: three xlb nodes behind a BGP router (BIRD 2), ECMP on the 5-tuple")
	l, sig, err := labUp(lab.Topology{LBNodes: 3, Backends: []string{"be1", "be2", "be3", "be4"}, IPv6: true, BGP: &lab.BGP{}}, backendBin)
	if err != nil {
		return err
	}
	defer l.Down()
	defer signal.Stop(sig)
	var nodes []*lab.XLBD
	var names []string
	start := time.Now()
	for i, n := range l.LBs() {
		x, err := l.StartXLBD(n, xlbd, config, "-var", "node="+strconv.Itoa(i+1), "-var", "interface="+n.Iface, "-pin=false")
		if err != nil {
			return err
		}
		nodes = append(nodes, x)
		names = append(names, fmt.Sprintf("%s %s", n.Name, n.Addr4))
	}
	fmt.Printf("xlbd runs %s on %s\n", config, strings.Join(names, ", "))
	vip4 := netip.PrefixFrom(l.VIP(), 32)
	vip6 := netip.PrefixFrom(l.VIP6(), 128)
	bird := l.Bird()
	all4, all6 := hops(l.LBs(), 4), hops(l.LBs(), 6)
	if _, err := bird.WaitNextHops(vip4, all4, 30*time.Second); err != nil {
		return err
	}
	if _, err := bird.WaitNextHops(vip6, all6, 30*time.Second); err != nil {
		return err
	}
	fmt.Printf("the router's BIRD routes %s via %s, and %s via the nodes' IPv6 addresses, %v after the first xlbd started\n",
		vip4, join(all4), vip6, time.Since(start).Round(100*time.Millisecond))

	h, err := client.Hold(client.HoldOptions{Conns: 300, Interval: 100 * time.Millisecond, Dial: l.Dialer(l.Client().NS),
		Targets: []netip.AddrPort{netip.AddrPortFrom(l.VIP(), 80), netip.AddrPortFrom(l.VIP6(), 80)}})
	if err != nil {
		return err
	}
	defer h.Stop()
	if err := sleep(sig, 2*time.Second); err != nil {
		return err
	}
	before := h.Snapshot()
	fmt.Printf("300 connections held from the client, half to each VIP, a request every 100 ms on each: %d answers so far, per backend %v\n",
		before.Summary.Answers, before.Summary.Backends)

	victim := l.LB(2)
	if err := nodes[2].Signal(syscall.SIGKILL); err != nil {
		return err
	}
	killed := time.Now()
	fmt.Printf("kill -9 xlbd on %s\n", victim.Name)
	took, err := bird.WaitNextHops(vip4, all4[:2], 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Printf("  the router dropped %s's path %v later (its BGP announcer, told its parent died, sent a Cease)\n",
		victim.Name, took.Round(time.Millisecond))
	if err := sleep(sig, 3*time.Second-time.Since(killed)); err != nil {
		return err
	}
	after := h.Stop()
	moved := 0
	for i, c := range after.Conns {
		if c.Backend() != before.Conns[i].Backend() {
			moved++
		}
	}
	sum := after.Summary
	fmt.Printf("3 s later: %d of %d connections alive, %d errors, %d changed backend, longest wait for an answer %v\n",
		sum.Alive, sum.Conns, sum.Errors, moved, sum.MaxStall.Round(time.Millisecond))
	if sum.Alive != sum.Conns || sum.Errors != 0 || moved != 0 {
		return fmt.Errorf("connections did not survive the node's death: %v (first error %s)", sum, sum.FirstError)
	}
	fmt.Println("every connection survived: the two other nodes picked the same backends from the same Maglev tables")
	for i, x := range nodes[:2] {
		if _, err := x.Stop(); err != nil {
			return fmt.Errorf("xlbd on %s: %w", l.LB(i).Name, err)
		}
	}
	return nil
}

// sleep waits d, or returns an error when the demo is interrupted.
func sleep(sig <-chan os.Signal, d time.Duration) error {
	select {
	case <-sig:
		return errors.New("interrupted")
	case <-time.After(d):
		return nil
	}
}

// hops are the nodes' addresses of an IP version, sorted as the router's
// next hops are.
func hops(ns []lab.Node, version int) []netip.Addr {
	var out []netip.Addr
	for _, n := range ns {
		if version == 4 {
			out = append(out, n.Addr4)
		} else {
			out = append(out, n.Addr6)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func join(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}
