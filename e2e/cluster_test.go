package e2e_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/xlbproject/xlb/e2e/client"
	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

// The cluster tests run examples/cluster/cluster.hcl on LB nodes behind
// the lab router's BIRD, which learns each VIP from every node over eBGP
// and spreads the flows over them by ECMP (docs/cluster.md). Each test
// holds 300 keep-alive connections (half to the IPv4 VIP, half to the
// IPv6 one), each asking for a page every 100 ms, while a node dies,
// drains, joins, or loses its announcer, and checks that every connection
// lives on with the backend it had. Lines starting "cluster:" are the
// measurements docs/cluster.md reports.

// The VIPs of examples/cluster/cluster.hcl: web4 and web6 are the lab's
// VIPs, api4 the next IPv4 address.
var (
	web4 = netip.PrefixFrom(lab.VIP4, 32)
	web6 = netip.PrefixFrom(lab.VIP6, 128)
	api4 = netip.PrefixFrom(lab.VIP4.Next(), 32)
)

const (
	heldConns    = 300
	heldInterval = 100 * time.Millisecond
	// drainTime is cluster.hcl's drain_time.
	drainTime = 2 * time.Second
	// converge bounds the wait for a route change at the router: BGP
	// sessions (re)start within seconds here, but the machine is shared.
	converge = 30 * time.Second
)

// cluster is a lab of four LB nodes (three started, one to join) and four
// backends (be4 alone serves the VIP api4).
type cluster struct {
	t      *testing.T
	l      *lab.Lab
	bird   *lab.Bird
	bins   map[string]string
	config string
	nodes  []*lab.XLBD // by LB index; nil: not running
	// extra returns node i's arguments beyond the common ones; nil: none.
	extra func(i int) []string
}

// newCluster builds the lab and starts xlbd on the first three nodes,
// returning once the router routes every VIP over all three. bgp tunes
// the router's sessions; config is the file the nodes run.
func newCluster(t *testing.T, bgp lab.BGP, config string) *cluster {
	t.Helper()
	c := newClusterLab(t, bgp, config)
	for i := range 3 {
		c.start(i)
	}
	c.waitRoutes(0, 1, 2)
	return c
}

// newClusterLab builds newCluster's lab and starts its backends, but no
// xlbd.
func newClusterLab(t *testing.T, bgp lab.BGP, config string) *cluster {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird")
	testenv.RequireTool(t, "birdc")
	b := binaries(t)
	l := lab.New(t, lab.Topology{LBNodes: 4, Backends: []string{"be1", "be2", "be3", "be4"}, IPv6: true, BGP: &bgp})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, l: l, bird: l.Bird(), bins: b, config: config, nodes: make([]*lab.XLBD, 4)}
}

// start runs xlbd on node i. Workers are not pinned: four nodes share the
// machine's two cores.
func (c *cluster) start(i int) {
	c.t.Helper()
	n := c.l.LB(i)
	args := []string{"-var", "node=" + strconv.Itoa(i+1), "-var", "interface=" + n.Iface, "-pin=false"}
	if c.extra != nil {
		args = append(args, c.extra(i)...)
	}
	x, err := c.l.StartXLBD(n, c.bins["xlbd"], c.config, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i] = x
}

