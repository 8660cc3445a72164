// Package bench measures xlb forwarding on the wire (issue #3): an offered
// load of many TCP flows to a VIP from netsniff-ng's trafgen in one
// network namespace, xlbd with one worker pinned to another CPU in a
// second namespace, and, in the same run and at the same offered load,
// the baseline: the least an AF_XDP program can do (e2e/cmd/xdp-baseline:
// receive, rewrite the Ethernet addresses, transmit). For each it reports
// the offered and forwarded packet rates, the loss, and the CPU time per
// forwarded packet of the forwarding thread, of the whole process and of
// its CPU.
//
// The link is one veth pair between the lab's client namespace (the
// generator) and its LB node's namespace: no router, no bridge, so that
// nothing but the program under test and the kernel's AF_XDP path runs
// per packet on the LB's CPU. The LB sends back out of the same interface
// (one-armed, as xlb is deployed) to a next hop whose MAC address is a
// permanent neighbour entry no interface owns: the frames arrive at the
// generator's end, where the kernel counts them (rx_packets, read through
// netlink: cheaper and more exact than a decapsulating counter) and drops
// them as addressed to another host, the cheapest way a kernel can sink a
// packet. Both programs' frames get exactly that treatment.
//
// On veth the generator's CPU also runs the LB's receive path: veth
// transmits into the peer's NAPI on the sending CPU, so the XDP program
// and the copy into the AF_XDP socket's memory are the generator's cost.
// The LB's CPU runs the program under test and the kernel's AF_XDP
// transmit path, including the sink's receive (softirq run on return from
// the transmit system call), and this kernel (no IRQ_TIME_ACCOUNTING)
// charges that softirq work to the thread it interrupts.
package bench

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/elements/xdp"
	"github.com/xlbproject/xlb/internal/affinity"
)

// Config is bench.hcl, xlbd's configuration for the benchmark.
//
//go:embed bench.hcl
var Config []byte

// The benchmark's link and addresses. The VIP and backends are the lab's
// (examples/lab/lab.hcl), on a subnet of their own.
const (
	Iface    = "bench0"
	VIP      = "10.90.100.10"
	LBAddr   = "10.90.9.10"
	Gateway  = "10.90.9.1"
	SinkMAC  = "02:00:00:00:90:01" // the next hop's MAC: no interface has it
	linkPfx  = 24
	linkMTU  = 1500
	srcNet   = "10.90.1.0" // the generator's source addresses: .1 to .17
	srcHosts = 17
	srcPort0 = 10000 // source ports 10000 to 14095
	srcPorts = 4096
)

// Flows is the number of distinct flows the generator cycles through:
// source address and port step together, and 17 and 4096 are coprime.
const Flows = srcHosts * srcPorts

// System names. RefXLB is another xlbd binary (Options.XlbdRef, such as
// a build of main), run as xlbd runs without Options.SpareCPUs.
const (
	Baseline = "xdp-baseline"
	XLB      = "xlb"
	RefXLB   = "xlb-ref"
)

// MaxQueues is the most RX queues a run measures with.
const MaxQueues = 8

// Options configure a run.
type Options struct {
	Xlbd     string // xlbd binary (required when Systems has XLB)
	XlbdRef  string // xlbd binary of RefXLB (required when Systems has RefXLB)
	Baseline string // xdp-baseline binary (required when Systems has Baseline)

	Systems  []string      // measured in this order, Rounds times; default Baseline, XLB
	Rounds   int           // default 1
	Duration time.Duration // measured window per system and round; default 10s
	Warmup   time.Duration // load before the window; default 2s
	GenCPU   int           // trafgen's CPU (DefaultOptions: 0)
	LBCPU    int           // the LB program's CPU (DefaultOptions: 1); with N queues, its N workers' are LBCPU and the next ones (see LBCPUs)
	// Queues are the RX queue counts measured, each system at each in
	// every round: the LB's link has as many queues as the largest, xlbd
	// runs a worker per queue, xdp-baseline a loop per queue, and the
	// generator's flows are spread over the queues measured (XPS; see
	// spread). Default 1.
	Queues []int
	// SpareCPUs, when set, are CPUs xlbd (XLB only) may run its threads
	// other than the workers on: it runs under a mask of its workers'
	// CPUs and these, with -isolate-workers, which keeps its other threads
	// off the workers' CPUs.
	SpareCPUs []int
	Rate      string // trafgen -b, e.g. "200000pps"; "" = as fast as it can
	Receive   string // "poll" (default) or "busy"
	Mode      string // XDP attach mode: "native" (default) or "generic"
	// The socket's sizes, as RxXDP's attributes (0: its defaults), the
	// same for both systems.
	Frames, FrameSize, RxRing, TxRing, Batch int
	BusyPoll                                 string // RxXDP busy_poll, "" off

	// Log receives progress and the output of every process, a line at a
	// time; nil discards it.
	Log io.Writer
}

