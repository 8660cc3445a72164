package e2e_test

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/client"
	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

// floodCapacity is ConnTrack's capacity per worker in TestSYNFlood: small,
// so that the flood is many times the table.
const floodCapacity = 4096

// floodSYNRate is RxXDP's syn_rate in TestSYNFlood: the SYNs a second the
// XDP program lets through to xlbd's socket, below what xlbd takes on the
// lab's 2-core VM while the generator runs (about 79,000 a second), so
// that the flood's excess never fills the RX ring that the held
// connections' segments share.
const floodSYNRate = 30000

// floodConfig is trafgen's packet for TestSYNFlood: a TCP SYN to VIP:80
// from a random source in 10.91.0.0/16, random port and sequence number,
// so that nearly every packet is a new flow. 10.91/16 is routed nowhere:
// the backends' SYN-ACKs die at the router.
func floodConfig(dst, src net.HardwareAddr) string {
	return fmt.Sprintf(`/* TestSYNFlood: random SYNs to the VIP. */
{
  eth(da=%s, sa=%s),
  ipv4(sa=10.91.0.0, sa[2]=drnd(), sa[3]=drnd(), da=%s, ttl=64, df),
  tcp(sp=drnd(), dp=80, syn, seq=drnd(), win=1024),
  fill(0, 6)
}
`, dst, src, lab.VIP4)
}

// floodDuration is how long TestSYNFlood floods: $XLB_FLOOD_DURATION (make
// bench-e2e sets 60s), else 10s so that the e2e suite stays short.
func floodDuration(t *testing.T) time.Duration {
	s := os.Getenv("XLB_FLOOD_DURATION")
	if s == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 2*time.Second {
		t.Fatalf("XLB_FLOOD_DURATION=%q: want a duration of at least 2s", s)
	}
	return d
}

// floodRate is trafgen's rate in TestSYNFlood: $XLB_FLOOD_RATE ("max":
// as fast as trafgen goes, which make bench-e2e sets), else 30000pps, ten
// times the table every 1.4 s and short of the CPU the suite's other
// tests share. Unpaced, 180,000 to 310,000 SYNs a second reach the LB
// node on the 2-core VM: without syn_rate, the kernel dropped more than
// half at xlbd's full RX ring, the held connections' segments with them,
// enough in a 60 s run for a request to time out after its
// retransmissions.
func floodRate(t *testing.T) []string {
	switch s := os.Getenv("XLB_FLOOD_RATE"); s {
	case "max":
		return nil
	case "":
		return []string{"-b", "30000pps"}
	default:
		if !strings.HasSuffix(s, "pps") {
			t.Fatalf("XLB_FLOOD_RATE=%q: want \"max\" or a rate such as \"30000pps\"", s)
		}
		return []string{"-b", s}
	}
}

// rssKiB reads the resident set size of process pid.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS line %q: %v", line, err)
			}
			return kb
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// pathCounters are where a packet between the client and a backend can
// be lost outside xlbd's own drop counters: every lab interface's drop
// counts (a veth counts a packet its peer's backlog or XDP ring refused as
// tx_dropped), the host's backlog drops (per CPU, shared by every
// namespace), and the client's TCP retransmissions and timeouts, which
// show whether the held connections' losses were recovered (the backends'
// are mostly their SYN-ACKs to the flood's unrouted sources).
type pathCounters struct {
	links   map[string][2]uint64 // "ns iface": rx_dropped, tx_dropped
	softnet [2]uint64            // dropped, time_squeeze over every CPU
	tcp     map[string]uint64    // the client's, by NetCounters name
}

// tcpCounters are the TCP counters pathCounters reads in the client's
// namespace.
var tcpCounters = []string{"Tcp:RetransSegs", "TcpExt:TCPTimeouts", "TcpExt:TCPLossProbes", "TcpExt:TCPSynRetrans"}

func readPathCounters(t *testing.T, l *lab.Lab) pathCounters {
	t.Helper()
	pc := pathCounters{links: map[string][2]uint64{}, tcp: map[string]uint64{}}
	pfx := l.Prefix()
	for _, ns := range l.Namespaces() {
		h, err := l.Handle(ns)
		if err != nil {
			t.Fatal(err)
		}
		links, err := h.LinkList()
		h.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, lk := range links {
			if st := lk.Attrs().Statistics; st != nil && lk.Type() != "loopback" {
				pc.links[strings.TrimPrefix(ns, pfx)+" "+lk.Attrs().Name] = [2]uint64{st.RxDropped, st.TxDropped}
			}
		}
	}
	c, err := l.NetCounters(l.Client().NS)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range tcpCounters {
		pc.tcp[k] = c[k]
	}
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// Columns: processed, dropped, time_squeeze, ... in hexadecimal.
		f := strings.Fields(line)
		for i := range 2 {
			if v, err := strconv.ParseUint(f[i+1], 16, 64); err == nil {
				pc.softnet[i] += v
			}
		}
	}
	return pc
}