// hops are the router's next hops for a VIP announced by the given nodes.
func (c *cluster) hops(p netip.Prefix, nodes ...int) []netip.Addr {
	var out []netip.Addr
	for _, i := range nodes {
		if p.Addr().Is4() {
			out = append(out, c.l.LB(i).Addr4)
		} else {
			out = append(out, c.l.LB(i).Addr6)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// waitRoutes waits until the router routes every VIP over exactly nodes,
// and returns how long the slowest took.
func (c *cluster) waitRoutes(nodes ...int) time.Duration {
	c.t.Helper()
	var took time.Duration
	for _, p := range []netip.Prefix{web4, web6, api4} {
		d, err := c.bird.WaitNextHops(p, c.hops(p, nodes...), converge)
		if err != nil {
			c.t.Fatalf("%s: %v", p, err)
		}
		took = max(took, d)
	}
	return took
}

// waitHops waits until the router routes p over nodes (none: no route)
// and returns how long that took.
func (c *cluster) waitHops(p netip.Prefix, nodes ...int) time.Duration {
	c.t.Helper()
	d, err := c.bird.WaitNextHops(p, c.hops(p, nodes...), converge)
	if err != nil {
		c.t.Fatalf("%s: %v", p, err)
	}
	return d
}

// hold opens the held connections through both web VIPs and waits until
// each has answered three times.
func (c *cluster) hold() (*client.Held, client.Snapshot) {
	c.t.Helper()
	targets := []netip.AddrPort{netip.AddrPortFrom(web4.Addr(), 80), netip.AddrPortFrom(web6.Addr(), 80)}
	h, s := lab.Hold(c.t, c.l, client.HoldOptions{Conns: heldConns, Targets: targets, Interval: heldInterval}, 3)
	lab.CheckHeld(c.t, s, heldInterval)
	return h, s
}

// received is how many packets node i's interface has received.
func (c *cluster) received(i int) uint64 {
	c.t.Helper()
	n := c.l.LB(i)
	h, err := c.l.Handle(n.NS)
	if err != nil {
		c.t.Fatal(err)
	}
	defer h.Close()
	link, err := h.LinkByName(n.Iface)
	if err != nil {
		c.t.Fatal(err)
	}
	return link.Attrs().Statistics.RxPackets
}

// spread checks that every given node carries some of the held
// connections' packets: at 100 ms per request, 300 connections send
// about 6,000 packets a second, and a node with no flow gets only BGP's
// few.
func (c *cluster) spread(nodes ...int) {
	c.t.Helper()
	before := make([]uint64, len(nodes))
	for k, i := range nodes {
		before[k] = c.received(i)
	}
	time.Sleep(time.Second)
	var got []string
	for k, i := range nodes {
		d := c.received(i) - before[k]
		got = append(got, fmt.Sprintf("%s %d", c.l.LB(i).Name, d))
		if d < 200 {
			c.t.Errorf("%s received %d packets in a second: ECMP gives it no flow", c.l.LB(i).Name, d)
		}
	}
	c.t.Logf("packets per node in one second: %s", strings.Join(got, ", "))
}

// survived stops h after every connection answered three more times than
// in since, and checks that each one lived, without an error, on the
// backend it had in before. It returns the final snapshot.
func (c *cluster) survived(h *client.Held, before, since client.Snapshot) client.Snapshot {
	c.t.Helper()
	lab.WaitAnswers(c.t, h, since, 3)
	s := h.Stop()
	sum := s.Summary
	if sum.Alive != heldConns || sum.Dead != 0 || sum.Errors != 0 || sum.Moved != 0 {
		c.t.Errorf("connections: %+v (first error %s)", sum, sum.FirstError)
	}
	for i, conn := range s.Conns {
		if conn.Backend() != before.Conns[i].Backend() {
			c.t.Errorf("%s: backend %q, was %q", conn.Local, conn.Backend(), before.Conns[i].Backend())
		}
	}
	return s
}

// report logs one measurement line for docs/cluster.md.
func (c *cluster) report(test string, s client.Snapshot, format string, args ...any) {
	c.t.Logf("cluster: %s: %d of %d connections survived on their backend, longest stall %v; %s", test,
		s.Summary.Alive-s.Summary.Moved, s.Summary.Conns, s.Summary.MaxStall.Round(time.Millisecond), fmt.Sprintf(format, args...))
}

// pluginPid returns the PID of xlbd x's announcer plugin process (the
// built-in bgp), waiting until there is one other than not.
func pluginPid(t *testing.T, x *lab.XLBD, not int) int {
	t.Helper()
	deadline := time.Now().Add(converge)
	for time.Now().Before(deadline) {
		for _, pid := range children(x.Pid()) {
			if pid != not && comm(pid) == "bgp" {
				return pid
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no bgp plugin process under xlbd %d", x.Pid())
	return 0
}

// children lists the processes whose parent is ppid.
func children(ppid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// After "pid (comm) state": the parent's PID.
		rest := string(st[strings.LastIndexByte(string(st), ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

// recorded waits until w has recorded the router's route to p over nodes.
func (c *cluster) recorded(w *lab.RouteWatch, p netip.Prefix, nodes ...int) {
	c.t.Helper()
	if err := w.Wait(p, c.hops(p, nodes...), converge); err != nil {
		c.t.Fatal(err)
	}
}

// routeChanges are w's changes after each prefix's first entry, which is
// its state when the watch began.
func routeChanges(w *lab.RouteWatch) []lab.RouteChange {
	seen := map[netip.Prefix]bool{}
	var out []lab.RouteChange
	for _, ch := range w.Changes() {
		if seen[ch.Prefix] {
			out = append(out, ch)
		}
		seen[ch.Prefix] = true
	}
	return out
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// established waits until BIRD's sessions with node i are up again.
func (c *cluster) established(i int) {
	c.t.Helper()
	deadline := time.Now().Add(converge)
	for _, proto := range []string{c.l.LB(i).Name + "_v4", c.l.LB(i).Name + "_v6"} {
		for {
			out, err := c.bird.Cmd("show", "protocols", proto)
			if err == nil && strings.Contains(out, "Established") {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("BIRD's session %s not established: %s %v", proto, out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// clusterConfig is examples/cluster/cluster.hcl, absolute: xlbd runs in
// another directory.
func clusterConfig(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("../examples/cluster/cluster.hcl")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// editedClusterConfig writes examples/cluster/cluster.hcl with every
// occurrence of each edit's first text replaced by its second, as name in
// a temporary directory, and returns its path. An edit whose text the file
// does not hold fails the test: the example changed under it.
func editedClusterConfig(t *testing.T, name string, edits ...[2]string) string {
	t.Helper()
	src, err := os.ReadFile(clusterConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, e := range edits {
		if !strings.Contains(s, e[0]) {
			t.Fatalf("examples/cluster/cluster.hcl no longer has %q; update this test", e[0])
		}
		s = strings.ReplaceAll(s, e[0], e[1])
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestClusterKill: SIGKILL one xlbd of three. Its announcer, told by the
// kernel that its parent died, ends its BGP sessions with a Cease, so the
// router drops the node at once; the node's flows move to the two
// survivors, which pick the same backends.
func TestClusterKill(t *testing.T) {
	c := newCluster(t, lab.BGP{}, clusterConfig(t))
	h, before := c.hold()
	c.spread(0, 1, 2)
	w := c.bird.Watch(web4, web6)
	defer w.Close()
	if err := c.nodes[2].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	gone4, gone6 := c.waitHops(web4, 0, 1), c.waitHops(web6, 0, 1)
	c.recorded(w, web4, 0, 1)
	c.recorded(w, web6, 0, 1)
	at := h.Snapshot()
	s := c.survived(h, before, at)
	c.report("SIGKILL one xlbd", s, "router removed the node's paths %v (IPv4) and %v (IPv6) after the kill, %d route changes",
		gone4.Round(time.Millisecond), gone6.Round(time.Millisecond), len(routeChanges(w)))
	for _, ch := range routeChanges(w) {
		t.Logf("route change at +%v: %s via %v", ch.Time.Sub(killed).Round(time.Millisecond), ch.Prefix, ch.NextHops)
	}
}

// TestClusterTerm: SIGTERM one node. It withdraws its routes first, keeps
// forwarding for the drain time while the router moves its flows, then
// stops: no connection waits longer than the drain time.
func TestClusterTerm(t *testing.T) {
	c := newCluster(t, lab.BGP{}, clusterConfig(t))
	h, before := c.hold()
	c.spread(0, 1, 2)
	at := h.Snapshot()
	sent := time.Now()
	exited := make(chan time.Time, 1)
	go func() {
		_, err := c.nodes[1].Stop()
		if err != nil {
			t.Errorf("xlbd on lb2: %v", err)
		}
		exited <- time.Now()
	}()
	gone4, gone6 := c.waitHops(web4, 0, 2), c.waitHops(web6, 0, 2)
	withdrawn := time.Now()
	end := <-exited
	if end.Sub(withdrawn) < drainTime/2 {
		t.Errorf("xlbd exited %v after the router lost its routes: it did not drain for %v", end.Sub(withdrawn), drainTime)
	}
	s := c.survived(h, before, at)
	if s.Summary.MaxStall > drainTime {
		t.Errorf("longest stall %v, more than the drain time %v", s.Summary.MaxStall, drainTime)
	}
	c.report("SIGTERM one node", s, "routes withdrawn %v (IPv4) and %v (IPv6) after SIGTERM, xlbd exited %v after it",
		gone4.Round(time.Millisecond), gone6.Round(time.Millisecond), end.Sub(sent).Round(time.Millisecond))
}

// TestClusterJoin: a fourth node joins. ECMP moves some flows to it; it
// has none of them in its ConnTrack, and its MaglevSelect picks the
// backends the others picked.
func TestClusterJoin(t *testing.T) {
	c := newCluster(t, lab.BGP{}, clusterConfig(t))
	h, before := c.hold()
	at := h.Snapshot()
	started := time.Now()
	c.start(3)
	ready := time.Now()
	c.waitRoutes(0, 1, 2, 3)
	added := time.Now()
	c.spread(0, 1, 2, 3)
	s := c.survived(h, before, at)
	c.report("a fourth node joins", s, "router added it %v after xlbd started, %v after its pipeline ran",
		added.Sub(started).Round(time.Millisecond), added.Sub(ready).Round(time.Millisecond))
}

// TestClusterLastBackend: api4's only backend fails its health check:
// every node withdraws api4 (no node can serve it), and announces it again
// when the backend is back. The web VIPs stay.
func TestClusterLastBackend(t *testing.T) {
	c := newCluster(t, lab.BGP{}, clusterConfig(t))
	be4, _ := c.l.Backend("be4")
	if err := c.l.SetLink(be4, false); err != nil {
		t.Fatal(err)
	}
	down := c.waitHops(api4)
	if hops, err := c.bird.NextHops(web4); err != nil || !slices.Equal(hops, c.hops(web4, 0, 1, 2)) {
		t.Errorf("web4 via %v (%v) while api4 was down, want all three nodes", hops, err)
	}
	if err := c.l.SetLink(be4, true); err != nil {
		t.Fatal(err)
	}
	up := c.waitHops(api4, 0, 1, 2)
	t.Logf("cluster: last backend down: api4 withdrawn by every node %v after be4's link went down, announced again %v after it came back (health checks every 500 ms, fall 2, rise 2)",
		down.Round(time.Millisecond), up.Round(time.Millisecond))
}

// TestClusterAnnouncerKilled: the announcer plugin of one node is SIGKILLed
// three times. The router keeps the node's routes by BGP graceful restart
// while xlbd restarts the plugin, which takes the routes back: no
// connection notices.
func TestClusterAnnouncerKilled(t *testing.T) {
	c := newCluster(t, lab.BGP{}, clusterConfig(t))
	h, before := c.hold()
	at := h.Snapshot()
	w := c.bird.Watch(web4, web6, api4)
	defer w.Close()
	pid := pluginPid(t, c.nodes[0], 0)
	for k := range 3 {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		pid = pluginPid(t, c.nodes[0], pid)
		c.established(0)
		t.Logf("kill %d: plugin back as %d, sessions established %v after the kill", k+1, pid, time.Since(killed).Round(time.Millisecond))
	}
	c.waitRoutes(0, 1, 2)
	for _, p := range []netip.Prefix{web4, web6, api4} {
		c.recorded(w, p, 0, 1, 2)
	}
	s := c.survived(h, before, at)
	changes := routeChanges(w)
	c.report("announcer SIGKILLed 3 times", s, "%d route changes at the router", len(changes))
	for _, ch := range changes {
		t.Logf("route change: %s via %v", ch.Prefix, ch.NextHops)
	}
}

// TestClusterSilentDeath: a node hangs (xlbd and its plugins stopped
// by SIGSTOP: nothing is forwarded, no BGP keepalive or BFD packet sent,
// no TCP session closed), as a node that loses power without its link
// going down. Nothing tells the router, which removes the node when its
// hold timer (3 s) expires, or with BFD (100 ms x 3) within about 300 ms.
// (A link set down in the lab would not do: the router's bridge would
// flush the node's MAC address and flood its frames to the other nodes,
// which would forward them.)
func TestClusterSilentDeath(t *testing.T) {
	for _, bfd := range []bool{false, true} {
		name := "hold timer"
		if bfd {
			name = "BFD"
		}
		t.Run(name, func(t *testing.T) {
			config := clusterConfig(t)
			if bfd {
				config = withBFD(t)
			}
			c := newCluster(t, lab.BGP{BFD: bfd}, config)
			h, before := c.hold()
			c.spread(0, 1, 2)
			at := h.Snapshot()
			x := c.nodes[2]
			pids := append(children(x.Pid()), x.Pid())
			for _, pid := range pids {
				if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() {
				for _, pid := range pids {
					_ = syscall.Kill(pid, syscall.SIGCONT)
				}
			})
			gone := c.waitHops(web4, 0, 1)
			s := c.survived(h, before, at)
			c.report("silent node death, "+name, s, "router removed the node %v after it froze", gone.Round(time.Millisecond))
		})
	}
}

// TestClusterSelfCheck: node 3's XDP program is detached behind its
// xlbd's back (as `bpftool link detach` would), so the node can no longer
// forward. Its self-check fails, it withdraws every route, and the router
// moves its flows to the two others.
func TestClusterSelfCheck(t *testing.T) {
	c := newCluster(t, lab.BGP{}, clusterConfig(t))
	h, before := c.hold()
	c.spread(0, 1, 2)
	at := h.Snapshot()
	x := c.nodes[2]
	id := xdpLinkID(t, x.Pid())
	lk, err := link.NewFromID(link.ID(id))
	if err != nil {
		t.Fatal(err)
	}
	mark := x.LogMark()
	err = lk.Detach()
	lk.Close()
	if err != nil {
		t.Fatal(err)
	}
	detached := time.Now()
	gone4, gone6 := c.waitHops(web4, 0, 1), c.waitHops(web6, 0, 1)
	if _, err := x.WaitLog(mark, time.Second, "self-check failed"); err != nil {
		t.Error(err)
	}
	s := c.survived(h, before, at)
	c.report("XDP program detached on one node", s, "the node withdrew; the router removed its paths %v (IPv4) and %v (IPv6) after the detach",
		gone4.Round(time.Millisecond), gone6.Round(time.Millisecond))
	if hops, err := c.bird.NextHops(api4); err != nil || !slices.Equal(hops, c.hops(api4, 0, 1)) {
		t.Errorf("api4 via %v (%v) %v after the detach: want lb1 and lb2 only", hops, err, time.Since(detached))
	}
}

// xdpLinkID returns the ID of the XDP BPF link process pid holds, read from
// its file descriptors' fdinfo as bpftool does.
func xdpLinkID(t *testing.T, pid int) uint32 {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || !strings.Contains(string(b), "link_type:\txdp") {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "link_id:\t"); ok {
				id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
				if err == nil {
					return uint32(id)
				}
			}
		}
	}
	t.Fatalf("xlbd %d holds no XDP link", pid)
	return 0
}

// withBFD writes cluster.hcl with a BFD session to each neighbor.
func withBFD(t *testing.T) string {
	t.Helper()
	return editedClusterConfig(t, "cluster.hcl", [2]string{`keepalive = "1s" }`, `keepalive = "1s", bfd = { min_rx = "100ms", min_tx = "100ms", multiplier = 3 } }`})
}

// TestClusterShards: VIP sharding (docs/cluster.md). cluster.hcl puts web4
// in shard a and web6 in shard b; lb1 and lb2 run shard a, lb3 and lb4
// shard b, and all four serve api4, which names no shard. The router
// routes each VIP over its shard's nodes only. Node lb2 of shard a is
// killed: web4's connections go on through lb1 on their backends, and
// shard b sees nothing: web6's route never changes, so none of its flows
// moves, and none is lost.
func TestClusterShards(t *testing.T) {
	c := newClusterLab(t, lab.BGP{}, clusterConfig(t))
	shard := func(i int) string { return []string{"a", "a", "b", "b"}[i] }
	c.extra = func(i int) []string { return []string{"-var", "shard=" + shard(i), "-var", "nodes=4"} }
	for i := range 4 {
		c.start(i)
	}
	c.waitHops(web4, 0, 1)
	c.waitHops(web6, 2, 3)
	c.waitHops(api4, 0, 1, 2, 3)
	h, before := c.hold()
	c.spread(0, 1, 2, 3)
	w := c.bird.Watch(web4, web6)
	defer w.Close()
	at := h.Snapshot()
	if err := c.nodes[1].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	gone := c.waitHops(web4, 0)
	c.recorded(w, web4, 0)
	s := c.survived(h, before, at)
	var b6 []string
	for _, ch := range routeChanges(w) {
		if ch.Prefix == web6 {
			b6 = append(b6, fmt.Sprintf("%v", ch.NextHops))
		}
	}
	if len(b6) > 0 {
		t.Errorf("shard b's route to web6 changed when a node of shard a died: %v", b6)
	}
	if hops, err := c.bird.NextHops(web6); err != nil || !slices.Equal(hops, c.hops(web6, 2, 3)) {
		t.Errorf("web6 via %v (%v) after the kill: want lb3 and lb4", hops, err)
	}
	if hops, err := c.bird.NextHops(api4); err != nil || !slices.Equal(hops, c.hops(api4, 0, 2, 3)) {
		t.Errorf("api4 via %v (%v) after the kill: want lb1, lb3 and lb4", hops, err)
	}
	var stallA, stallB time.Duration
	for _, conn := range s.Conns {
		if conn.Target.Addr() == web6.Addr() {
			stallB = max(stallB, conn.MaxStall)
		} else {
			stallA = max(stallA, conn.MaxStall)
		}
	}
	c.report("SIGKILL one node of shard a", s, "router removed its web4 path %v after the kill, web6 route changes %d; longest stall shard a %v, shard b %v",
		gone.Round(time.Millisecond), len(b6), stallA.Round(time.Millisecond), stallB.Round(time.Millisecond))
}
