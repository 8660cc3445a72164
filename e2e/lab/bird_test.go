package lab_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

var (
	vip4 = netip.PrefixFrom(lab.VIP4, 32)
	vip6 = netip.PrefixFrom(lab.VIP6, 128)
	// Announced by the node BIRDs too, and refused by the router's
	// import filters: outside the VIP range, or not a host route.
	outside4 = netip.MustParsePrefix("10.90.200.1/32")
	notHost4 = netip.MustParsePrefix("10.90.100.0/24")
	outside6 = netip.MustParsePrefix("fd00:90:200::1/128")
)

// nodeBird is a BIRD in an LB node's namespace standing in for xlb's BGP
// announcer: it announces the VIPs (and prefixes the router must refuse)
// from static blackhole routes over eBGP to the router, and installs no
// kernel route itself.
type nodeBird struct {
	cmd  *exec.Cmd
	sock string
}

type nodeBirdOpts struct {
	as       uint32 // default 65001
	password string
	bfd      bool
}

func startNodeBird(t *testing.T, l *lab.Lab, n lab.Node, o nodeBirdOpts) *nodeBird {
	t.Helper()
	bin := testenv.RequireTool(t, "bird")
	if o.as == 0 {
		o.as = 65001
	}
	six := l.Topology().IPv6
	r := l.Router()
	var c strings.Builder
	fmt.Fprintf(&c, "router id %s;\nlog stderr all;\nprotocol device { }\n", n.Addr4)
	fmt.Fprintf(&c, "protocol static s4 { ipv4; route %s blackhole; route %s blackhole; route %s blackhole; }\n", vip4, outside4, notHost4)
	if six {
		fmt.Fprintf(&c, "protocol static s6 { ipv6; route %s blackhole; route %s blackhole; }\n", vip6, outside6)
	}
	if o.bfd {
		c.WriteString(`protocol bfd { interface "eth0" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }` + "\n")
	}
	session := func(name string, local, peer netip.Addr, ch string) {
		fmt.Fprintf(&c, "protocol bgp %s {\n\tlocal %s as %d;\n\tneighbor %s as 65000;\n", name, local, o.as, peer)
		c.WriteString("\thold time 3; keepalive time 1; connect delay time 1; connect retry time 1; error wait time 1,5;\n")
		if o.password != "" {
			fmt.Fprintf(&c, "\tpassword \"%s\";\n", o.password)
		}
		if o.bfd {
			c.WriteString("\tbfd on;\n")
		}
		fmt.Fprintf(&c, "\t%s { import none; export where source = RTS_STATIC; };\n}\n", ch)
	}
	session("r4", n.Addr4, r.BridgeAddr4, "ipv4")
	if six {
		session("r6", n.Addr6, r.BridgeAddr6, "ipv6")
	}
	dir := filepath.Join(l.Dir(), n.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(c.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	nb := &nodeBird{sock: filepath.Join(dir, "bird.ctl")}
	var err error
	nb.cmd, err = l.Start(n.NS, bin, "-f", "-c", conf, "-s", nb.sock)
	if err != nil {
		t.Fatal(err)
	}
	return nb
}

// kill SIGKILLs the node's BIRD: its kernel closes the sessions' sockets,
// so the router learns at once.
func (nb *nodeBird) kill() {
	_ = nb.cmd.Process.Kill()
}

func hopsOf(ns ...lab.Node) (v4, v6 []netip.Addr) {
	for _, n := range ns {
		v4 = append(v4, n.Addr4)
		if n.Addr6.IsValid() {
			v6 = append(v6, n.Addr6)
		}
	}
	return v4, v6
}

func waitHops(t *testing.T, b *lab.Bird, p netip.Prefix, want []netip.Addr) time.Duration {
	t.Helper()
	d, err := b.WaitNextHops(p, want, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestBird: the router's BIRD learns each VIP from two node BIRDs and
// installs it as one ECMP route over both, refuses prefixes outside the
// VIP range, removes a node's path when that node's BIRD dies, and Watch
// sees every change of the next hops.
func TestBird(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird")
	testenv.RequireTool(t, "birdc")
	l := lab.New(t, lab.Topology{LBNodes: 2, IPv6: true, BGP: &lab.BGP{}})
	b := l.Bird()
	if b == nil {
		t.Fatal("Bird() is nil with Topology.BGP")
	}
	if got := b.BGPConfig(); got != (lab.BGP{RouterAS: 65000, NodeAS: 65001, HoldTime: 3}) {
		t.Errorf("defaults: %+v", got)
	}
	// No static route to the VIPs: BIRD owns them.
	for _, p := range []netip.Prefix{vip4, vip6} {
		if hops, err := b.NextHops(p); err != nil || len(hops) != 0 {
			t.Fatalf("before any session, %s via %v (%v)", p, hops, err)
		}
	}
	w := b.Watch(vip4, vip6)
	defer w.Close()

	lb1, lb2 := l.LB(0), l.LB(1)
	startNodeBird(t, l, lb1, nodeBirdOpts{})
	n2 := startNodeBird(t, l, lb2, nodeBirdOpts{})
	both4, both6 := hopsOf(lb1, lb2)
	d4 := waitHops(t, b, vip4, both4)
	d6 := waitHops(t, b, vip6, both6)
	t.Logf("ECMP route over both nodes after %v (IPv4), %v (IPv6)", d4.Round(time.Millisecond), d6.Round(time.Millisecond))
	for _, p := range []netip.Prefix{outside4, notHost4, outside6} {
		if hops, err := b.NextHops(p); err != nil || len(hops) != 0 {
			t.Errorf("%s is outside the VIP host routes but routed via %v (%v)", p, hops, err)
		}
	}
	// One route with two next hops, as the kernel holds it.
	rh, err := l.Handle(l.Router().NS)
	if err != nil {
		t.Fatal(err)
	}
	defer rh.Close()
	routes, err := rh.RouteGet(lab.VIP4.AsSlice())
	if err != nil || len(routes) != 1 {
		t.Fatalf("route get %s: %v %v", lab.VIP4, routes, err)
	}
	if out, err := b.Cmd("show", "route", "for", lab.VIP4.String()); err != nil || !strings.Contains(out, "10.90.2.11") {
		t.Errorf("birdc show route: %v\n%s", err, out)
	}

	n2.kill()
	one4, one6 := hopsOf(lb1)
	d4 = waitHops(t, b, vip4, one4)
	d6 = waitHops(t, b, vip6, one6)
	t.Logf("lb2's path removed %v (IPv4), %v (IPv6) after its BIRD was killed", d4.Round(time.Millisecond), d6.Round(time.Millisecond))
	for _, err := range []error{w.Wait(vip4, one4, 10*time.Second), w.Wait(vip6, one6, 10*time.Second)} {
		if err != nil {
			t.Error(err)
		}
	}
	w.Close()
	if err := w.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p         netip.Prefix
		both, one []netip.Addr
	}{{vip4, both4, one4}, {vip6, both6, one6}} {
		var seq [][]netip.Addr
		for _, ch := range w.Changes() {
			if ch.Prefix == c.p {
				seq = append(seq, ch.NextHops)
			}
		}
		// From nothing, through both (lb1 may come first), to lb1 alone.
		if len(seq) < 3 || len(seq[0]) != 0 ||
			!slices.Equal(seq[len(seq)-1], c.one) || !slices.ContainsFunc(seq, func(h []netip.Addr) bool { return slices.Equal(h, c.both) }) {
			t.Errorf("%s: changes %v, want [] ... %v ... %v", c.p, seq, c.both, c.one)
		}
		for i := 1; i < len(seq); i++ {
			if slices.Equal(seq[i], seq[i-1]) {
				t.Errorf("%s: change %d repeats %v", c.p, i, seq[i])
			}
		}
		t.Logf("%s: %d changes %v", c.p, len(seq), seq)
	}
}

// TestBirdRefuses: a node with the wrong AS, or the wrong TCP MD5
// password, gets no route in; once the router is configured to match, the
// same node's route comes in.
func TestBirdRefuses(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird")
	testenv.RequireTool(t, "birdc")
	cases := []struct {
		name   string
		router lab.BGP
		node   nodeBirdOpts
		fixed  lab.BGP // the router's configuration that accepts the node
		reason string  // in `birdc show protocols`, when BIRD sees it
	}{
		{name: "WrongAS", node: nodeBirdOpts{as: 65002}, fixed: lab.BGP{NodeAS: 65002}, reason: "Bad peer AS"},
		// A segment with a wrong or missing MD5 signature is dropped by
		// the kernel: the session never gets past Connect/Active.
		{name: "MD5Mismatch", router: lab.BGP{Password: "secret"}, node: nodeBirdOpts{password: "wrong"}, fixed: lab.BGP{Password: "wrong"}},
		{name: "MD5Missing", router: lab.BGP{Password: "secret"}, node: nodeBirdOpts{}, fixed: lab.BGP{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bgp := c.router
			l := lab.New(t, lab.Topology{BGP: &bgp, Backends: []string{"be1"}})
			b := l.Bird()
			startNodeBird(t, l, l.LB(0), c.node)
			// Long enough for a session to come up several times over
			// (connect retry 1 s), had it been accepted.
			deadline := time.Now().Add(2500 * time.Millisecond)
			for time.Now().Before(deadline) {
				if hops, err := b.NextHops(vip4); err != nil || len(hops) != 0 {
					t.Fatalf("route to %s via %v (%v)", vip4, hops, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			out, err := b.Cmd("show", "protocols", "all", "lb1_v4")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "Established") {
				t.Errorf("session established:\n%s", out)
			}
			if c.reason != "" && !strings.Contains(out, c.reason) {
				t.Errorf("want %q in:\n%s", c.reason, out)
			}
			if err := b.Configure(c.fixed); err != nil {
				t.Fatal(err)
			}
			d := waitHops(t, b, vip4, []netip.Addr{l.LB(0).Addr4})
			t.Logf("route in %v after the router was fixed", d.Round(time.Millisecond))
		})
	}
}

// TestBirdFailover: a node that stops answering without closing its
// sessions (its BIRD frozen with SIGSTOP, as a hung or powered-off node)
// loses its path after the hold time, or within BFD's 300 ms detection
// time with BFD.
func TestBirdFailover(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird")
	testenv.RequireTool(t, "birdc")
	for _, bfd := range []bool{false, true} {
		t.Run(fmt.Sprintf("BFD=%v", bfd), func(t *testing.T) {
			l := lab.New(t, lab.Topology{LBNodes: 2, Backends: []string{"be1"}, BGP: &lab.BGP{BFD: bfd}})
			b := l.Bird()
			lb1, lb2 := l.LB(0), l.LB(1)
			startNodeBird(t, l, lb1, nodeBirdOpts{bfd: bfd})
			n2 := startNodeBird(t, l, lb2, nodeBirdOpts{bfd: bfd})
			both, _ := hopsOf(lb1, lb2)
			waitHops(t, b, vip4, both)
			if bfd {
				// The BFD session comes up a little after BGP.
				deadline := time.Now().Add(5 * time.Second)
				for {
					out, err := b.Cmd("show", "bfd", "sessions")
					if err != nil {
						t.Fatal(err)
					}
					if strings.Count(out, " Up ") == 2 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("BFD sessions not up:\n%s", out)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			if err := n2.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			defer n2.cmd.Process.Kill()
			one, _ := hopsOf(lb1)
			d := waitHops(t, b, vip4, one)
			t.Logf("a frozen node's path removed after %v (hold time 3 s, BFD %v)", d.Round(time.Millisecond), bfd)
		})
	}
}
