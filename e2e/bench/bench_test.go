package bench

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	// majflt cmajflt utime stime ...; the name may hold spaces and ")".
	in := "14996 (a b) c)) R 14992 14992 3170 0 -1 4194304 163 0 0 0 271 1194 0 0 20 0 1 0 541186\n"
	name, u, s, err := parseStat(in)
	if err != nil || name != "a b) c)" || u != 271 || s != 1194 {
		t.Errorf("parseStat = %q, %d, %d, %v; want \"a b) c)\", 271, 1194", name, u, s, err)
	}
	if _, _, _, err := parseStat("14996 (x) R 1 2 3\n"); err == nil {
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
	if got.busy != busy {
		t.Errorf("parseCPU(1) = %+v; want busy %v", got, busy)
	}
	if _, err := parseCPU(stat, 2); err == nil {
		t.Error("parseCPU of a missing CPU: no error")
	}
}

func TestFill(t *testing.T) {
	at := time.Unix(1000, 0)
	s0 := sample{at: at,
		gen:     netlink.LinkStatistics{TxPackets: 1000, TxDropped: 10, RxPackets: 900},
		lb:      netlink.LinkStatistics{RxDropped: 5},
		threads: map[int]thread{7: {name: "xlbd", run: time.Second, utime: 10, stime: 10}, 8: {name: "xlbd", run: time.Second}},
		core:    cpuTimes{busy: 3 * time.Second}}
	s1 := sample{at: at.Add(2 * time.Second),
		gen: netlink.LinkStatistics{TxPackets: 2_001_000, TxDropped: 20, RxPackets: 1_990_900},
		lb:  netlink.LinkStatistics{RxDropped: 9_005},
		threads: map[int]thread{
			7: {name: "xlbd", run: 2900 * time.Millisecond, utime: 60, stime: 200}, // the worker: 1.9 s
			8: {name: "xlbd", run: 1100 * time.Millisecond},                        // 0.1 s
			9: {name: "xlbd", run: 50 * time.Millisecond},                          // born in the window
		},
		core: cpuTimes{busy: 5 * time.Second}}
	var r Result
	r.fill(s0, s1)
	want := Result{Window: 2 * time.Second, Offered: 2_000_010, Forwarded: 1_990_000, LBDropped: 9_000,
		WorkerCPU: 1900 * time.Millisecond, ProcessCPU: 2050 * time.Millisecond, CoreBusy: 2 * time.Second,
		WorkerThread: "xlbd/7", Threads: 3,
		// 50 user ticks of 240: 1.9 s * 50/240
		WorkerUser: 395833333}
	if r != want {
		t.Errorf("fill:\n got %+v\nwant %+v", r, want)
	}
	if got := r.OfferedPPS(); got != 1_000_005 {
		t.Errorf("OfferedPPS = %v", got)
	}
	if got := r.PerPacket(r.WorkerCPU); got < 954 || got > 955 {
		t.Errorf("worker ns/pkt = %v, want 954.8", got)
	}
}

func TestReport(t *testing.T) {
	res := func(sys string, offered, fwd uint64, worker, user time.Duration) Result {
		return Result{System: sys, Round: 1, Window: time.Second, Offered: offered, Forwarded: fwd,
			WorkerCPU: worker, WorkerUser: user, ProcessCPU: worker, CoreBusy: worker}
	}
	r := &Report{Options: Options{Duration: time.Second, Warmup: time.Second, Rounds: 1, GenCPU: 0, LBCPU: 1, Receive: "poll", Mode: "native"},
		Results: []Result{
			res(Baseline, 500_000, 500_000, 900*time.Millisecond, 100*time.Millisecond), // 1800 ns/pkt
			// a 10% lower offered load, all forwarded: the same share
			res(XLB, 450_000, 450_000, 900*time.Millisecond, 135*time.Millisecond), // 2000 ns/pkt
		}}
	c, ok := r.Compare()
	if !ok {
		t.Fatal("Compare: not ok")
	}
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !near(c.Delivered, 1) || !near(c.Forwarded, 0.9) || !near(c.Offered, 0.9) ||
		!near(c.WorkerCPU, 2000.0/1800) || !near(c.WorkerUser, 1.5) {
		t.Errorf("Compare = %+v", c)
	}
	if fwd, cpu := c.GoalsMet(); !fwd || !cpu {
		t.Errorf("GoalsMet = %v, %v; want true, true", fwd, cpu)
	}
	md := r.Markdown()
	for _, want := range []string{
		"| xdp-baseline | 1 | 500,000 | 500,000 | 0.00% | 0 | 1800 | 200 |",
		"| xlb | 1 | 450,000 | 450,000 | 0.00% | 0 | 2000 | 300 |",
		"| forwarded share of the offered load | 100.0% | ≥ 95% | met |",
		"| worker CPU per packet | 1.11× | ≤ 1.5× | met |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}

	// xlb losing a tenth where the baseline loses nothing misses the goal.
	r.Results[1].Forwarded = 405_000
	c, _ = r.Compare()
	if fwd, _ := c.GoalsMet(); fwd {
		t.Errorf("GoalsMet with 90%% delivered: forwarded goal met (%+v)", c)
	}
	if r := (&Report{Results: r.Results[:1]}); strings.Contains(r.Markdown(), "ratio") {
		t.Error("Markdown compares without an xlb result")
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
	o.Log = testLog{t}
	before := namespaces()
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want 2", len(rep.Results))
	}
	for _, r := range rep.Results {
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
	if md := rep.Markdown(); !strings.Contains(md, "| xlb | 1 |") || !strings.Contains(md, "worker CPU per packet") {
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
