package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The prefixes the router accepts from LB nodes: host routes of VIPs.
var (
	VIPNet4 = netip.MustParsePrefix("10.90.100.0/24")
	VIPNet6 = netip.MustParsePrefix("fd00:90:100::/64")
)

// BGP makes the router run BIRD 2, peering over eBGP with every LB node,
// instead of holding a static ECMP route to the VIPs (Topology.BGP).
type BGP struct {
	RouterAS uint32 // BIRD's AS; default 65000
	NodeAS   uint32 // the AS BIRD expects of every LB node; default 65001
	Password string // TCP MD5 on every session; "" none
	HoldTime int    // seconds, 0 or at least 3 (BIRD's minimum); default 3; keepalive = hold/3
	BFD      bool   // BIRD `protocol bfd` on br0 and `bfd on` on every session
}

func (b *BGP) setDefaults() error {
	if b.RouterAS == 0 {
		b.RouterAS = 65000
	}
	if b.NodeAS == 0 {
		b.NodeAS = 65001
	}
	if b.HoldTime == 0 {
		b.HoldTime = 3
	}
	if b.HoldTime < 3 || b.HoldTime > 65535 {
		return fmt.Errorf("lab: BGP.HoldTime = %d, want 3 to 65535 seconds", b.HoldTime)
	}
	// BIRD's strings have no escapes.
	if strings.ContainsAny(b.Password, "\"\n") {
		return errors.New("lab: BGP.Password must not hold a double quote or a newline")
	}
	return nil
}

// Bird is the BIRD daemon of the router namespace.
type Bird struct {
	l     *Lab
	conf  string // configuration file
	sock  string // control socket
	mu    sync.Mutex
	bgp   BGP
	birdc string
	cmd   *exec.Cmd
}

// Bird returns the router's BIRD, nil without Topology.BGP.
func (l *Lab) Bird() *Bird { return l.bird }

