package lab_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/ethtool"
	"github.com/xlbproject/xlb/internal/testenv"
)

// The helper modes of this test binary, run as child processes by the
// teardown tests.
const helperEnv = "XLB_LAB_HELPER"

var (
	binOnce sync.Once
	binDir  string
	bins    map[string]string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds xlb-backend and xlb-client once per test binary.
func binaries(t *testing.T) map[string]string {
	t.Helper()
	testenv.RequireTool(t, "ip") // Lab.Exec runs ip netns exec
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "xlb-lab-bin-")
		if binErr == nil {
			bins, binErr = lab.Build(binDir, "./e2e/cmd/xlb-backend", "./e2e/cmd/xlb-client")
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return bins
}

// TestTopology checks what the lab promises before any LB exists:
// addresses, MTUs, routes, sysctls, checksum offload, and that the client
// reaches the router and every backend by address.
func TestTopology(t *testing.T) {
	testenv.RequireRoot(t)
	l := lab.New(t, lab.Topology{LBNodes: 2, IPv6: true})

	if got := len(l.Namespaces()); got != 1+1+2+3 {
		t.Errorf("%d namespaces, want 7", got)
	}
	for _, ns := range l.Namespaces() {
		if !strings.HasPrefix(ns, l.Prefix()) || !strings.HasPrefix(ns, "xlbl-") {
			t.Errorf("namespace %q outside prefix %q", ns, l.Prefix())
		}
	}

	// MTUs: 1500 on the client's link and behind the router.
	mtu := func(ns, iface string) int {
		h, err := l.Handle(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		link, err := h.LinkByName(iface)
		if err != nil {
			t.Fatal(err)
		}
		return link.Attrs().MTU
	}
	r := l.Router()
	checks := []struct {
		ns, iface string
		want      int
	}{
		{l.Client().NS, lab.IfaceEth, lab.ClientMTU},
		{r.NS, lab.IfaceClient, lab.ClientMTU},
		{r.NS, lab.IfaceBridge, lab.DefaultInnerMTU},
		{r.NS, "p-be1", lab.DefaultInnerMTU},
		{l.LB(1).NS, lab.IfaceEth, lab.DefaultInnerMTU},
		{l.Backends()[2].NS, lab.IfaceEth, lab.DefaultInnerMTU},
	}
	for _, c := range checks {
		if got := mtu(c.ns, c.iface); got != c.want {
			t.Errorf("%s %s: MTU %d, want %d", c.ns, c.iface, got, c.want)
		}
	}

	// Sysctls landed in the namespaces, not in the host.
	sysctl := func(ns, path string) string {
		var v []byte
		err := l.Do(ns, func() (err error) {
			v, err = os.ReadFile("/proc/sys/net/" + path)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(v))
	}
	if got := sysctl(r.NS, "ipv4/ip_forward"); got != "1" {
		t.Errorf("router ip_forward = %s", got)
	}
	if got := sysctl(r.NS, "ipv6/conf/all/forwarding"); got != "1" {
		t.Errorf("router IPv6 forwarding = %s", got)
	}
	if got := sysctl(l.Client().NS, "ipv4/ip_forward"); got != "0" {
		t.Errorf("client ip_forward = %s, want 0 (router's sysctl leaked?)", got)
	}
	if got := sysctl(l.Client().NS, "core/txrehash"); got != "0" {
		t.Errorf("client txrehash = %s, want 0", got)
	}
	if got := sysctl(l.Backends()[0].NS, "ipv4/conf/all/arp_ignore"); got != "1" {
		t.Errorf("backend arp_ignore = %s", got)
	}

	// TX checksum offload is off on the client's veth, on elsewhere.
	var clientCsum, lbCsum bool
	if err := l.Do(l.Client().NS, func() (err error) { clientCsum, err = ethtool.TxChecksum(lab.IfaceEth); return }); err != nil {
		t.Fatal(err)
	}
	if err := l.Do(l.LB(0).NS, func() (err error) { lbCsum, err = ethtool.TxChecksum(lab.IfaceEth); return }); err != nil {
		t.Fatal(err)
	}
	if clientCsum || !lbCsum {
		t.Errorf("tx checksum offload: client %v (want false), lb %v (want true, the veth default)", clientCsum, lbCsum)
	}

	// The VIP is routed over both LB nodes.
	rh, err := l.Handle(r.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close()
	for _, vip := range []netip.Addr{l.VIP(), l.VIP6()} {
		routes, err := rh.RouteGet(vip.AsSlice())
		if err != nil || len(routes) != 1 {
			t.Fatalf("route to %s: %v %v", vip, routes, err)
		}
		gw, _ := netip.AddrFromSlice(routes[0].Gw)
		if gw.Unmap() != l.LB(0).Addr4 && gw.Unmap() != l.LB(1).Addr4 && gw != l.LB(0).Addr6 && gw != l.LB(1).Addr6 {
			t.Errorf("route to %s via %s, not an LB node", vip, gw)
		}
	}

	// The client reaches the router and every backend, over IPv4 and
	// IPv6: a TCP connection to a closed port is refused by the target's
	// kernel, which proves the path both ways.
	targets := []netip.Addr{r.ClientAddr4, r.BridgeAddr4, r.ClientAddr6, r.BridgeAddr6}
	for _, b := range l.Backends() {
		targets = append(targets, b.Addr4, b.Addr6)
	}
	for _, a := range targets {
		err := l.Do(l.Client().NS, func() error {
			// Generous: the first SYN may wait for neighbour discovery.
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(a, 9).String(), 5*time.Second)
			if err == nil {
				c.Close()
				return errors.New("connected to a closed port")
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return err
			}
			return nil
		})
		if err != nil {
			t.Errorf("client to %s: %v", a, err)
		}
	}
}

// TestClientChecksum: a TCP SYN from the client, as the LB node receives
// it, carries a complete TCP checksum (offload off), so a copy the LB
// forwards is valid at the backend.
func TestClientChecksum(t *testing.T) {
	testenv.RequireRoot(t)
	l := lab.New(t, lab.Topology{IPv6: true})
	for _, vip := range []netip.Addr{l.VIP(), l.VIP6()} {
		var c *lab.Capture
		if err := l.Do(l.LB(0).NS, func() (err error) { c, err = lab.OpenCapture(lab.IfaceEth); return }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Nobody holds the VIP (no LB runs): the SYN reaches lb1 and dies
		// there; a non-blocking connect sends it and returns.
		var sock int
		err := l.Do(l.Client().NS, func() error {
			fam := syscall.AF_INET6
			var sa syscall.Sockaddr = &syscall.SockaddrInet6{Port: 80, Addr: vip.As16()}
			if vip.Is4() {
				fam = syscall.AF_INET
				sa = &syscall.SockaddrInet4{Port: 80, Addr: vip.As4()}
			}
			var err error
			sock, err = syscall.Socket(fam, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
			if err != nil {
				return err
			}
			if err := syscall.Connect(sock, sa); err != syscall.EINPROGRESS {
				return fmt.Errorf("connect: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(sock)
		p, err := c.Next(2*time.Second, func(p []byte) bool {
			_, dst, seg, ok := tcpOf(p)
			return ok && dst == vip && seg[13] == 0x02
		})
		if err != nil {
			t.Fatalf("%s: SYN at the LB node: %v", vip, err)
		}
		src, dst, seg, _ := tcpOf(p)
		if got := tcpChecksum(src, dst, seg); got != 0 {
			t.Errorf("%s: SYN from %s arrives with a bad TCP checksum (field %#04x): offload left it partial",
				vip, src, binary.BigEndian.Uint16(seg[16:]))
		}
	}
}

// TestBackendHTTP runs the real backends and client against the backends'
// own addresses (no LB needed): the HTTP server, the X-Backend header, the
// client's summary in both connection modes.
func TestBackendHTTP(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{IPv6: true})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	be2, _ := l.Backend("be2")
	s, err := l.RunClient(b["xlb-client"], "-url", "http://"+be2.Addr4.String()+"/", "-n", "20", "-c", "4")
	if err != nil {
		t.Fatal(err)
	}
	if s.OK != 20 || s.Backends["be2"] != 20 || s.Connections != 20 || s.SourcePorts != 20 {
		t.Errorf("new connections: %+v, want 20 ok from be2 over 20 connections and source ports", s)
	}
	be3, _ := l.Backend("be3")
	s, err = l.RunClient(b["xlb-client"], "-url", "http://["+be3.Addr6.String()+"]/", "-n", "10", "-keepalive")
	if err != nil {
		t.Fatal(err)
	}
	if s.OK != 10 || s.Backends["be3"] != 10 || s.Connections != 1 {
		t.Errorf("keep-alive: %+v, want 10 ok from be3 over 1 connection", s)
	}
	st, err := l.BackendStats("be2")
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 20 {
		t.Errorf("be2 counted %d requests, want 20", st.Requests)
	}
}

// TestDecapSYNACK does by hand what xlb will do: from the LB node, send an
// encapsulated TCP SYN (client -> VIP:80) to a backend through the router.
// The backend's decapsulator must put it into its TUN device, and the
// backend's kernel must answer with a SYN-ACK from the VIP that reaches the
// client directly, without the backend's kernel sending any ICMP error for
// the tunnel packet it cannot handle itself.
func TestDecapSYNACK(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{IPv6: true})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	cases := []encap{
		{name: "GRE/IPv4", gre: true, wantGRE: 1},
		{name: "IPIP/IPv4", wantIPIP: 1},
		{name: "GRE/IPv6", gre: true, outer6: true, inner6: true, wantGRE: 1},
		{name: "IP6IP6", outer6: true, inner6: true, wantIPIP: 1},
		{name: "GRE/IPv6-in-IPv4", gre: true, inner6: true, wantGRE: 1},
		{name: "IPv6-in-IPv4", inner6: true, wantIPIP: 1},
		{name: "IPv4-in-IPv6", outer6: true, wantIPIP: 1},
		// The largest inner packet the links behind the router carry
		// with the outer headers.
		{name: "GRE/IPv6 full size", full: true, gre: true, outer6: true, inner6: true, wantGRE: 1},
		{name: "GRE/IPv4 full size", full: true, gre: true, wantGRE: 1},
	}
	lb, cl, r := l.LB(0), l.Client(), l.Router()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be := l.Backends()[i%3]
			before, err := l.BackendStats(be.Name)
			if err != nil {
				t.Fatal(err)
			}
			icmpBefore := icmpErrors(t, l, be.NS)

			csrc, vip := cl.Addr4, l.VIP()
			if c.inner6 {
				csrc, vip = cl.Addr6, l.VIP6()
			}
			osrc, odst := lb.Addr4, be.Addr4
			if c.outer6 {
				osrc, odst = lb.Addr6, be.Addr6
			}
			sport := uint16(20000 + rand.IntN(20000))
			seq := rand.Uint32()
			n := 0
			if c.full {
				outer := 20 + 4 // IPv4 and GRE
				if c.outer6 {
					outer = 40 + 4
				}
				n = lab.DefaultInnerMTU - outer - 24 - len(ipHeader(csrc, vip, 6, 0))
			}
			syn := tcpSYN(csrc, vip, sport, 80, seq, n)
			inner := append(ipHeader(csrc, vip, 6, len(syn)), syn...)
			frame := ethernet(r.BridgeMAC, lb.MAC, encapsulate(c, osrc, odst, inner))

			var capt *lab.Capture
			if err := l.Do(cl.NS, func() (err error) { capt, err = lab.OpenCapture(lab.IfaceEth); return }); err != nil {
				t.Fatal(err)
			}
			defer capt.Close()
			if err := l.Do(lb.NS, func() error { return sendFrame(lab.IfaceEth, frame) }); err != nil {
				t.Fatal(err)
			}
			_, err = capt.Next(2*time.Second, func(p []byte) bool {
				src, dst, seg, ok := tcpOf(p)
				return ok && src == vip && dst == csrc &&
					binary.BigEndian.Uint16(seg[0:]) == 80 && binary.BigEndian.Uint16(seg[2:]) == sport &&
					seg[13]&0x12 == 0x12 && binary.BigEndian.Uint32(seg[8:]) == seq+1
			})
			after, serr := l.BackendStats(be.Name)
			if serr != nil {
				t.Fatal(serr)
			}
			if err != nil {
				t.Fatalf("SYN-ACK from %s at the client: %v; %s counters before %+v after %+v", vip, err, be.Name, before, after)
			}
			if after.DecapGRE-before.DecapGRE != c.wantGRE || after.DecapIPIP-before.DecapIPIP != c.wantIPIP ||
				after.Malformed != before.Malformed || after.Unsupported != before.Unsupported || after.TunOut != 0 {
				t.Errorf("%s counters before %+v after %+v", be.Name, before, after)
			}
			if got := icmpErrors(t, l, be.NS); got != icmpBefore {
				t.Errorf("%s sent %d ICMP errors", be.Name, got-icmpBefore)
			}
		})
	}
}

// icmpErrors sums the ICMP and ICMPv6 errors namespace ns has sent.
func icmpErrors(t *testing.T, l *lab.Lab, ns string) int {
	t.Helper()
	c, err := l.NetCounters(ns)
	if err != nil {
		t.Fatal(err)
	}
	return int(c["Icmp:OutDestUnreachs"] + c["Icmp:OutParmProbs"] + c["Icmp6OutDestUnreachs"] + c["Icmp6OutParmProblems"])
}

// ownedNamespaces lists the lab namespaces owned by process pid.
func ownedNamespaces(t *testing.T, pid int) []string {
	t.Helper()
	ents, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("xlbl-%d-", pid)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestTeardown: Down removes every namespace and is idempotent; a test that
// fails after building a lab leaves nothing behind; a run killed with
// SIGKILL leaves namespaces and a running process, which Sweep removes
// without touching a live run's lab, and its router's BIRD is gone too.
func TestTeardown(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)

	t.Run("Down", func(t *testing.T) {
		l, err := lab.Up(lab.Topology{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ownedNamespaces(t, os.Getpid())) == 0 {
			t.Fatal("Up made no namespaces")
		}
		if err := l.Down(); err != nil {
			t.Fatal(err)
		}
		if err := l.Down(); err != nil {
			t.Fatalf("second Down: %v", err)
		}
		if ns := ownedNamespaces(t, os.Getpid()); len(ns) != 0 {
			t.Errorf("left after Down: %v", ns)
		}
	})

	t.Run("FailedTest", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=fail", "XLB_LAB_BACKEND="+b["xlb-backend"])
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "deliberate failure") {
			t.Fatalf("helper should fail deliberately: %v\n%s", err, out)
		}
		if ns := ownedNamespaces(t, cmd.Process.Pid); len(ns) != 0 {
			t.Errorf("a failed test left %v", ns)
		}
	})

	t.Run("HoldSweeps", func(t *testing.T) {
		_, release, err := lab.HoldSweeps()
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		done := make(chan error)
		go func() {
			_, err := lab.Sweep()
			done <- err
		}()
		select {
		case <-done:
			t.Fatal("Sweep ran while the sweeps were held")
		case <-time.After(200 * time.Millisecond):
		}
		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Sweep", func(t *testing.T) {
		testenv.RequireTool(t, "bird")
		// A live lab of our own that Sweep must keep.
		live := lab.New(t, lab.Topology{Backends: []string{"x"}})
		cmd := exec.Command(os.Args[0], "-test.run", "^TestHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=hang", "XLB_LAB_BACKEND="+b["xlb-backend"])
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The helper prints "ready" once its lab and backend run.
		sc := bufio.NewScanner(stdout)
		orphan, bird := 0, 0
		for orphan == 0 && sc.Scan() {
			fmt.Sscanf(sc.Text(), "helper ready, orphan %d, bird %d", &orphan, &bird)
		}
		if orphan == 0 {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("helper did not get ready")
		}
		// From here to its own sweep no other lab may sweep: go test runs
		// other packages' labs meanwhile, and their sweeps would take the
		// killed run's namespaces first.
		sweep, release, err := lab.HoldSweeps()
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		pid := cmd.Process.Pid
		cmd.Process.Kill() // no cleanup runs
		cmd.Wait()
		left := ownedNamespaces(t, pid)
		if len(left) == 0 {
			t.Fatal("a killed run left no namespaces: the sweep has nothing to test")
		}
		labDirs := filepath.Join(os.TempDir(), fmt.Sprintf("xlbl-%d-*", pid))
		if dirs, _ := filepath.Glob(labDirs); len(dirs) == 0 {
			t.Error("a killed run left no lab directory")
		}
		removed, err := sweep()
		release()
		if err != nil {
			t.Fatal(err)
		}
		if ns := ownedNamespaces(t, pid); len(ns) != 0 {
			t.Errorf("Sweep left %v", ns)
		}
		if dirs, _ := filepath.Glob(labDirs); len(dirs) != 0 {
			t.Errorf("Sweep left lab directories %v", dirs)
		}
		if len(removed) < len(left) {
			t.Errorf("Sweep removed %v, want at least %v", removed, left)
		}
		for _, ns := range live.Namespaces() {
			if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
				t.Errorf("Sweep removed live namespace %s", ns)
			}
		}
		// Gone by its parent-death signal, or else by Sweep.
		if bird == 0 || alive(bird) {
			t.Errorf("the killed run's BIRD (%d) still runs", bird)
		}
		if alive(orphan) {
			t.Errorf("process %d left in the killed run's namespace still runs", orphan)
		}
	})
}

// alive reports whether pid runs, waiting up to a second for a killed
// process to die; a zombie (killed, not yet reaped by its new parent) is
// dead.
func alive(pid int) bool {
	for range 100 {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && strings.HasPrefix(string(st[i:]), ") Z") {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// TestHelper is the child process of TestTeardown.
func TestHelper(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("run by TestTeardown")
	}
	topo := lab.Topology{Backends: []string{"hb"}}
	if mode == "hang" {
		// Its router's BIRD must go with the namespace too.
		topo.BGP = &lab.BGP{}
	}
	l := lab.New(t, topo)
	if err := l.StartBackends(os.Getenv("XLB_LAB_BACKEND")); err != nil {
		t.Fatal(err)
	}
	switch mode {
	case "fail":
		t.Fatal("deliberate failure")
	case "hang":
		// A process that outlives this one in a lab namespace (no
		// parent-death signal, its own session): Sweep must kill it.
		orphan := exec.Command("ip", "netns", "exec", l.Backends()[0].NS, "sleep", "60")
		orphan.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := orphan.Start(); err != nil {
			t.Fatal(err)
		}
		// Ready once it is in the namespace: until `ip netns exec` has
		// switched, Sweep cannot find it there (and a loaded machine
		// let the test kill us and sweep before that).
		var nsSt, pSt syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/run/netns", l.Backends()[0].NS), &nsSt); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; {
			err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", orphan.Process.Pid), &pSt)
			if err == nil && pSt.Ino == nsSt.Ino && pSt.Dev == nsSt.Dev {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("orphan not in %s: %v", l.Backends()[0].NS, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		fmt.Printf("helper ready, orphan %d, bird %d\n", orphan.Process.Pid, l.Bird().Pid())
		time.Sleep(time.Minute)
	}
}
