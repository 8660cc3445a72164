// End-to-end tests: real HTTP from a client through xlbd, running the
// default graph over AF_XDP on an LB node, to three backends in the
// network-namespace lab (e2e/README.md). They need root; without it they
// skip, and under XLB_E2E=1 they fail.
package e2e_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/backend"
	"github.com/xlbproject/xlb/e2e/client"
	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

var (
	buildOnce sync.Once
	bins      map[string]string
	buildErr  error
)

// binaries builds xlbd and the lab's programs once per test binary.
func binaries(t *testing.T) map[string]string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xlb-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		bins, buildErr = lab.Build(dir, "./cmd/xlbd", "./cmd/xlbctl", "./e2e/cmd/xlb-backend", "./e2e/cmd/xlb-client")
		if buildErr != nil {
			return
		}
		// The built-in plugins where xlbd looks by default: plugins/
		// beside it, as make build lays them out.
		var plugins map[string]string
		plugins, buildErr = lab.Build(filepath.Join(dir, "plugins"), "./plugins/healthcheck/http", "./plugins/healthcheck/tcp", "./plugins/announce/bgp", "./plugins/source/file", "./plugins/source/etcd")
		maps.Copy(bins, plugins)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bins
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins != nil {
		os.RemoveAll(filepath.Dir(bins["xlbd"]))
	}
	os.Exit(code)
}

// weights are the backends' weights in examples/lab/lab.hcl.
var weights = map[string]float64{"be1": 1, "be2": 2, "be3": 3}

// labConfig returns examples/lab/lab.hcl with its encapsulation element
// type replaced and the blocks of extra appended, written to a file of the
// test's.
func labConfig(t *testing.T, encap string, extra ...string) string {
	t.Helper()
	src, err := os.ReadFile("../examples/lab/lab.hcl")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	if !strings.Contains(s, `element "GREEncap" "encap"`) {
		t.Fatal("examples/lab/lab.hcl no longer declares GREEncap as encap; update this test")
	}
	s = strings.Replace(s, `element "GREEncap" "encap"`, `element "`+encap+`" "encap"`, 1) + strings.Join(extra, "\n")
	path := filepath.Join(t.TempDir(), "lab.hcl")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// setup builds a lab with three backends serving and xlbd running on the
// LB node with the given encapsulation.
func setup(t *testing.T, encap string) (*lab.Lab, *lab.XLBD) {
	t.Helper()
	l, b := serving(t, true)
	x, err := l.StartXLBD(l.LB(0), b["xlbd"], labConfig(t, encap), "-var", "interface="+l.LB(0).Iface)
	if err != nil {
		t.Fatal(err)
	}
	return l, x
}

// serving builds a lab whose three backends serve, and returns it with the
// binaries; the caller starts xlbd with the configuration it needs.
func serving(t *testing.T, ipv6 bool) (*lab.Lab, map[string]string) {
	t.Helper()
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{Backends: []string{"be1", "be2", "be3"}, IPv6: ipv6})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	return l, b
}

// watchReplies counts, until stop is called, packets arriving on the LB
// node's interface whose source is a VIP: replies from backends. With
// direct server return there must be none. The XDP program passes such
// packets to the kernel (their destination is no VIP), so the capture
// would see them.
func watchReplies(t *testing.T, l *lab.Lab) (stop func() int64) {
	return watchSources(t, l, l.LB(0), func(src netip.Addr) bool { return src == l.VIP() || src == l.VIP6() })
}

// watchSources counts the packets that arrive at node's interface from a
// source that from accepts, until stop is called.
func watchSources(t *testing.T, l *lab.Lab, node lab.Node, from func(netip.Addr) bool) (stop func() int64) {
	t.Helper()
	var c *lab.Capture
	if err := l.Do(node.NS, func() (err error) { c, err = lab.OpenCapture(node.Iface); return }); err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var done atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for !done.Load() {
			_, _ = c.Next(100*time.Millisecond, func(p []byte) bool {
				if src, ok := ipSource(p); ok && from(src) {
					n.Add(1)
				}
				return false
			})
		}
	}()
	return func() int64 {
		done.Store(true)
		<-finished
		c.Close()
		return n.Load()
	}
}