// startBird writes BIRD's configuration and starts it in the router
// namespace, its control socket, pid file and log file in the lab's
// directory, its output in the lab's log. It returns once the control
// socket answers.
func (l *Lab) startBird() error {
	bin, err := exec.LookPath("bird")
	if err != nil {
		return fmt.Errorf("lab: Topology.BGP needs bird (make tools installs bird2): %w", err)
	}
	birdc, err := exec.LookPath("birdc")
	if err != nil {
		return fmt.Errorf("lab: Topology.BGP needs birdc (make tools installs bird2): %w", err)
	}
	b := &Bird{
		l:     l,
		conf:  filepath.Join(l.dir, "bird.conf"),
		sock:  filepath.Join(l.dir, "bird.ctl"),
		bgp:   *l.topo.BGP,
		birdc: birdc,
	}
	if err := b.writeConfig(); err != nil {
		return err
	}
	// -f: stay in the foreground, a child Down can stop (SIGTERM makes
	// BIRD remove its kernel routes and send every peer a Cease).
	cmd, err := l.Start(l.router.NS, bin, "-f", "-c", b.conf, "-s", b.sock, "-P", filepath.Join(l.dir, "bird.pid"))
	if err != nil {
		return fmt.Errorf("lab: start bird: %w", err)
	}
	b.cmd = cmd
	l.bird = b
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := b.Cmd("show", "status")
		if err == nil && strings.Contains(out, "Daemon is up and running") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: bird not ready within 5 s: %v %s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid is BIRD's process id.
func (b *Bird) Pid() int { return b.cmd.Process.Pid }

// Socket is BIRD's control socket, for birdc -s.
func (b *Bird) Socket() string { return b.sock }

// Cmd runs birdc on this BIRD's control socket: Cmd("show", "protocols").
// The error is birdc's own (it cannot connect); BIRD's answers, errors
// included, are in the output.
func (b *Bird) Cmd(args ...string) (string, error) {
	out, err := exec.Command(b.birdc, append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: birdc %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Configure rewrites BIRD's configuration for bgp (defaults filled as in
// Topology.BGP) and applies it with `birdc configure`. Sessions whose
// settings changed restart.
func (b *Bird) Configure(bgp BGP) error {
	if err := bgp.setDefaults(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.bgp
	b.bgp = bgp
	if err := b.writeConfig(); err != nil {
		b.bgp = old
		return err
	}
	out, err := b.Cmd("configure")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Reconfigured") && !strings.Contains(out, "Reconfiguration in progress") {
		return fmt.Errorf("lab: birdc configure: %s", out)
	}
	return nil
}

// LogFile is where BIRD writes its log, besides the lab's log.
func (b *Bird) LogFile() string { return filepath.Join(b.l.dir, "bird.log") }

// BGPConfig returns the settings BIRD runs with, defaults filled.
func (b *Bird) BGPConfig() BGP {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bgp
}

func (b *Bird) writeConfig() error {
	return os.WriteFile(b.conf, []byte(birdConfig(b.bgp, b.l.router, b.l.lbs, b.l.topo.IPv6, b.LogFile())), 0o600)
}

// birdConfig is the router's BIRD configuration: an eBGP session per LB
// node and family, accepting only VIP host routes, exporting nothing, and
// the kernel protocols that install each VIP as one ECMP route.
func birdConfig(bgp BGP, r Router, lbs []Node, six bool, logFile string) string {
	var c strings.Builder
	fmt.Fprintf(&c, `# Generated by e2e/lab for namespace %s.
router id %s;
log stderr all;
log "%s" all;
debug protocols { states };

# Interfaces: BGP needs them to resolve directly connected neighbors.
protocol device { }

filter vip4 { if net ~ [ %s{32,32} ] then accept; reject; }
filter vip6 { if net ~ [ %s{128,128} ] then accept; reject; }

# One kernel route per VIP with a next hop per node announcing it (ECMP),
# hashed on L4 (fib_multipath_hash_policy=1, set by the lab).
protocol kernel kernel4 {
	merge paths on;
	ipv4 { import none; export where source = RTS_BGP; };
}
`, r.NS, r.BridgeAddr4, logFile, VIPNet4, VIPNet6)
	if six {
		c.WriteString(`protocol kernel kernel6 {
	merge paths on;
	ipv6 { import none; export where source = RTS_BGP; };
}
`)
	}
	if bgp.BFD {
		fmt.Fprintf(&c, `
protocol bfd {
	interface "%s" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
`, r.Bridge)
	}
	session := func(name string, local, peer netip.Addr, channel string) {
		fmt.Fprintf(&c, `
protocol bgp %s {
	local %s as %d;
	neighbor %s as %d;
	hold time %d;
	keepalive time %d;
	# BIRD's defaults (connect delay 5 s, connect retry 120 s, error wait
	# 60 to 300 s) would keep a node that restarted, or whose session
	# failed once (a hold timer expiring when it died, a NOTIFICATION),
	# out of the routes for minutes; the lab's tests restart nodes and
	# measure convergence in seconds. The error wait still grows from 1 to
	# 5 s on repeated errors, so a misconfigured node does not spin.
	connect delay time 1;
	connect retry time 1;
	error wait time 1,5;
`, name, local, bgp.RouterAS, peer, bgp.NodeAS, bgp.HoldTime, max(1, bgp.HoldTime/3))
		if bgp.Password != "" {
			fmt.Fprintf(&c, "\tpassword \"%s\";\n", bgp.Password)
		}
		if bgp.BFD {
			c.WriteString("\tbfd on;\n")
		}
		fmt.Fprintf(&c, "\t%s { import filter vip%s; export none; };\n}\n", channel, channel[len(channel)-1:])
	}
	for _, n := range lbs {
		session(n.Name+"_v4", r.BridgeAddr4, n.Addr4, "ipv4")
		if six {
			session(n.Name+"_v6", r.BridgeAddr6, n.Addr6, "ipv6")
		}
	}
	return c.String()
}

// NextHops returns the next hops of the router namespace's kernel route
// for p (main table), sorted; none when there is no such route.
func (b *Bird) NextHops(p netip.Prefix) ([]netip.Addr, error) {
	h, err := b.l.Handle(b.l.router.NS)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return nextHops(h, p)
}

func nextHops(h *netlink.Handle, p netip.Prefix) ([]netip.Addr, error) {
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	routes, err := h.RouteListFiltered(fam, &netlink.Route{Dst: prefixNet(p)}, netlink.RT_FILTER_DST)
	if err != nil {
		return nil, fmt.Errorf("lab: routes to %s: %w", p, err)
	}
	var hops []netip.Addr
	add := func(gw []byte) {
		if a, ok := netip.AddrFromSlice(gw); ok {
			hops = append(hops, a.Unmap())
		}
	}
	for _, r := range routes {
		add(r.Gw)
		for _, nh := range r.MultiPath {
			add(nh.Gw)
		}
	}
	slices.SortFunc(hops, netip.Addr.Compare)
	return slices.Compact(hops), nil
}

// WaitNextHops waits up to timeout until the router's route for p has
// exactly the next hops want (none: no route), and returns how long it
// waited.
func (b *Bird) WaitNextHops(p netip.Prefix, want []netip.Addr, timeout time.Duration) (time.Duration, error) {
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	h, err := b.l.Handle(b.l.router.NS)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	start := time.Now()
	for {
		got, err := nextHops(h, p)
		if err != nil {
			return time.Since(start), err
		}
		if slices.Equal(got, want) {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			proto, _ := b.Cmd("show", "protocols")
			return time.Since(start), fmt.Errorf("lab: route to %s via %v after %v, want %v; bird:\n%s", p, got, timeout, want, proto)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Masked().Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// RouteChange is the set of next hops the router's kernel holds for a
// prefix from Time on; none: the route is gone.
type RouteChange struct {
	Time     time.Time
	Prefix   netip.Prefix
	NextHops []netip.Addr
}

// RouteWatch records the changes of the router's routes to some prefixes.
type RouteWatch struct {
	mu      sync.Mutex
	changes []RouteChange
	done    chan struct{}
	stopped chan struct{}
	err     error
}

// Watch starts recording every change of the router namespace's kernel
// routes to prefixes, from netlink route notifications. After each
// notification for a watched prefix it reads that prefix's route back and
// records its next hops when they differ from the last ones recorded, so
// a change is a new next-hop set (a replace the kernel reports as delete
// and add is one change; a state undone faster than one read may be
// missed). The first change of each prefix is its state when Watch began.
// Close stops it.
func (b *Bird) Watch(prefixes ...netip.Prefix) *RouteWatch {
	w := &RouteWatch{done: make(chan struct{}), stopped: make(chan struct{})}
	h, err := b.l.Handle(b.l.router.NS)
	if err != nil {
		w.err = err
		close(w.stopped)
		return w
	}
	ns, err := netns.GetFromName(b.l.router.NS)
	if err != nil {
		h.Close()
		w.err = err
		close(w.stopped)
		return w
	}
	defer ns.Close()
	ch := make(chan netlink.RouteUpdate, 256)
	err = netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{
		Namespace:     &ns,
		ErrorCallback: func(err error) { w.setErr(err) },
	})
	if err != nil {
		h.Close()
		w.err = err
		close(w.stopped)
		return w
	}
	last := map[netip.Prefix][]netip.Addr{}
	read := func(p netip.Prefix) {
		hops, err := nextHops(h, p)
		if err != nil {
			w.setErr(err)
			return
		}
		if prev, ok := last[p]; ok && slices.Equal(prev, hops) {
			return
		}
		last[p] = hops
		w.mu.Lock()
		w.changes = append(w.changes, RouteChange{Time: time.Now(), Prefix: p, NextHops: hops})
		w.mu.Unlock()
	}
	// Subscribed first, read second: no change falls between the two.
	for _, p := range prefixes {
		read(p)
	}
	go func() {
		defer close(w.stopped)
		defer h.Close()
		for u := range ch {
			if u.Dst == nil {
				continue
			}
			a, ok := netip.AddrFromSlice(u.Dst.IP)
			if !ok {
				continue
			}
			ones, _ := u.Dst.Mask.Size()
			p := netip.PrefixFrom(a.Unmap(), ones)
			if slices.Contains(prefixes, p) {
				read(p)
			}
		}
	}()
	return w
}

func (w *RouteWatch) setErr(err error) {
	select {
	case <-w.done:
		return // the subscription's socket closed by Close
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// Changes returns the changes recorded so far, in order.
func (w *RouteWatch) Changes() []RouteChange {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.changes)
}

// Wait waits until the last change recorded for p has next hops hops (none:
// no route). The kernel's route can reach a state (NextHops reads it)
// before the watch has read the notification of it: wait here before
// Close, or the last change may not be recorded yet.
func (w *RouteWatch) Wait(p netip.Prefix, hops []netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var last []netip.Addr
		found := false
		w.mu.Lock()
		for i := len(w.changes) - 1; i >= 0; i-- {
			if w.changes[i].Prefix == p {
				last, found = w.changes[i].NextHops, true
				break
			}
		}
		err := w.err
		w.mu.Unlock()
		if found && slices.Equal(last, hops) {
			return nil
		}
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: the watch of %s recorded %v last, not %v, within %v", p, last, hops, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Err returns the first error of the watch (its subscription or a read),
// nil if none.
func (w *RouteWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watch; Changes stays readable.
func (w *RouteWatch) Close() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	<-w.stopped
}