// logPathLoss logs what pathCounters counted between p0 and p1: each
// interface that dropped, the host's backlog drops, the TCP counters.
func logPathLoss(t *testing.T, p0, p1 pathCounters) {
	t.Helper()
	keys := slices.Sorted(maps.Keys(p1.links))
	var drops []string
	for _, k := range keys {
		if d := [2]uint64{p1.links[k][0] - p0.links[k][0], p1.links[k][1] - p0.links[k][1]}; d != [2]uint64{} {
			drops = append(drops, fmt.Sprintf("%s rx +%d tx +%d", k, d[0], d[1]))
		}
	}
	t.Logf("links dropped: %s", cmp.Or(strings.Join(drops, "; "), "none"))
	t.Logf("host backlog (softnet_stat, every namespace): dropped +%d, time_squeeze +%d", p1.softnet[0]-p0.softnet[0], p1.softnet[1]-p0.softnet[1])
	var tcp []string
	for _, k := range slices.Sorted(maps.Keys(p1.tcp)) {
		if d := p1.tcp[k] - p0.tcp[k]; d != 0 {
			tcp = append(tcp, fmt.Sprintf("%s +%d", k, d))
		}
	}
	t.Logf("TCP at the client: %s", cmp.Or(strings.Join(tcp, "; "), "nothing retransmitted"))
}

// floodRSSBound is how far xlbd's RSS may rise during the flood above
// where it stood once the held connections were up: the tables are
// allocated whole at start and nothing is allocated per packet, so what
// moves is the Go runtime's own (metrics scrapes, the reload's new
// snapshot).
const floodRSSBound = 16 << 10 // KiB

// floodRingLoss bounds the packets the kernel drops at xlbd's full RX
// ring, as a share of those xlbd received: with syn_rate, a few in
// 100,000 at the generator's maximum (bursts); without it, more than were
// received.
const floodRingLoss = 0.01