func (o *Options) setDefaults() error {
	if len(o.Systems) == 0 {
		o.Systems = []string{Baseline, XLB}
	}
	for _, s := range o.Systems {
		switch {
		case s == XLB && o.Xlbd == "":
			return errors.New("bench: no xlbd binary")
		case s == RefXLB && o.XlbdRef == "":
			return errors.New("bench: no xlbd binary for " + RefXLB)
		case s == Baseline && o.Baseline == "":
			return errors.New("bench: no xdp-baseline binary")
		case s != XLB && s != Baseline && s != RefXLB:
			return fmt.Errorf("bench: unknown system %q (want %q, %q or %q)", s, Baseline, XLB, RefXLB)
		}
	}
	if len(o.Queues) == 0 {
		o.Queues = []int{1}
	}
	for _, q := range o.Queues {
		if q < 1 || q > MaxQueues {
			return fmt.Errorf("bench: %d queues: want 1 to %d", q, MaxQueues)
		}
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	} else if o.Warmup == 0 {
		o.Warmup = 2 * time.Second
	}
	if o.Receive == "" {
		o.Receive = "poll"
	}
	if o.Mode == "" {
		o.Mode = "native"
	}
	if o.Frames == 0 {
		o.Frames = xdp.DefaultFrames
	}
	if o.FrameSize == 0 {
		o.FrameSize = 4096
	}
	if o.GenCPU < 0 || o.LBCPU < 0 || o.GenCPU == o.LBCPU {
		return fmt.Errorf("bench: generator CPU %d and LB CPU %d must be two different CPUs", o.GenCPU, o.LBCPU)
	}
	return nil
}

// maxQueues is the link's queue count: the most a run measures with.
func (o *Options) maxQueues() int { return max(slices.Max(o.Queues), 1) }

// LBCPUs are the CPUs of the LB's n workers, in the order both programs
// give them to workers (worker i on the i-th of their mask): LBCPU and the
// next ones, wrapping around the machine's CPUs, sorted. With more workers
// than the machine has CPUs besides the generator's, they include the
// generator's CPU.
func (o *Options) LBCPUs(n int) []int {
	cpus := make([]int, n)
	for i := range cpus {
		cpus[i] = (o.LBCPU + i) % max(runtime.NumCPU(), 1)
	}
	slices.Sort(cpus)
	return slices.Compact(cpus)
}

// DefaultOptions are the ones make bench-e2e runs with: the generator on
// CPU 0, the LB on CPU 1.
func DefaultOptions() Options { return Options{GenCPU: 0, LBCPU: 1} }

