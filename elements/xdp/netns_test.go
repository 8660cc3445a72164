package xdp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/pipeline"
	"golang.org/x/sys/unix"
)

// The lab: namespace a holds xlb's side of a veth pair (xa, 10.99.0.1),
// namespace b the peer (xb, 10.99.0.2) with a route to the VIP prefix via
// 10.99.0.1. The pipeline RxXDP -> TxXDP(gateway 10.99.0.2) runs in a
// child process started with `ip netns exec a`: the elements start
// goroutines (the neighbour resolver) and open netlink, BPF and AF_XDP
// sockets, which all belong to the namespace of the thread that opens
// them, so the whole process must live in the namespace. The test itself
// stays in the host namespace and opens its sockets in a or b from a
// locked thread that entered it (a socket keeps its namespace).
const (
	labA, labB = "10.99.0.1", "10.99.0.2"
	labVIP     = "10.99.1.1"
	labOther   = "10.99.1.2" // routed to xlb, but not a VIP
	childEnv   = "XLBX_XDP_CHILD"
)

func TestNetnsForwarding(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip")
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) { runLab(t, mode) })
	}
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// lab creates the two namespaces and the veth pair, removed at cleanup
// even when the test fails.
func lab(t *testing.T, tag string) (nsA, nsB string) {
	nsA = fmt.Sprintf("xlbx-%d-%s-a", os.Getpid(), tag)
	nsB = fmt.Sprintf("xlbx-%d-%s-b", os.Getpid(), tag)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", nsA).Run()
		exec.Command("ip", "netns", "del", nsB).Run()
	})
	ipCmd(t, "netns", "add", nsA)
	ipCmd(t, "netns", "add", nsB)
	// Created inside a, so the host's namespace is never touched.
	ipCmd(t, "-n", nsA, "link", "add", "name", "xa", "type", "veth", "peer", "name", "xb", "netns", nsB)
	ipCmd(t, "-n", nsA, "addr", "add", labA+"/24", "dev", "xa")
	ipCmd(t, "-n", nsB, "addr", "add", labB+"/24", "dev", "xb")
	ipCmd(t, "-n", nsA, "link", "set", "xa", "up")
	ipCmd(t, "-n", nsB, "link", "set", "xb", "up")
	ipCmd(t, "-n", nsA, "link", "set", "lo", "up")
	ipCmd(t, "-n", nsB, "route", "add", "10.99.1.0/24", "via", labA)
	return nsA, nsB
}

// inNetns runs f on a thread in namespace name. The thread is discarded
// afterwards, so no goroutine ever runs in the namespace by accident.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
		h, err := netns.GetFromName(name)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		if err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// child is the xlb process of a lab.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr strings.Builder
	out    []string
}

func startChild(t *testing.T, ns, mode string) *child {
	c := &child{lines: make(chan string, 64)}
	c.cmd = exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetnsChild$", "-test.v")
	c.cmd.Env = append(os.Environ(), childEnv+"="+mode)
	c.cmd.Stderr = &c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c
}

// expect waits for a line starting with prefix and returns it.
func (c *child) expect(t *testing.T, prefix string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before %q; output:\n%s\nstderr:\n%s", prefix, strings.Join(c.out, "\n"), c.stderr.String())
			}
			c.out = append(c.out, l)
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q from the child within %s; output:\n%s\nstderr:\n%s", prefix, d, strings.Join(c.out, "\n"), c.stderr.String())
		}
	}
}