func ipSource(p []byte) (netip.Addr, bool) {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(p[12:16])), true
	case len(p) >= 40 && p[0]>>4 == 6:
		return netip.AddrFrom16([16]byte(p[8:24])), true
	}
	return netip.Addr{}, false
}

// checkShares fails when a backend's share of s's requests is further from
// its weight's share than tolerance, given as a number of binomial standard
// deviations: with n requests the share of a backend of expected share p
// has standard deviation sqrt(p(1-p)/n). Maglev's own table imbalance at
// M=65537 and three backends is far below that.
func checkShares(t *testing.T, what string, s client.Summary, sigmas float64) {
	t.Helper()
	var total float64
	for _, w := range weights {
		total += w
	}
	for be, w := range weights {
		p := w / total
		got := float64(s.Backends[be]) / float64(s.OK)
		sd := math.Sqrt(p * (1 - p) / float64(s.OK))
		if math.Abs(got-p) > sigmas*sd {
			t.Errorf("%s: %s served %.3f of requests, want %.3f ± %.3f (%.0fσ); all: %v", what, be, got, p, sigmas*sd, sigmas, s.Backends)
		}
	}
}

// TestHTTPThroughXLB: HTTP over new connections from many source ports
// spreads over the three backends in proportion to their weights; one
// keep-alive connection stays on one backend; every reply goes from the
// backend to the client directly, never through the LB. For GRE and IPIP,
// to the IPv4 and the IPv6 VIP.
func TestHTTPThroughXLB(t *testing.T) {
	for _, encap := range []string{"GREEncap", "IPIPEncap"} {
		t.Run(encap, func(t *testing.T) {
			l, x := setup(t, encap)
			b := binaries(t)
			stopWatch := watchReplies(t, l)
			for _, tc := range []struct {
				url string
				n   int
			}{
				{"http://" + l.VIP().String() + "/", 600},
				{"http://[" + l.VIP6().String() + "]/", 300},
			} {
				s, err := l.RunClient(b["xlb-client"], "-url", tc.url, "-n", strconv.Itoa(tc.n), "-c", "8")
				if err != nil {
					t.Fatalf("%s: %v (%+v)", tc.url, err, s)
				}
				if s.OK != tc.n || s.SourcePorts < tc.n*9/10 {
					t.Fatalf("%s: %+v, want %d ok from about as many source ports", tc.url, s, tc.n)
				}
				checkShares(t, tc.url, s, 4)

				s, err = l.RunClient(b["xlb-client"], "-url", tc.url, "-n", "50", "-keepalive")
				if err != nil || s.OK != 50 || s.Connections != 1 || len(s.Backends) != 1 {
					t.Errorf("%s keep-alive: %+v %v, want 50 ok over one connection from one backend", tc.url, s, err)
				}
			}
			if replies := stopWatch(); replies != 0 {
				t.Errorf("the LB node received %d packets from a VIP: replies must go from the backends to the client directly", replies)
			}
			out, err := x.Stop()
			if err != nil {
				t.Fatalf("xlbd: %v\n%s", err, x.Log())
			}
			// Every request's packets went through xlb and none was dropped.
			for _, want := range []string{"drop (Discard)\n  in  in                      0\n", "xlb_xdp_rx_packets_total"} {
				if !strings.Contains(out, want) {
					t.Errorf("xlbd's counters lack %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestOtherTrafficWhileAttached: with the XDP program attached, traffic to
// the LB node's own address still reaches its kernel: a TCP connection to a
// listener on the node, and ICMP echo.
func TestOtherTrafficWhileAttached(t *testing.T) {
	l, x := setup(t, "GREEncap")
	defer x.Stop()
	lb := l.LB(0)
	var ln net.Listener
	if err := l.Do(lb.NS, func() (err error) { ln, err = net.Listen("tcp", net.JoinHostPort(lb.Addr4.String(), "2222")); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("lb node\n"))
			c.Close()
		}
	}()
	err := l.Do(l.Client().NS, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(lb.Addr4.String(), "2222"), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 16)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if string(buf[:n]) != "lb node\n" {
			return fmt.Errorf("read %q, %v", buf[:n], err)
		}
		return nil
	})
	if err != nil {
		t.Errorf("TCP to the LB node's own address while XDP is attached: %v", err)
	}
	for _, dst := range []netip.Addr{lb.Addr4, lb.Addr6} {
		if err := l.Do(l.Client().NS, func() error { return ping(dst) }); err != nil {
			t.Errorf("ping %s while XDP is attached: %v", dst, err)
		}
	}
}

// ping sends one ICMP echo request to dst and waits for the reply, from the
// calling thread's namespace.
func ping(dst netip.Addr) error {
	network, req := "ip4:icmp", []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'x', 'l', 'b'}
	if dst.Is6() {
		network, req[0] = "ip6:ipv6-icmp", 128 // the kernel fills the ICMPv6 checksum
	} else {
		cs := backend.Checksum(req)
		req[2], req[3] = byte(cs>>8), byte(cs)
	}
	c, err := net.ListenPacket(network, "")
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.WriteTo(req, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		// An echo reply (type 0, or 129 for ICMPv6) with our identifier.
		if a, ok := netip.AddrFromSlice(from.(*net.IPAddr).IP); ok && a.Unmap() == dst && n >= 8 && (buf[0] == 0 || buf[0] == 129) && buf[4] == 0x12 && buf[5] == 0x34 {
			return nil
		}
	}
}

// TestStopLeavesInterfaceAsItWas: a second xlbd on the same interface is
// refused with a clear message; stopping xlbd (SIGTERM) detaches the XDP
// program and leaves the interface as it was.
func TestStopLeavesInterfaceAsItWas(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{Backends: []string{"be1", "be2", "be3"}})
	lb := l.LB(0)
	h, err := l.Handle(lb.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	before, err := h.LinkByName(lb.Iface)
	if err != nil {
		t.Fatal(err)
	}
	config := labConfig(t, "GREEncap")
	x, err := l.StartXLBD(lb, b["xlbd"], config, "-var", "interface="+lb.Iface)
	if err != nil {
		t.Fatal(err)
	}
	if link, err := h.LinkByName(lb.Iface); err != nil || link.Attrs().Xdp == nil || !link.Attrs().Xdp.Attached {
		t.Fatalf("no XDP program attached while xlbd runs: %v", err)
	}

	second, err := l.StartXLBD(lb, b["xlbd"], config, "-var", "interface="+lb.Iface)
	if err == nil {
		second.Stop()
		t.Fatal("a second xlbd on the same interface started")
	}
	if !strings.Contains(err.Error(), "already has an XDP program attached") {
		t.Errorf("the second xlbd's refusal does not say why:\n%v", err)
	}

	if _, err := x.Stop(); err != nil {
		t.Fatalf("xlbd stopped by SIGTERM must exit 0: %v\n%s", err, x.Log())
	}
	after, err := h.LinkByName(lb.Iface)
	if err != nil {
		t.Fatal(err)
	}
	if x := after.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("XDP program (id %d) still attached after xlbd stopped", x.ProgId)
	}
	a, bf := after.Attrs(), before.Attrs()
	if a.MTU != bf.MTU || a.Flags != bf.Flags || a.HardwareAddr.String() != bf.HardwareAddr.String() || a.OperState != bf.OperState {
		t.Errorf("interface changed: before mtu %d flags %v mac %s state %v; after mtu %d flags %v mac %s state %v",
			bf.MTU, bf.Flags, bf.HardwareAddr, bf.OperState, a.MTU, a.Flags, a.HardwareAddr, a.OperState)
	}
}

// TestReloadKeepsEstablishedFlows: an established connection keeps its
// backend when xlbd reloads its file on SIGHUP, whether the new file is
// broken (refused; the running configuration stays) or valid with other
// backends' weights changed; and a backend removed by a reload no longer
// gets new connections.
func TestReloadKeepsEstablishedFlows(t *testing.T) {
	l, b := serving(t, false)
	config := labConfig(t, "GREEncap")
	orig, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	x, err := l.StartXLBD(l.LB(0), b["xlbd"], config, "-var", "interface="+l.LB(0).Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Stop()

	// One keep-alive connection from the client namespace: the socket is
	// created there, then used from any thread.
	var conn net.Conn
	if err := l.Do(l.Client().NS, func() (err error) {
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(l.VIP().String(), "80"), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func() string {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(buf[:n]), "\r\n") {
			if v, ok := strings.CutPrefix(line, "X-Backend: "); ok {
				return v
			}
		}
		t.Fatalf("no X-Backend header in %q", buf[:n])
		return ""
	}
	reload := func(content, wantLog string) {
		t.Helper()
		if err := os.WriteFile(config, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		mark := x.LogMark()
		if err := x.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if _, err := x.WaitLog(mark, 5*time.Second, wantLog); err != nil {
			t.Fatal(err)
		}
	}
	first := ask()

	reload(strings.Replace(string(orig), `pool     = "web"`, `pool     = "wbe"`, 1), "reload rejected")
	if got := ask(); got != first {
		t.Fatalf("after a rejected reload the connection moved from %s to %s", first, got)
	}

	// Drain one of the other backends and change the weight of the last
	// one (2 becomes 12, 3 becomes 13): the Maglev table changes, the
	// connection stays, and new connections avoid the drained backend.
	var removed string
	changed := string(orig)
	for _, be := range []string{"be1", "be2", "be3"} {
		if be == first {
			continue
		}
		if removed == "" {
			removed = be
			changed = strings.Replace(changed, fmt.Sprintf("backend %q {", be), fmt.Sprintf("backend %q {\n    drain = true", be), 1)
			continue
		}
		changed = strings.Replace(changed, fmt.Sprintf("backend %q {\n    address = \"10.90.2.2%s\"\n    weight  = ", be, be[2:]),
			fmt.Sprintf("backend %q {\n    address = \"10.90.2.2%s\"\n    weight  = 1", be, be[2:]), 1)
	}
	reload(changed, `msg="configuration applied"`)
	if got := ask(); got != first {
		t.Fatalf("after a reload that kept %s up, the connection moved to %s", first, got)
	}
	s, err := l.RunClient(b["xlb-client"], "-n", "200", "-c", "8")
	if err != nil || s.OK != 200 {
		t.Fatalf("new connections after the reload: %+v %v", s, err)
	}
	if s.Backends[removed] != 0 {
		t.Errorf("drained backend %s got %d new connections: %v", removed, s.Backends[removed], s.Backends)
	}
}

// TestHealthCheckedBackend: with http and tcp health checks on the pool
// (two plugins: http declared by path and checksum, tcp the built-in from
// xlbd's default plugin directory), a backend that stops answering is marked down
// within interval × fall (+ timeout), new connections avoid it (none
// fails), and it gets traffic again after both methods pass rise times.
func TestHealthCheckedBackend(t *testing.T) {
	l, b := serving(t, false)
	config := labConfig(t, "GREEncap")
	src, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	// The http plugin is declared as an operator would: path and checksum.
	bin, err := os.ReadFile(b["http"])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	src = fmt.Appendf(src, "\nplugin \"http\" {\n  path   = %q\n  sha256 = %q\n}\n", b["http"], hex.EncodeToString(sum[:]))
	// The lab's own check, made faster, and a second method.
	const interval, timeout, fall = 200 * time.Millisecond, 150 * time.Millisecond, 2
	labCheck := regexp.MustCompile(`(?s)  health_check "http" \{.*?\n  \}\n`)
	if !labCheck.Match(src) {
		t.Fatal("examples/lab/lab.hcl no longer has an http health check; update this test")
	}
	withHC := labCheck.ReplaceAllLiteralString(string(src), fmt.Sprintf(`  health_check "http" {
    interval      = "%v"
    timeout       = "%v"
    rise          = 2
    fall          = %d
    port          = 80
    path          = "/"
    expect_status = [200]
  }
  health_check "tcp" {
    interval = "%[1]v"
    timeout  = "%[2]v"
    port     = 80
  }
`, interval, timeout, fall))
	if err := os.WriteFile(config, []byte(withHC), 0o644); err != nil {
		t.Fatal(err)
	}
	x, err := l.StartXLBD(l.LB(0), b["xlbd"], config, "-var", "interface="+l.LB(0).Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Stop()
	if !strings.Contains(x.Log(), "plugin=http path="+b["http"]+" checksum_verified=true") ||
		!strings.Contains(x.Log(), "plugin=tcp path="+b["tcp"]+" checksum_verified=false") {
		t.Errorf("the http plugin was not started from its plugin block with its checksum, or tcp not as the built-in:\n%s", x.Log())
	}
	waitLog := func(mark int, subs ...string) time.Duration {
		t.Helper()
		took, err := x.WaitLog(mark, 10*time.Second, subs...)
		if err != nil {
			t.Fatal(err)
		}
		return took
	}
	requests := func(n int) client.Summary {
		t.Helper()
		s, err := l.RunClient(b["xlb-client"], "-n", strconv.Itoa(n), "-c", "8")
		if err != nil || s.OK != n {
			t.Fatalf("%d requests: %+v %v", n, s, err)
		}
		return s
	}
	if s := requests(200); len(s.Backends) != 3 {
		t.Fatalf("before the failure: %v, want all three backends", s.Backends)
	}

	be2, _ := l.Backend("be2")
	mark := x.LogMark()
	if err := l.SetLink(be2, false); err != nil {
		t.Fatal(err)
	}
	took := waitLog(mark, `msg="backend unhealthy: no new flows, its flows are re-selected"`, "backend=be2")
	t.Logf("be2 marked down %v after its link went down (interval %v × fall %d + timeout %v = %v)", took, interval, fall, timeout, interval*fall+timeout)
	if s := requests(200); s.Backends["be2"] != 0 {
		t.Errorf("be2 is down but served %d of %v", s.Backends["be2"], s.Backends)
	}

	mark = x.LogMark()
	if err := l.SetLink(be2, true); err != nil {
		t.Fatal(err)
	}
	waitLog(mark, `msg="backend healthy"`, "backend=be2")
	if s := requests(200); s.Backends["be2"] == 0 {
		t.Errorf("be2 is up again but served nothing: %v", s.Backends)
	}
	// The tables xlbd prints at exit tell the story: be2 went down and up
	// once, both plugins ran without a restart. Overruns (a batch of
	// probes slower than the interval) depend on the machine's load, and
	// are not counted here.
	out, err := x.Stop()
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^be2 +true +false +2 +http up \(status 200\), tcp up$`, `(?m)^be1 +true +false +0 `,
		`(?m)^http +running +\S+ +0 *$`, `(?m)^tcp +running +\S+ +0 *$`, `(?m)^web +http +3 +\d+ +\d+ +0 +0 +\d+ *$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("xlbd's exit tables do not match %s:\n%s", re, out)
		}
	}
}

// TestRunWithCapabilitiesOnly: xlbd runs as nobody with exactly the
// capabilities examples/systemd/xlbd.service grants (its
// AmbientCapabilities, also as the bounding set), attaches its program,
// binds its socket and forwards: the unit needs no root.
func TestRunWithCapabilitiesOnly(t *testing.T) {
	setpriv := testenv.RequireTool(t, "setpriv")
	unit, err := os.ReadFile("../examples/systemd/xlbd.service")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "AmbientCapabilities="); ok {
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	if len(caps) == 0 {
		t.Fatal("examples/systemd/xlbd.service has no AmbientCapabilities line")
	}
	set := strings.Join(caps, ",")
	l, b := serving(t, false)

	// What nobody runs must be readable by it: the test's binaries and
	// files are in directories only root may enter.
	dir, err := os.MkdirTemp("", "xlb-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	copyFile := func(from, to string, mode os.FileMode) {
		t.Helper()
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(b["xlbd"], filepath.Join(dir, "xlbd"), 0o755)
	copyFile(b["http"], filepath.Join(dir, "plugins", "http"), 0o755)
	copyFile(labConfig(t, "GREEncap"), filepath.Join(dir, "lab.hcl"), 0o644)

	wrap := []string{setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		"--inh-caps=-all," + set, "--ambient-caps=-all," + set, "--bounding-set=-all," + set}
	x, err := l.StartXLBDWith(l.LB(0), wrap, filepath.Join(dir, "xlbd"), filepath.Join(dir, "lab.hcl"),
		"-var", "interface="+l.LB(0).Iface, "-admin-socket", "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", x.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), "\nUid:\t65534\t65534\t65534\t65534\n") {
		t.Errorf("xlbd does not run as nobody:\n%s", st)
	}
	s, err := l.RunClient(b["xlb-client"], "-url", "http://"+l.VIP().String()+"/", "-n", "200", "-c", "8")
	if err != nil || s.OK != 200 {
		t.Fatalf("through xlbd run as nobody: %+v %v\n%s", s, err, x.Log())
	}
	if _, err := x.Stop(); err != nil {
		t.Errorf("xlbd: %v\n%s", err, x.Log())
	}
}