// TestSYNFlood: trafgen floods the VIP from the client's namespace with
// SYNs from random sources, for floodDuration at floodRate (many times the
// ConnTrack capacity of 4,096 per worker, above floodSYNRate at the
// maximum), while 50 long-lived connections exchange requests. Halfway, a reload changes
// be1's weight, so a held connection whose entry the flood had evicted
// would be re-selected and move. Every held connection keeps working and
// keeps its backend, and xlbd's RSS, sampled every second, stays within
// floodRSSBound of where it was before the flood, and the kernel drops
// less than floodRingLoss of what reaches xlbd's socket at its full RX
// ring (the held connections share it). The figures are logged:
// the rate reached, ConnTrack's evictions and untracked flows, drops by
// reason, the kernel's counters of xlbd's AF_XDP sockets, every lab
// interface's drops, the host's backlog drops, the client's TCP
// retransmissions and timeouts, RSS min and max: where a held
// connection's lost segment went is in the output.
func TestSYNFlood(t *testing.T) {
	tg := testenv.RequireTool(t, "trafgen")
	dur := floodDuration(t)
	l, b := serving(t, false)
	src, err := os.ReadFile(labConfig(t, "GREEncap"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "capacity = 65536") {
		t.Fatal("examples/lab/lab.hcl no longer sets capacity = 65536; update this test")
	}
	base := strings.Replace(string(src), "capacity = 65536", fmt.Sprintf("capacity = %d", floodCapacity), 1)
	rx := "element \"RxXDP\" \"rx\" {\n    interface = var.interface\n"
	if !strings.Contains(base, rx) {
		t.Fatal("examples/lab/lab.hcl's RxXDP block changed; update this test")
	}
	base = strings.Replace(base, rx, rx+fmt.Sprintf("    syn_rate = %d\n", floodSYNRate), 1)
	x, _, write := startReloadable(t, l, b["xlbd"], base)
	defer x.Stop()

	const interval = 100 * time.Millisecond
	h, before := lab.Hold(t, l, client.HoldOptions{
		Conns:    50,
		Targets:  []netip.AddrPort{netip.AddrPortFrom(lab.VIP4, 80)},
		Interval: interval,
	}, 3)

	// The client's frames go to the router's leg on its side.
	hd, err := l.Handle(l.Router().NS)
	if err != nil {
		t.Fatal(err)
	}
	link, err := hd.LinkByName(l.Router().ClientIface)
	hd.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "flood.cfg")
	if err := os.WriteFile(cfg, []byte(floodConfig(link.Attrs().HardwareAddr, l.Client().MAC)), 0o644); err != nil {
		t.Fatal(err)
	}

	m0 := scrape(t, l)
	p0 := readPathCounters(t, l)
	rss0 := rssKiB(t, x.Pid())
	minRSS, maxRSS := rss0, rss0
	gen, err := l.Start(l.Client().NS, tg, append([]string{"-o", l.Client().Iface, "-i", cfg, "-P", "1", "--no-sock-mem", "-Q", "-C"}, floodRate(t)...)...)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	reloaded := false
	for time.Since(start) < dur {
		time.Sleep(time.Second)
		r := rssKiB(t, x.Pid())
		minRSS, maxRSS = min(minRSS, r), max(maxRSS, r)
		if !reloaded && time.Since(start) >= dur/2 {
			reloaded = true
			write(reloadConfig(t, base, 1)) // be1's weight 1 becomes 4
			mark := x.LogMark()
			if err := x.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			if _, err := x.WaitLog(mark, 20*time.Second, `msg="configuration applied"`); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = gen.Process.Signal(syscall.SIGINT)
	elapsed := time.Since(start)
	m1 := scrape(t, l)
	p1 := readPathCounters(t, l)

	delta := func(name, label, value string) float64 {
		return m1.sum(name, label, value) - m0.sum(name, label, value)
	}
	pkts := delta("xlb_parse_packets_total", "class", "tcp")
	t.Logf("flood: %.0f TCP packets in %v at xlbd, %.0f/s; ConnTrack capacity %.0f over the workers, so %.0fx the capacity",
		pkts, elapsed.Round(100*time.Millisecond), pkts/elapsed.Seconds(), m1.sum("xlb_conntrack_capacity", "", ""),
		pkts/m1.sum("xlb_conntrack_capacity", "", ""))
	t.Logf("ConnTrack: %.0f learned, %.0f evicted (not established), %.0f untracked (bucket full of established flows), %.0f expired",
		delta("xlb_conntrack_learned_total", "", ""), delta("xlb_conntrack_evictions_total", "", ""),
		delta("xlb_conntrack_untracked_total", "", ""), delta("xlb_conntrack_expired_total", "", ""))
	for k, v := range m1.series("xlb_drop_packets_total") {
		t.Logf("drops: %s %.0f (+%.0f)", k, v, v-m0[k])
	}
	limited, received := delta("xlb_xdp_syn_limited_total", "", ""), delta("xlb_xdp_rx_packets_total", "", "")
	ringLost := delta("xlb_xdp_kernel_rx_ring_full_total", "", "") + delta("xlb_xdp_kernel_rx_dropped_total", "", "")
	t.Logf("XDP: %.0f SYNs over syn_rate %d dropped before the RX ring, %.0f/s; offered to xlbd's socket in all %.0f/s",
		limited, floodSYNRate, limited/elapsed.Seconds(), (limited+received+ringLost)/elapsed.Seconds())
	t.Logf("xlbd's AF_XDP sockets (kernel): %.0f rx_dropped, %.0f rx_ring_full, %.0f fill_ring_empty, %.0f tx_invalid; %.0f receives with the fill ring empty (xlbd)",
		delta("xlb_xdp_kernel_rx_dropped_total", "", ""), delta("xlb_xdp_kernel_rx_ring_full_total", "", ""),
		delta("xlb_xdp_kernel_fill_ring_empty_total", "", ""), delta("xlb_xdp_kernel_tx_invalid_total", "", ""),
		delta("xlb_xdp_fill_starved_total", "", ""))
	logPathLoss(t, p0, p1)
	t.Logf("xlbd RSS: %d KiB before the flood, min %d max %d KiB during it (bound: +%d KiB)", rss0, minRSS, maxRSS, floodRSSBound)
	if maxRSS > rss0+floodRSSBound {
		t.Errorf("xlbd's RSS rose from %d to %d KiB during the flood", rss0, maxRSS)
	}
	if ringLost > floodRingLoss*received {
		t.Errorf("the kernel dropped %.0f packets at xlbd's RX ring, more than %.0f%% of the %.0f received: the flood starves the held connections", ringLost, 100*floodRingLoss, received)
	}
	if capacity := m1.sum("xlb_conntrack_capacity", "", ""); pkts < 10*capacity {
		t.Errorf("the flood reached xlbd with %.0f packets: under 10x the capacity of %.0f", pkts, capacity)
	}

	after := lab.WaitAnswers(t, h, before, 2)
	lab.CheckHeld(t, after, interval)
	fin := h.Stop()
	t.Logf("held connections: %v", fin.Summary)
	if fin.Summary.Alive != fin.Summary.Conns || fin.Summary.Moved != 0 || fin.Summary.Dead != 0 {
		t.Errorf("held connections at the end: %v (first error %s)", fin.Summary, fin.Summary.FirstError)
	}
}
