package bench

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/e2e/backend"
	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

func TestParseSchedstat(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		// on-CPU ns, run-queue wait ns, time slices
		{"178213282 21014716 433\n", 178213282 * time.Nanosecond, true},
		{"0 0 0\n", 0, true}, // what a kernel without sched_info prints
		{"178213282 21014716\n", 0, false},
		{"x 1 2\n", 0, false},
	} {
		got, err := parseSchedstat(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSchedstat(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseStat(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime prio nice threads 0
	// starttime vsize rss rsslim startcode endcode startstack kstkesp
	// kstkeip signal blocked sigignore sigcatch wchan nswap cnswap
	// exit_signal processor ...; the name may hold spaces and ")".
	in := "14996 (a b) c)) R 14992 14990 3170 0 -1 4194304 163 0 0 0 271 1194 0 0 20 0 1 0 541186 " +
		"1 2 3 4 5 6 7 8 9 10 11 12 0 0 0 17 1 0 0\n"
	got, err := parseStat(in)
	want := taskStat{name: "a b) c)", pgrp: 14990, utime: 271, stime: 1194, cpu: 1}
	if err != nil || got != want {
		t.Errorf("parseStat = %+v, %v; want %+v", got, err, want)
	}
	if _, err := parseStat("14996 (x) R 1 2 3\n"); err == nil {
		t.Error("parseStat of a short line: no error")
	}
}

func TestParseCPU(t *testing.T) {
	stat := `cpu  267970 0 104709 616251 4715 0 3213 995 0 0
cpu0 132948 0 49107 313117 2061 0 1226 479 0 0
cpu1 135021 1 55602 303133 2653 7 1986 515 0 0
intr 1 2 3
`
	got, err := parseCPU(stat, 1)
	if err != nil {
		t.Fatal(err)
	}
	// user + nice + system + irq + softirq, in 10 ms ticks
	busy := time.Duration(135021+1+55602+7+1986) * 10 * time.Millisecond
	if got.busy != busy || got.steal != 515*10*time.Millisecond {
		t.Errorf("parseCPU(1) = %+v; want busy %v", got, busy)
	}
	if _, err := parseCPU(stat, 2); err == nil {
		t.Error("parseCPU of a missing CPU: no error")
	}
}

func TestFill(t *testing.T) {
	at := time.Unix(1000, 0)
	th := func(pid, pgrp, cpu int, name string, run time.Duration, utime, stime uint64) thread {
		return thread{taskStat: taskStat{name: name, pgrp: pgrp, cpu: cpu, utime: utime, stime: stime}, pid: pid, run: run}
	}
	xs := func(full uint64) map[string]XSKStats {
		return map[string]XSKStats{"socket:[77]": {RxFull: full, FillEmpty: full / 10}}
	}
	who := roles{lb: 7, gen: 40, self: 50, cpus: [2]int{0, 1}}
	s0 := sample{at: at,
		gen: netlink.LinkStatistics{TxPackets: 1000, TxDropped: 10, RxPackets: 900},
		lb:  netlink.LinkStatistics{RxDropped: 5},
		tasks: map[int]thread{
			7: th(7, 7, 1, "xlbd", time.Second, 10, 10), 8: th(7, 7, 1, "xlbd", time.Second, 0, 0),
			40: th(40, 40, 0, "trafgen", time.Second, 0, 0),
			60: th(60, 60, 1, "go", time.Second, 0, 0),
		},
		cpus: [2]cpuTimes{{busy: 4 * time.Second}, {busy: 3 * time.Second, steal: time.Second}},
		xsk:  xs(100)}
	s1 := sample{at: at.Add(2 * time.Second),
		gen: netlink.LinkStatistics{TxPackets: 2_001_000, TxDropped: 20, RxPackets: 1_990_900},
		lb:  netlink.LinkStatistics{RxDropped: 9_005},
		tasks: map[int]thread{
			7:  th(7, 7, 1, "xlbd", 2900*time.Millisecond, 60, 200), // the worker: 1.9 s
			8:  th(7, 7, 1, "xlbd", 1100*time.Millisecond, 0, 0),    // 0.1 s
			9:  th(7, 7, 1, "xlbd", 50*time.Millisecond, 0, 0),      // born in the window
			40: th(40, 40, 0, "trafgen", 1500*time.Millisecond, 0, 0),
			41: th(41, 40, 0, "trafgen", 1200*time.Millisecond, 0, 0), // its fork
			12: th(12, 0, 1, "ksoftirqd/1", 30*time.Millisecond, 0, 0),
			50: th(50, 50, 0, "xlb-bench-e2e", 20*time.Millisecond, 0, 0),
			60: th(60, 60, 1, "go", 1080*time.Millisecond, 0, 0), // 80 ms on the LB's CPU
			61: th(61, 60, 0, "compile", 5*time.Millisecond, 0, 0),
			62: th(62, 62, 3, "elsewhere", time.Second, 0, 0), // on neither CPU
		},
		cpus: [2]cpuTimes{{busy: 6 * time.Second}, {busy: 5 * time.Second, steal: time.Second + 10*time.Millisecond}},
		xsk:  xs(1100)}
	var r Result
	r.fill(s0, s1, who)
	want := Result{Window: 2 * time.Second, Offered: 2_000_010, Forwarded: 1_990_000, LBDropped: 9_000,
		WorkerCPU: 1900 * time.Millisecond, ProcessCPU: 2050 * time.Millisecond, CoreBusy: 2 * time.Second,
		WorkerThread: "xlbd/7", Threads: 3,
		// 50 user ticks of 240: 1.9 s * 50/240
		WorkerUser: 395833333,
		GenCPU:     1700 * time.Millisecond, GenBusy: 2 * time.Second,
		XSK: XSKStats{RxFull: 1000, FillEmpty: 100, Sockets: 1},
		Noise: Noise{Others: [2]time.Duration{5 * time.Millisecond, 80 * time.Millisecond},
			Steal: [2]time.Duration{0, 10 * time.Millisecond}, Top: "go/60 80ms, compile/61 5ms"}}
	if r != want {
		t.Errorf("fill:\n got %+v\nwant %+v", r, want)
	}
	if got := r.OfferedPPS(); got != 1_000_005 {
		t.Errorf("OfferedPPS = %v", got)
	}
	if got := r.PerPacket(r.WorkerCPU); got < 954 || got > 955 {
		t.Errorf("worker ns/pkt = %v, want 954.8", got)
	}
	// 90 ms of 2 s on the LB's CPU: 4.5%, above NoisyShare.
	if got := r.Noise.Share(r.Window); got < 0.0449 || got > 0.0451 || !r.Noisy() {
		t.Errorf("Share = %v, Noisy = %v; want 0.045, true", got, r.Noisy())
	}
	r.Noise.Others[1] = 0
	if r.Noisy() {
		t.Errorf("Noisy with %v of others and steal in %v", r.Noise, r.Window)
	}
}

func TestReport(t *testing.T) {
	res := func(sys string, round int, offered, fwd uint64, worker, user time.Duration) Result {
		return Result{System: sys, Round: round, Window: time.Second, Offered: offered, Forwarded: fwd,
			WorkerCPU: worker, WorkerUser: user, ProcessCPU: worker, CoreBusy: worker,
			XSK: XSKStats{RxFull: offered - fwd, Sockets: 1}}
	}
	r := &Report{Options: Options{Duration: time.Second, Warmup: time.Second, Rounds: 2, GenCPU: 0, LBCPU: 1, Receive: "poll", Mode: "native"},
		Results: []Result{
			res(Baseline, 1, 500_000, 500_000, 900*time.Millisecond, 100*time.Millisecond), // 1800 ns/pkt
			// a 10% lower offered load, all forwarded: the same share
			res(XLB, 1, 450_000, 450_000, 900*time.Millisecond, 99*time.Millisecond), // 2000 ns/pkt
			// a noisy round, left out of the comparison
			res(Baseline, 2, 500_000, 500_000, 900*time.Millisecond, 100*time.Millisecond),
			res(XLB, 2, 500_000, 250_000, 900*time.Millisecond, 900*time.Millisecond),
		}}
	r.Results[3].Noise = Noise{Others: [2]time.Duration{0, 200 * time.Millisecond}, Top: "go/60 200ms"}
	c, ok := r.Compare()
	if !ok {
		t.Fatal("Compare: not ok")
	}
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !c.Quiet || c.XLBN != 1 || c.BaselineN != 2 || !near(c.Delivered, 1) || !near(c.Forwarded, 0.9) || !near(c.Offered, 0.9) ||
		!near(c.WorkerCPU, 2000.0/1800) || !near(c.WorkerUser, 1.1) {
		t.Errorf("Compare = %+v", c)
	}
	if g := c.GoalsMet(false); g != (Goals{true, true, true, false}) {
		t.Errorf("GoalsMet = %+v; want all but the worker's CPU", g)
	}
	// The baseline's window ending with fuller rings than it began, it
	// forwards more than was offered in it: that is no loss, not a share
	// above 100% that a lossless xlb would fall short of.
	r.Results[0].Forwarded, r.Results[2].Forwarded = 500_130, 500_130
	if c, _ := r.Compare(); !near(c.Delivered, 1) || !c.GoalsMet(false).Delivered {
		t.Errorf("baseline forwarding 130 more than offered: Compare = %+v, goals %+v; want the share goal met", c, c.GoalsMet(false))
	}
	r.Results[0].Forwarded, r.Results[2].Forwarded = 500_000, 500_000
	md := r.Markdown()
	for _, want := range []string{
		"| xdp-baseline | 1 | 500,000 | 500,000 | 0.00% | 0 | 0 | 0 | 0 | 1800 | 200 |",
		"| xlb | 1 | 450,000 | 450,000 | 0.00% | 0 | 0 | 0 | 0 | 2000 | 220 |",
		"| xlb * | 2 | 500,000 | 250,000 | 50.00% | 250,000 | 0 | 0 | 0 | 3600 | 3600 | 3600 | 3600 | 90% | 0% | 0% / 20% | go/60 200ms |",
		"over the quiet windows (xlb 1, baseline 2); **no round's loads matched** within 3%",
		"| forwarded share of the offered load | 100.0% | ≥ 100% | met |",
		"| worker CPU per packet | 1.11× | ≤ 1.1× | **not met** |",
		"| worker user-space CPU per packet | 1.10× | ≤ 1.2× | met |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}

	// At a fixed rate, the loss goal: the baseline loses 0.1% over its
	// two quiet windows; xlb losing 0.5% misses it, 0.2% meets it.
	r.Options.Rate = "200000pps"
	r.Results[0].Forwarded = 499_000
	for _, tc := range []struct {
		fwd uint64
		met bool
	}{{447_750, false}, {449_100, true}} {
		r.Results[1].Forwarded = tc.fwd
		c, _ = r.Compare()
		if g := c.GoalsMet(true); g.Loss != tc.met || !g.Delivered {
			t.Errorf("xlb forwarding %d of 450,000: GoalsMet = %+v; want loss goal met %v", tc.fwd, g, tc.met)
		}
	}
	if md := r.Markdown(); !strings.Contains(md, "| loss, xlb against the baseline | 0.20% vs 0.10% | ≤ baseline + 0.2 points | met |") {
		t.Errorf("Markdown at a fixed rate:\n%s", md)
	}

	// With no quiet xlb window, all windows, and it says so.
	r.Results[1].Noise = r.Results[3].Noise
	if c, _ := r.Compare(); c.Quiet || c.XLBN != 2 {
		t.Errorf("Compare without quiet xlb windows = %+v", c)
	}
	if md := r.Markdown(); !strings.Contains(md, "over **all** windows") {
		t.Errorf("Markdown without quiet windows:\n%s", md)
	}
	if r := (&Report{Results: r.Results[:1]}); strings.Contains(r.Markdown(), "goal") {
		t.Error("Markdown compares without an xlb result")
	}
}

// TestReportMatchedLoads: at the generator's maximum the comparison pools
// only the rounds whose two windows were offered about the same load; a
// round where the generator gave xlb half as much again, which it could
// not forward, says nothing of the programs.
func TestReportMatchedLoads(t *testing.T) {
	res := func(sys string, round int, offered, fwd uint64) Result {
		return Result{System: sys, Round: round, Window: time.Second, Offered: offered, Forwarded: fwd,
			WorkerCPU: time.Second, WorkerUser: time.Second / 4, ProcessCPU: time.Second, CoreBusy: time.Second}
	}
	r := &Report{Options: Options{Duration: time.Second, Rounds: 3, LBCPU: 1},
		Results: []Result{
			res(Baseline, 1, 500_000, 500_000), res(XLB, 1, 490_000, 490_000), // 2% apart: matched
			res(Baseline, 2, 450_000, 450_000), res(XLB, 2, 690_000, 517_500), // 53% apart
			res(Baseline, 3, 500_000, 500_000), res(XLB, 3, 500_000, 400_000), // xlb's noisy
		}}
	r.Results[5].Noise = Noise{Others: [2]time.Duration{0, 100 * time.Millisecond}}
	c, ok := r.Compare()
	if !ok || !c.Quiet || !slices.Equal(c.Matched, []int{1}) || c.XLBN != 1 || c.BaselineN != 1 || c.Delivered != 1 {
		t.Errorf("Compare = %+v; want round 1 alone, xlb's share the baseline's", c)
	}
	if md := r.Markdown(); !strings.Contains(md, "over the quiet rounds whose loads match within 3% (round 1) |") ||
		!strings.Contains(md, "| forwarded share of the offered load | 100.0% | ≥ 100% | met |") {
		t.Errorf("Markdown:\n%s", md)
	}

	// No round matched: the quiet windows, and the report says so.
	r.Results[1].Offered = 530_000
	c, _ = r.Compare()
	if !c.Quiet || len(c.Matched) != 0 || c.XLBN != 2 || c.BaselineN != 3 {
		t.Errorf("Compare without a matched round = %+v", c)
	}
	if md := r.Markdown(); !strings.Contains(md, "over the quiet windows (xlb 2, baseline 3); **no round's loads matched** within 3% |") {
		t.Errorf("Markdown without a matched round:\n%s", md)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 69632: "69,632", 1234567: "1,234,567", -4096: "-4,096"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
	if got := percent(-0.00001); got != "0.00%" {
		t.Errorf("percent(-0.00001) = %q", got)
	}
}

// TestTrafgenConfig has trafgen compile the configuration into a capture
// (no root needed) and checks the packets: 60-byte TCP ACKs to VIP:80
// with valid checksums, source address and port stepping together.
func TestTrafgenConfig(t *testing.T) {
	tg := testenv.RequireTool(t, "trafgen")
	dst, _ := net.ParseMAC("02:00:00:00:00:0a")
	src, _ := net.ParseMAC("02:00:00:00:00:02")
	dir := t.TempDir()
	cfg, pcap := filepath.Join(dir, "t.cfg"), filepath.Join(dir, "t.pcap")
	if err := os.WriteFile(cfg, []byte(TrafgenConfig(dst, src)), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 40
	if out, err := exec.Command(tg, "-i", cfg, "-o", pcap, "-n", "40", "-P", "1", "--no-sock-mem", "-Q", "-C").CombinedOutput(); err != nil {
		t.Fatalf("trafgen: %v\n%s", err, out)
	}
	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		data, _, err := rd.ReadPacketData()
		if err == io.EOF {
			if i != n {
				t.Fatalf("%d packets, want %d", i, n)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if len(data) != 60 || eth == nil || ip == nil || tcp == nil {
			t.Fatalf("packet %d: %d bytes, not Ethernet/IPv4/TCP: %v", i, len(data), p)
		}
		wantSrc := net.IPv4(10, 90, 1, byte(1+i%srcHosts))
		if eth.DstMAC.String() != dst.String() || eth.SrcMAC.String() != src.String() ||
			ip.DstIP.String() != VIP || !ip.SrcIP.Equal(wantSrc) ||
			tcp.DstPort != 80 || int(tcp.SrcPort) != srcPort0+i || !tcp.ACK || tcp.SYN {
			t.Errorf("packet %d: %v > %v, %v:%d > %v:%d ack=%v", i, eth.SrcMAC, eth.DstMAC, ip.SrcIP, tcp.SrcPort, ip.DstIP, tcp.DstPort, tcp.ACK)
		}
		// Checksums as trafgen wrote them must verify: recompute them.
		if sum := backend.Checksum(data[14:34]); sum != 0 {
			t.Errorf("packet %d: IPv4 header checksum does not verify (%#x)", i, sum)
		}
		if sum := backend.Checksum(data[26:34], []byte{0, 6, 0, byte(len(data) - 34)}, data[34:]); sum != 0 {
			t.Errorf("packet %d: TCP checksum does not verify (%#x)", i, sum)
		}
	}
}

// TestSmoke runs the whole benchmark briefly: both systems forward, the
// counters and CPU times are there and consistent, xlb encapsulated what
// it sent, and nothing is left behind. It checks sanity, not speed.
func TestSmoke(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "trafgen")
	testenv.RequireTool(t, "ip")
	testenv.RequireTool(t, "taskset")
	if runtime.NumCPU() < 2 {
		testenv.Missing(t, "two CPUs (one for the generator, one for the load balancer)")
	}
	bins, err := lab.Build(t.TempDir(), "./cmd/xlbd", "./e2e/cmd/xdp-baseline")
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Xlbd, o.Baseline = bins["xlbd"], bins["xdp-baseline"]
	o.Duration, o.Warmup = 2*time.Second, 500*time.Millisecond
	o.Queues = []int{1, 2}
	o.Log = testLog{t}
	before := namespaces()
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 4 {
		t.Fatalf("%d results, want 4", len(rep.Results))
	}
	for _, r := range rep.Results {
		// The flows spread over the queues measured, and only those.
		var total uint64
		for _, n := range r.QueuePackets {
			total += n
		}
		for i, n := range r.QueuePackets {
			if used := i < r.Queues; used && n < total/4 || !used && n > total/100 {
				t.Errorf("%s, %d queue(s): %d of %d packets on queue %d", r.System, r.Queues, n, total, i)
			}
		}
		if r.Window < o.Duration || r.Window > o.Duration+time.Second {
			t.Errorf("%s: window %v, want about %v", r.System, r.Window, o.Duration)
		}
		// In flight when the counters are read: at most the socket's
		// rings and the veth queue.
		if r.Offered == 0 || r.Forwarded == 0 || r.Forwarded > r.Offered+4096 {
			t.Errorf("%s: offered %d, forwarded %d", r.System, r.Offered, r.Forwarded)
		}
		ns := r.PerPacket(r.WorkerCPU)
		if ns < 10 || ns > 1e6 || r.WorkerCPU > r.ProcessCPU || r.WorkerUser > r.WorkerCPU || r.CoreBusy == 0 {
			t.Errorf("%s: worker %v (user %v, %.0f ns/pkt), process %v, core %v", r.System, r.WorkerCPU, r.WorkerUser, ns, r.ProcessCPU, r.CoreBusy)
		}
		// The kernel's socket counters are read for both (a socket a
		// queue), and every packet it refused is one of them.
		if r.XSK.Sockets != r.Queues || r.GenCPU == 0 || r.XSK.Lost() < r.LBDropped/2 {
			t.Errorf("%s: socket counters %+v against rx_dropped %d, generator CPU %v", r.System, r.XSK, r.LBDropped, r.GenCPU)
		}
	}
	// What each program says it sent, by the time it stopped, is at
	// least what the sink counted in the window: the packets went through
	// it, and xlb's were encapsulated.
	for i, name := range []string{"xlb_xdp_tx_packets_total", "xlb_xdp_tx_packets_total", "xlb_encap_packets_total"} {
		r := rep.Results[min(i, 1)]
		if n, ok := counter(r.Output, name); !ok || n < r.Forwarded {
			t.Errorf("%s: %s = %d (found %v), below the %d packets the sink counted; output:\n%s", r.System, name, n, ok, r.Forwarded, r.Output)
		}
	}
	if md := rep.Markdown(); !strings.Contains(md, "| xlb") || !strings.Contains(md, "worker CPU per packet") {
		t.Errorf("Markdown:\n%s", md)
	}
	if after := namespaces(); after != before {
		t.Errorf("namespaces before the run %q, after %q", before, after)
	}
}

// namespaces lists this process's lab namespaces (the names start with
// its pid).
func namespaces() string {
	ents, _ := os.ReadDir("/run/netns")
	var mine []string
	prefix := "xlbl-" + strconv.Itoa(os.Getpid()) + "-"
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			mine = append(mine, e.Name())
		}
	}
	return strings.Join(mine, " ")
}

// counter finds a counter in a program's exit output, lines of
// "name{labels} value" or "name value" (indented in xlbd's).
func counter(out, name string) (uint64, bool) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			n, err := strconv.ParseUint(f[1], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

type testLog struct{ t *testing.T }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// TestFillQueues: with two queues the workers are the two busiest threads
// of the program, their CPU times added, and the packets per RX queue are
// the window's.
func TestFillQueues(t *testing.T) {
	at := time.Unix(1000, 0)
	th := func(run time.Duration, utime, stime uint64) thread {
		return thread{taskStat: taskStat{name: "xlbd", pgrp: 7, cpu: 1, utime: utime, stime: stime}, pid: 7, run: run}
	}
	s0 := sample{at: at, tasks: map[int]thread{7: th(0, 0, 0), 8: th(0, 0, 0), 9: th(0, 0, 0)}}
	s0.queues[0], s0.queues[1] = 100, 200
	s1 := sample{at: at.Add(time.Second), gen: netlink.LinkStatistics{RxPackets: 1000}, tasks: map[int]thread{
		7: th(100*time.Millisecond, 1, 1), // the Go runtime
		8: th(800*time.Millisecond, 1, 3), // worker: 200 ms in user space
		9: th(600*time.Millisecond, 1, 1), // worker: 300 ms
	}}
	s1.queues[0], s1.queues[1] = 700, 800
	r := Result{Queues: 2}
	r.fill(s0, s1, roles{lb: 7, cpus: [2]int{0, 1}})
	if r.WorkerCPU != 1400*time.Millisecond || r.WorkerUser != 500*time.Millisecond || r.ProcessCPU != 1500*time.Millisecond ||
		r.WorkerThread != "xlbd/8 xlbd/9" || r.QueuePackets[0] != 600 || r.QueuePackets[1] != 600 {
		t.Errorf("fill with 2 queues: %+v", r)
	}
	if got := split(r); got != "50/50%" {
		t.Errorf("split = %q, want 50/50%%", got)
	}
}

// TestReportQueues: a run at 1 and 2 queues compares each system with
// the baseline at each, and each with itself at 1 queue.
func TestReportQueues(t *testing.T) {
	res := func(sys string, q int, fwd uint64) Result {
		r := Result{System: sys, Round: 1, Queues: q, Window: time.Second, Offered: 500_000, Forwarded: fwd,
			WorkerCPU: time.Second, WorkerUser: time.Second / 4, ProcessCPU: time.Second, CoreBusy: time.Second}
		for i := range q {
			r.QueuePackets[i] = fwd / uint64(q)
		}
		return r
	}
	r := &Report{Options: Options{Duration: time.Second, Rounds: 1, LBCPU: 1, Queues: []int{1, 2}},
		Results: []Result{res(Baseline, 1, 400_000), res(XLB, 1, 300_000), res(Baseline, 2, 480_000), res(XLB, 2, 450_000)}}
	md := r.Markdown()
	for _, want := range []string{
		"| xlb / baseline, 1 queue(s), over the quiet rounds whose loads match within 3% (round 1) |",
		"| xlb / baseline, 2 queue(s), over the quiet rounds whose loads match within 3% (round 1) |",
		"| forwarded rate | 93.8% | | |", // 450,000 / 480,000
		"| xlb | 2 | 500,000 | 450,000 | 10.00% | 1.50× | 1 quiet |",
		"| xdp-baseline | 2 | 500,000 | 480,000 | 4.00% | 1.20× | 1 quiet |",
		"| 1 | 100% |",
		"| 2 | 50/50% |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, RefXLB) {
		t.Errorf("Markdown compares a system it did not measure:\n%s", md)
	}
}

// TestLBArgs: each system's CPUs. With spare CPUs, xlb's mask has them
// and -worker-cpus names the workers'; the reference xlbd and the
// baseline run on the workers' CPUs alone.
func TestLBArgs(t *testing.T) {
	b := &bench{o: Options{Xlbd: "/new/xlbd", XlbdRef: "/main/xlbd", Baseline: "/b/xdp-baseline", LBCPU: 1, SpareCPUs: []int{0}}, xlbdCfg: "b.hcl"}
	for _, tc := range []struct {
		sys  string
		want string
	}{
		{XLB, "taskset -c 1,0 /new/xlbd run -config b.hcl -workers 1 -worker-cpus 1 -isolate-workers -var"},
		{RefXLB, "taskset -c 1 /main/xlbd run -config b.hcl -workers 1 -var"},
		{Baseline, "taskset -c 1 /b/xdp-baseline -iface bench0 -vip 10.90.100.10 -gateway 10.90.9.1 -queues=1 "},
	} {
		if got := strings.Join(b.lbArgs(tc.sys, 1), " "); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %s\nwant it to start with %s", tc.sys, got, tc.want)
		}
	}
	b.o.SpareCPUs = nil
	if got := strings.Join(b.lbArgs(XLB, 1), " "); !strings.HasPrefix(got, "taskset -c 1 /new/xlbd run -config b.hcl -workers 1 -var") {
		t.Errorf("xlb without spare CPUs: %s", got)
	}
}