// Run builds the lab and the benchmark's link, measures each system, and
// tears everything down, on every path. It needs root and trafgen.
func Run(ctx context.Context, o Options) (_ *Report, err error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root (network namespaces, XDP)")
	}
	trafgen, err := lookTrafgen()
	if err != nil {
		return nil, err
	}
	rep := &Report{Machine: Describe(), Options: o, Start: time.Now()}

	// The lab's namespaces, lifecycle and sweeping of killed runs; its
	// router and the LB's eth0 stay idle.
	l, err := lab.Up(lab.Topology{LBNodes: 1, Backends: []string{}, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	gen, lb := l.Client(), l.LB(0)
	b := &bench{o: o, lab: l, genNS: gen.NS, lbNS: lb.NS, trafgen: trafgen}
	if err := b.link(); err != nil {
		return nil, err
	}
	if err := b.writeFiles(); err != nil {
		return nil, err
	}
	for round := 0; round < o.Rounds; round++ {
		for _, q := range o.Queues {
			if err := b.spread(q); err != nil {
				return rep, err
			}
			for _, sys := range o.Systems {
				r, err := b.measure(ctx, sys, q)
				if err != nil {
					return rep, fmt.Errorf("bench: %s, %d queue(s): %w", sys, q, err)
				}
				r.Round = round + 1
				rep.Results = append(rep.Results, r)
				b.logf("%s round %d, %d queue(s): %s", sys, r.Round, q, r.Summary())
			}
		}
	}
	return rep, nil
}

// lookTrafgen finds trafgen on PATH or in /usr/sbin, where Debian puts it
// (not on a normal user's PATH).
func lookTrafgen() (string, error) {
	if p, err := exec.LookPath("trafgen"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/trafgen"); err == nil {
		return "/usr/sbin/trafgen", nil
	}
	return "", errors.New("bench: trafgen not found; install it with: apt-get install -y netsniff-ng")
}

// bench is one run's state.
type bench struct {
	o             Options
	lab           *lab.Lab
	genNS, lbNS   string
	genMAC        net.HardwareAddr
	lbMAC         net.HardwareAddr
	trafgen       string
	trafgenCfg    string
	xlbdCfg       string
	genIdx, lbIdx int
}

func (b *bench) logf(format string, args ...any) {
	if b.o.Log != nil {
		fmt.Fprintf(b.o.Log, "bench: "+format+"\n", args...)
	}
}

// link makes the veth pair bench0 between the generator's and the LB's
// namespaces, with the run's most queues at both ends, without IPv6 (no
// neighbour discovery or router solicitations on the counted link), the
// LB's address, and the next hop's permanent neighbour entry.
func (b *bench) link() error {
	gh, err := b.lab.Handle(b.genNS)
	if err != nil {
		return err
	}
	defer gh.Close()
	lh, err := b.lab.Handle(b.lbNS)
	if err != nil {
		return err
	}
	defer lh.Close()
	lbNS, err := netns.GetFromName(b.lbNS)
	if err != nil {
		return err
	}
	defer lbNS.Close()
	// veth hands a packet to the peer's RX queue of the number of the
	// TX queue it was sent on.
	q := b.o.maxQueues()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: Iface, MTU: linkMTU, NumTxQueues: q, NumRxQueues: q},
		PeerName: Iface, PeerMTU: linkMTU, PeerNamespace: netlink.NsFd(int(lbNS)),
		PeerNumTxQueues: uint32(q), PeerNumRxQueues: uint32(q)}
	if err := gh.LinkAdd(v); err != nil {
		return fmt.Errorf("bench: add veth %s: %w", Iface, err)
	}
	for _, side := range []struct {
		ns  string
		h   *netlink.Handle
		mac *net.HardwareAddr
		idx *int
	}{{b.genNS, gh, &b.genMAC, &b.genIdx}, {b.lbNS, lh, &b.lbMAC, &b.lbIdx}} {
		if err := b.lab.Sysctl(side.ns, "ipv6/conf/"+Iface+"/disable_ipv6", "1"); err != nil {
			return err
		}
		l, err := side.h.LinkByName(Iface)
		if err != nil {
			return err
		}
		if err := side.h.LinkSetUp(l); err != nil {
			return err
		}
		*side.mac, *side.idx = l.Attrs().HardwareAddr, l.Attrs().Index
	}
	ll, err := lh.LinkByIndex(b.lbIdx)
	if err != nil {
		return err
	}
	addr, _ := netlink.ParseAddr(fmt.Sprintf("%s/%d", LBAddr, linkPfx))
	if err := lh.AddrAdd(ll, addr); err != nil {
		return fmt.Errorf("bench: add %s: %w", LBAddr, err)
	}
	mac, _ := net.ParseMAC(SinkMAC)
	n := &netlink.Neigh{LinkIndex: b.lbIdx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: net.ParseIP(Gateway), HardwareAddr: mac}
	if err := lh.NeighAdd(n); err != nil {
		return fmt.Errorf("bench: neighbour %s: %w", Gateway, err)
	}
	return nil
}