func runLab(t *testing.T, mode string) {
	nsA, nsB := lab(t, mode[:3])
	c := startChild(t, nsA, mode)
	t0 := time.Now()
	if l := c.expect(t, "READY", 20*time.Second); l != "READY VIPs [10.99.1.1]" {
		t.Errorf("the VIP maps must hold the snapshot's VIP before the first packet: %s", l)
	}
	t.Logf("%s mode: pipeline started in %v", mode, time.Since(t0))
	if l := c.expect(t, "SECOND", 5*time.Second); !strings.Contains(l, "xa already has an XDP program attached (id ") ||
		!strings.Contains(l, "ip link set dev xa xdp off") {
		t.Errorf("second attach: %s", l)
	}

	// The peer: a capture of what arrives on xb, and a UDP sender.
	var capfd int
	var xaMAC, xbMAC net.HardwareAddr
	var udp *net.UDPConn
	err := inNetns(nsB, func() error {
		xb, err := net.InterfaceByName("xb")
		if err != nil {
			return err
		}
		xbMAC = xb.HardwareAddr
		capfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(capfd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: xb.Index}); err != nil {
			return err
		}
		// The peer's own packets need not be seen, and the returned ones
		// must not overflow the default receive buffer.
		if err := unix.SetsockoptInt(capfd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(capfd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
			return err
		}
		udp, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(labVIP), Port: 9999})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(capfd)
	defer udp.Close()
	inNetns(nsA, func() error {
		xa, err := net.InterfaceByName("xa")
		if err == nil {
			xaMAC = xa.HardwareAddr
		}
		return err
	})
	tv := unix.Timeval{Usec: 200000}
	unix.SetsockoptTimeval(capfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	const n = 200
	// Each burst carries its own tag, and countReturned counts only the
	// frames of the burst it names: a straggler of an earlier burst,
	// forwarded late by a worker starved of CPU, must not count as a
	// packet of the next one.
	send := func(conn *net.UDPConn, tag string) {
		for i := range n {
			if _, err := conn.Write([]byte(fmt.Sprintf("%s %d", tag, i))); err != nil {
				t.Fatal(err)
			}
			if i%32 == 31 {
				time.Sleep(time.Millisecond) // stay within the veth backlog
			}
		}
	}
	// One packet first, so that b has resolved xlb's address before the
	// burst (the kernel queues few packets while it resolves).
	udp.Write([]byte("warm-up"))
	time.Sleep(100 * time.Millisecond)
	countReturned(capfd, xaMAC, xbMAC, labVIP, "warm-up")
	send(udp, "first")
	back := countReturned(capfd, xaMAC, xbMAC, labVIP, "first")
	t.Logf("%s mode: %d of %d packets to the VIP came back from xlb", mode, back, n)
	if back < n*9/10 {
		t.Errorf("%d of %d packets to the VIP came back", back, n)
	}

	// The next hop's MAC follows the neighbour table: replaced by hand,
	// then deleted (and resolved again by the kernel at xlb's request).
	fake := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	ipCmd(t, "-n", nsA, "neigh", "replace", labB, "lladdr", fake.String(), "dev", "xa", "nud", "permanent")
	time.Sleep(100 * time.Millisecond)
	send(udp, "replaced")
	if got := countReturned(capfd, xaMAC, fake, labVIP, "replaced"); got < n*9/10 {
		t.Errorf("%d of %d packets went to the new next-hop MAC", got, n)
	}
	ipCmd(t, "-n", nsA, "neigh", "del", labB, "dev", "xa")
	time.Sleep(300 * time.Millisecond)
	send(udp, "resolved")
	if got := countReturned(capfd, xaMAC, xbMAC, labVIP, "resolved"); got < n*9/10 {
		t.Errorf("%d of %d packets went to the next hop after its entry was deleted and resolved again", got, n)
	}

	// Packets to a routed address that is no VIP reach a's kernel, which
	// does not forward them: nothing comes back.
	var other *net.UDPConn
	inNetns(nsB, func() error {
		other, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(labOther), Port: 9999})
		return err
	})
	send(other, "other")
	other.Close()
	if got := countReturned(capfd, xaMAC, xbMAC, labOther, "other"); got != 0 {
		t.Errorf("%d packets to a non-VIP address came back", got)
	}

	// XDP_PASS: a TCP connection to xlb's own address works while the
	// program is attached.
	var ln net.Listener
	if err := inNetns(nsA, func() error { ln, err = net.Listen("tcp4", labA+":7777"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	var reply []byte
	err = inNetns(nsB, func() error {
		conn, err := net.DialTimeout("tcp4", labA+":7777", 3*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		reply, err = io.ReadAll(conn)
		return err
	})
	if err != nil || string(reply) != "hello" {
		t.Errorf("TCP to xlb's own address while attached: %q, %v", reply, err)
	}

	// A snapshot without the VIP takes it out of the program's map, and
	// one with it back puts it back: the child says when the maps follow.
	fmt.Fprintln(c.stdin, "drop-vip")
	if l := c.expect(t, "DROPPED", 10*time.Second); l != "DROPPED VIPs []" {
		t.Errorf("after a publication without the VIP: %s", l)
	}
	send(udp, "dropped")
	if got := countReturned(capfd, xaMAC, xbMAC, labVIP, "dropped"); got != 0 {
		t.Errorf("%d packets came back after the VIP was removed", got)
	}
	fmt.Fprintln(c.stdin, "add-vip")
	if l := c.expect(t, "ADDED", 10*time.Second); l != "ADDED VIPs [10.99.1.1]" {
		t.Errorf("after a publication with the VIP again: %s", l)
	}
	send(udp, "added")
	if got := countReturned(capfd, xaMAC, xbMAC, labVIP, "added"); got == 0 {
		t.Errorf("no packet came back after the VIP was added again")
	}

	// Stopping: the program is detached, promptly, in either mode.
	t1 := time.Now()
	c.stdin.Close()
	open := strings.TrimPrefix(c.expect(t, "KERNEL open:", 10*time.Second), "KERNEL open:")
	closed := strings.TrimPrefix(c.expect(t, "KERNEL closed:", 10*time.Second), "KERNEL closed:")
	c.expect(t, "CLOSED", 10*time.Second)
	t.Logf("%s mode: stop and detach took %v", mode, time.Since(t1))
	// xlbd prints its counters after closing the pipeline: the kernel's
	// counters of the socket must outlive it.
	if !strings.Contains(open, "xlb_xdp_kernel_rx_ring_full_total") || closed != open {
		t.Errorf("the kernel's socket counters: %q while open, %q once closed; want the same four", open, closed)
	}
	for {
		l, ok := <-c.lines
		if !ok {
			break
		}
		c.out = append(c.out, l)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child: %v\n%s\n%s", err, strings.Join(c.out, "\n"), c.stderr.String())
	}
	t.Logf("child output:\n%s", strings.Join(c.out, "\n"))
	err = inNetns(nsA, func() error {
		l, err := netlink.LinkByName("xa")
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			return fmt.Errorf("xa still has XDP program %d after the pipeline stopped", x.ProgId)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestNetnsSelfCheck: the self-check passes while the pipeline forwards,
// and reports the XDP program detached behind xlbd's back.
func TestNetnsSelfCheck(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip")
	nsA, _ := lab(t, "sck")
	c := startChild(t, nsA, "generic")
	defer func() {
		c.stdin.Close()
		c.cmd.Wait()
	}()
	c.expect(t, "READY", 20*time.Second)
	// The workers start running after READY, on their own goroutine.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		fmt.Fprintln(c.stdin, "selfcheck")
		l := c.expect(t, "SELFCHECK", 5*time.Second)
		if l == "SELFCHECK <nil>" {
			break
		}
		if l != "SELFCHECK worker 0 is not running" || time.Now().After(deadline) {
			t.Fatalf("while forwarding: %s", l)
		}
	}
	fmt.Fprintln(c.stdin, "detach")
	if l := c.expect(t, "DETACHED", 5*time.Second); l != "DETACHED <nil>" {
		t.Fatalf("detaching behind the pipeline's back: %s", l)
	}
	fmt.Fprintln(c.stdin, "selfcheck")
	if l := c.expect(t, "SELFCHECK", 5*time.Second); !strings.Contains(l, "worker 0: `rx` (RxXDP): the XDP program (id ") ||
		!strings.Contains(l, "is no longer attached to xa") {
		t.Errorf("after the program was detached: %s", l)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// countReturned counts the IPv4 frames to dst received on the capture
// socket from MAC src to MAC dstMAC (any when nil), until it has been
// quiet for 200 ms.
func countReturned(fd int, src, dstMAC net.HardwareAddr, dst, tag string) int {
	want := netip.MustParseAddr(dst).As4()
	prefix := []byte(tag + " ")
	buf := make([]byte, 2048)
	n := 0
	for {
		k, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return n
		}
		ll, _ := from.(*unix.SockaddrLinklayer)
		if ll == nil || ll.Pkttype == unix.PACKET_OUTGOING || k < 34 {
			continue
		}
		f := buf[:k]
		if string(f[6:12]) != string(src) || dstMAC != nil && string(f[:6]) != string(dstMAC) || binary.BigEndian.Uint16(f[12:14]) != 0x0800 || [4]byte(f[30:34]) != want {
			continue
		}
		if payload := 14 + int(f[14]&0x0f)*4 + 8; payload <= k && bytes.HasPrefix(f[payload:], prefix) {
			n++
		}
	}
}

// TestNetnsChild is the xlb process of the lab, run by TestNetnsForwarding
// inside namespace a. It prints READY and the VIP maps once attached,
// SECOND with the error of a second pipeline on the same interface,
// publishes a snapshot without the VIP on "drop-vip" and with it on
// "add-vip", printing DROPPED or ADDED and the maps once they follow, and
// stops at the end of its input.
func TestNetnsChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("run by TestNetnsForwarding")
	}
	withVIP := []snapshot.VIP{{Name: "web", Addr: netip.MustParseAddr(labVIP), Proto: 17}}
	store := snapshot.NewStore(snapshot.New(1, 0, withVIP, nil))
	spec := pipeline.Spec{
		Elements: []pipeline.ElementDecl{
			{Name: "rx", Type: "RxXDP", Configure: func(e pipeline.Element) error {
				r := e.(*RxXDP)
				r.Interface, r.Mode = "xa", mode
				return nil
			}},
			{Name: "tx", Type: "TxXDP", Configure: func(e pipeline.Element) error {
				x := e.(*TxXDP)
				x.Interface, x.Gateway = "xa", labB
				return nil
			}},
		},
		Connections: []pipeline.Connection{{From: pipeline.Endpoint{Element: "rx"}, To: pipeline.Endpoint{Element: "tx"}}},
	}
	g, errs := pipeline.Build(spec)
	if errs != nil {
		t.Fatal(errs)
	}
	opts := pipeline.Options{Values: snapshot.ContextValues(store), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	rt, err := g.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	ifc := rt.Workers()[0].Element("rx").(*RxXDP).ifc
	// vips returns the program's VIP maps once they hold want addresses,
	// or after 5 s what they hold then: the follower updates them after
	// a publication, on its own goroutine.
	vips := func(want int) []netip.Addr {
		deadline := time.Now().Add(5 * time.Second)
		for {
			ifc.mu.Lock()
			got, err := ifc.prog.VIPs()
			ifc.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == want || time.Now().After(deadline) {
				return got
			}
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Println("READY VIPs", vips(1))
	if rt2, err := g.Start(opts); err == nil {
		rt2.Close()
		fmt.Println("SECOND started")
	} else {
		fmt.Println("SECOND", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "drop-vip":
			store.Publish(snapshot.New(2, 0, nil, nil))
			fmt.Println("DROPPED VIPs", vips(0))
		case "add-vip":
			store.Publish(snapshot.New(3, 0, withVIP, nil))
			fmt.Println("ADDED VIPs", vips(1))
		case "selfcheck":
			fmt.Println("SELFCHECK", rt.SelfCheck(time.Now()))
		case "detach":
			// Behind the pipeline's back, as `bpftool link detach`
			// would: through a handle of our own on the link.
			ifc.mu.Lock()
			id := ifc.prog.LinkID()
			ifc.mu.Unlock()
			lk, err := link.NewFromID(link.ID(id))
			if err == nil {
				err = lk.Detach()
				lk.Close()
			}
			fmt.Println("DETACHED", err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	for _, s := range rt.Stats() {
		for _, m := range s.Metrics {
			if m.Value != 0 {
				fmt.Println("STAT", s.Name, m.Name, m.Labels, m.Value)
			}
		}
	}
	fmt.Println("KERNEL open:", kernelStats(rt.Stats()))
	if err := rt.Close(); err != nil {
		t.Error(err)
	}
	fmt.Println("KERNEL closed:", kernelStats(rt.Stats()))
	fmt.Println("CLOSED")
}

// kernelStats lists the kernel's counters of the sockets in stats, zeros
// included.
func kernelStats(stats []pipeline.ElementStats) string {
	var out []string
	for _, s := range stats {
		for _, m := range s.Metrics {
			if strings.HasPrefix(m.Name, "xlb_xdp_kernel_") {
				out = append(out, fmt.Sprintf("%s%v=%d", m.Name, m.Labels, m.Value))
			}
		}
	}
	return strings.Join(out, " ")
}