// spread makes the generator send on the first q TX queues of its end,
// and so reach the LB's first q RX queues. trafgen's packet socket
// bypasses the qdisc, and the kernel picks its TX queue as for any
// socket without a cached route (packet_pick_tx_queue, netdev_pick_tx):
// from the CPU's XPS map when there is one, choosing among the map's
// queues by the packet's flow hash, else the sending CPU's number modulo
// the queue count (a single trafgen would fill one queue). So the
// generator CPU's XPS map is set to those q queues: every TX queue below q
// lists the generator's CPU, the others none.
func (b *bench) spread(q int) error {
	if b.o.maxQueues() == 1 {
		return nil // one queue takes everything; it has no XPS map
	}
	var cmds []string
	for t := 0; t < b.o.maxQueues(); t++ {
		mask := "0"
		if t < q {
			mask = strconv.FormatUint(1<<b.o.GenCPU, 16)
		}
		cmds = append(cmds, fmt.Sprintf("echo %s > /sys/class/net/%s/queues/tx-%d/xps_cpus", mask, Iface, t))
	}
	// ip netns exec mounts the namespace's own /sys.
	cmd := b.lab.Exec(b.genNS, "sh", "-ec", strings.Join(cmds, "\n"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bench: XPS for %d queue(s): %w: %s", q, err, out.String())
	}
	return nil
}

// writeFiles writes xlbd's and trafgen's configurations into the lab's
// directory (removed by Down).
func (b *bench) writeFiles() error {
	b.xlbdCfg = filepath.Join(b.lab.Dir(), "bench.hcl")
	b.trafgenCfg = filepath.Join(b.lab.Dir(), "trafgen.cfg")
	if err := os.WriteFile(b.xlbdCfg, Config, 0o644); err != nil {
		return err
	}
	return os.WriteFile(b.trafgenCfg, []byte(TrafgenConfig(b.lbMAC, b.genMAC)), 0o644)
}

// TrafgenConfig is the generator's packet: a 60-byte TCP ACK to VIP:80
// whose source address (.1 to .17 of srcNet) and port (10000 to 14095)
// both step by one per packet, so that it cycles through Flows distinct
// flows; trafgen recomputes the IPv4 and TCP checksums of every packet.
func TrafgenConfig(dst, src net.HardwareAddr) string {
	return fmt.Sprintf(`/* e2e/bench: %d TCP flows to the VIP (%d addresses x %d ports, coprime). */
{
  eth(da=%s, sa=%s),
  ipv4(sa=%s, sa[3]=dinc(1, %d), da=%s, ttl=64, df),
  tcp(sp=dinc(%d, %d), dp=80, ack, win=1024),
  fill(0, 6)
}
`, Flows, srcHosts, srcPorts, dst, src, srcNet, srcHosts, VIP, srcPort0, srcPort0+srcPorts-1)
}

// trafgenArgs is trafgen's command line: one process (trafgen pins it to
// the first CPU it may use), its packet ring bypassing the qdisc (the
// default), and leaving the host's socket memory and IRQ settings alone.
func (b *bench) trafgenArgs() []string {
	args := []string{"taskset", "-c", strconv.Itoa(b.o.GenCPU),
		b.trafgen, "-o", Iface, "-i", b.trafgenCfg, "-P", "1", "--no-sock-mem", "-Q", "-C"}
	if b.o.Rate != "" {
		args = append(args, "-b", b.o.Rate)
	}
	return args
}

// lbArgs is the command line of a system with q queues, pinned to the
// LB's CPUs (and xlb's spare ones).
func (b *bench) lbArgs(sys string, q int) []string {
	cpus := b.o.LBCPUs(q)
	mask := slices.Clone(cpus)
	var place []string
	if sys == XLB && len(b.o.SpareCPUs) > 0 {
		mask = append(mask, b.o.SpareCPUs...)
		place = []string{"-worker-cpus", affinity.Format(cpus), "-isolate-workers"}
	}
	pin := []string{"taskset", "-c", affinity.Format(mask)}
	if sys == XLB || sys == RefXLB {
		bin := b.o.Xlbd
		if sys == RefXLB {
			bin = b.o.XlbdRef
		}
		return append(append(append(pin, bin, "run", "-config", b.xlbdCfg, "-workers", strconv.Itoa(q)), place...),
			"-var", "interface="+Iface, "-var", "gateway="+Gateway, "-var", "source="+LBAddr,
			"-var", "receive="+b.o.Receive, "-var", "mode="+b.o.Mode,
			"-var", fmt.Sprint("frames=", b.o.Frames), "-var", fmt.Sprint("frame_size=", b.o.FrameSize),
			"-var", fmt.Sprint("rx_ring=", b.o.RxRing), "-var", fmt.Sprint("tx_ring=", b.o.TxRing),
			"-var", fmt.Sprint("batch=", b.o.Batch), "-var", "busy_poll="+b.o.BusyPoll)
	}
	return append(pin, b.o.Baseline, "-iface", Iface, "-vip", VIP, "-gateway", Gateway, fmt.Sprint("-queues=", q),
		"-receive", b.o.Receive, "-mode", b.o.Mode, fmt.Sprint("-frames=", b.o.Frames), fmt.Sprint("-frame-size=", b.o.FrameSize),
		fmt.Sprint("-rx-ring=", b.o.RxRing), fmt.Sprint("-tx-ring=", b.o.TxRing), fmt.Sprint("-batch=", b.o.Batch), "-busy-poll="+b.o.BusyPoll)
}

// readyLine is what each system prints once it forwards.
func readyLine(sys string) string {
	if sys == XLB || sys == RefXLB {
		return "pipeline running"
	}
	return "xdp-baseline: running"
}

// measure runs one system with q queues under load and measures it.
func (b *bench) measure(ctx context.Context, sys string, q int) (Result, error) {
	r := Result{System: sys, Queues: q}
	if err := b.waitDetached(); err != nil {
		return r, err
	}
	args := b.lbArgs(sys, q)
	lbp, err := start(b.lab, b.lbNS, sys, readyLine(sys), b.o.Log, args...)
	if err != nil {
		return r, err
	}
	defer lbp.stop(5 * time.Second)
	if err := lbp.waitReady(ctx, 15*time.Second); err != nil {
		return r, err
	}
	// ip netns exec and taskset exec the program in place, so the pid
	// is the program's; the kernel truncates names to 15 bytes.
	want := filepath.Base(args[3])
	if comm := procComm(lbp.pid()); comm != want[:min(len(want), 15)] {
		return r, fmt.Errorf("process %d is %q, not %s: cannot measure its threads", lbp.pid(), comm, want)
	}
	gen, err := start(b.lab, b.genNS, "trafgen", "", b.o.Log, b.trafgenArgs()...)
	if err != nil {
		return r, err
	}
	defer gen.stop(3 * time.Second)

	if err := sleep(ctx, b.o.Warmup); err != nil {
		return r, err
	}
	s0, err := b.sample(lbp.pid())
	if err != nil {
		return r, err
	}
	if err := sleep(ctx, b.o.Duration); err != nil {
		return r, err
	}
	s1, err := b.sample(lbp.pid())
	if err != nil {
		return r, err
	}
	for _, p := range []*process{gen, lbp} {
		if p.exited() {
			return r, fmt.Errorf("%s exited during the measurement:\n%s", p.name, p.tail())
		}
	}
	r.fill(s0, s1, roles{lb: lbp.pid(), gen: gen.pid(), self: os.Getpid(),
		cpus: [2]int{b.o.GenCPU, b.o.LBCPU}})
	if r.XSK.Sockets == 0 {
		return r, fmt.Errorf("process %d has no AF_XDP socket", lbp.pid())
	}
	gen.stop(3 * time.Second)
	if err := lbp.stop(5 * time.Second); err != nil {
		return r, fmt.Errorf("stopping: %w\n%s", err, lbp.tail())
	}
	r.Output = lbp.output()
	return r, nil
}

// waitDetached waits until the LB's end of the link has no XDP program:
// the previous system's is detached when its process is gone.
func (b *bench) waitDetached() error {
	h, err := b.lab.Handle(b.lbNS)
	if err != nil {
		return err
	}
	defer h.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		l, err := h.LinkByIndex(b.lbIdx)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x == nil || !x.Attached {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("an XDP program (id %d) is still attached to %s", l.Attrs().Xdp.ProgId, Iface)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
