package bench

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/affinity"
)

// Goals from issue #13, xlb against the baseline in the same run, over
// the quiet windows: at a fixed rate (up to half the baseline's maximum),
// at most MaxExtraLoss more of the offered load lost; at the generator's
// maximum, at least the baseline's share forwarded (MinDelivered); worker
// CPU per packet at most MaxWorkerUser times the baseline's in user space
// and MaxWorkerCPU times in all.
const (
	MaxExtraLoss  = 0.002
	MinDelivered  = 1.0
	MaxWorkerUser = 1.2
	MaxWorkerCPU  = 1.1
)

// MaxLoadGap is how far apart, as a share of the baseline's, the offered
// loads of a round's two windows may be for the comparison to pool that
// round. Near saturation the forwarded share falls with the load, and
// the generator's maximum moves by half from one minute to the next on
// a shared host: windows a few percent apart compare the generator, not
// the programs.
const MaxLoadGap = 0.03

// Report is a run's results.
type Report struct {
	Machine Machine
	Options Options
	Start   time.Time
	Results []Result
}

// Machine describes where a run happened.
type Machine struct {
	CPU     string // model name
	CPUs    int
	Virtual bool // the CPU flags say "hypervisor"
	Kernel  string
	MemGiB  int
	Go      string
	Trafgen string // trafgen's version line
}

// Describe reads the machine's description.
func Describe() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch {
			case !ok:
			case k == "model name" && m.CPU == "":
				m.CPU = v
			case k == "flags" && strings.Contains(" "+v+" ", " hypervisor "):
				m.Virtual = true
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemGiB = (kb + 1<<19) >> 20
		}
	}
	if p, err := lookTrafgen(); err == nil {
		out, _ := exec.Command(p, "-v").Output()
		m.Trafgen, _, _ = strings.Cut(string(out), "\n")
	}
	return m
}

func (m Machine) String() string {
	v := ""
	if m.Virtual {
		v = " (virtual machine)"
	}
	return fmt.Sprintf("%s, %d CPUs%s, %d GiB, Linux %s, %s", m.CPU, m.CPUs, v, m.MemGiB, m.Kernel, m.Go)
}

// Mean pools a system's windows with q queues (any number when q is 0):
// the quiet ones when quiet is set, all of them otherwise. n is how many
// it pooled.
func (r *Report) Mean(sys string, q int, quiet bool) (m Result, n int) {
	return r.pool(sys, q, func(x Result) bool { return !quiet || !x.Noisy() })
}

// hasQueues says whether x is a window with q queues (any when q is 0).
func hasQueues(x Result, q int) bool { return q == 0 || max(x.Queues, 1) == q }

// pool sums sys's windows with q queues that keep accepts.
func (r *Report) pool(sys string, q int, keep func(Result) bool) (m Result, n int) {
	m.System, m.Queues = sys, q
	for _, x := range r.Results {
		if x.System != sys || !hasQueues(x, q) || !keep(x) {
			continue
		}
		n++
		for i := range m.QueuePackets {
			m.QueuePackets[i] += x.QueuePackets[i]
		}
		m.Window += x.Window
		m.Offered += x.Offered
		m.Forwarded += x.Forwarded
		m.LBDropped += x.LBDropped
		m.WorkerCPU += x.WorkerCPU
		m.WorkerUser += x.WorkerUser
		m.ProcessCPU += x.ProcessCPU
		m.CoreBusy += x.CoreBusy
		m.GenCPU += x.GenCPU
		m.GenBusy += x.GenBusy
		m.XSK.add(x.XSK)
		for i := range 2 {
			m.Noise.Others[i] += x.Noise.Others[i]
			m.Noise.Steal[i] += x.Noise.Steal[i]
		}
	}
	return m, n
}

// Comparison is xlb against the baseline, over the rounds whose two
// windows are quiet and were offered loads within MaxLoadGap of each
// other (Matched lists them); over the quiet windows of both when no
// round is such (Matched is then empty), and over all windows when
// either system has no quiet one (Quiet is then false too).
type Comparison struct {
	Quiet             bool
	Matched           []int   // rounds pooled, when their loads matched
	XLBN, BaselineN   int     // windows pooled
	Offered           float64 // xlb's offered rate / the baseline's: how equal the loads were
	XLBLoss, BaseLoss float64
	// Delivered compares the share of the offered packets each forwarded,
	// (xlb forwarded/offered) / (baseline forwarded/offered): "what the
	// baseline forwards at the same offered load" when the generator's
	// rate differs a little between windows.
	Delivered  float64
	Forwarded  float64 // xlb's forwarded rate / the baseline's
	WorkerCPU  float64 // xlb's worker CPU per packet / the baseline's
	WorkerUser float64 // the same, user space only
	ProcessCPU float64
	CoreBusy   float64
}

// Compare compares xlb with the baseline, over all queue counts; false
// when either is missing.
func (r *Report) Compare() (Comparison, bool) { return r.CompareAt(XLB, 0) }

// CompareAt compares system sys with the baseline at q queues (any when
// 0); false when either is missing.
func (r *Report) CompareAt(sys string, q int) (Comparison, bool) {
	c := Comparison{Quiet: true}
	var inMatched func(Result) bool
	c.Matched, inMatched = r.matchedRounds(sys, q)
	x, nx := r.pool(sys, q, inMatched)
	b, nb := r.pool(Baseline, q, inMatched)
	if nx == 0 || nb == 0 {
		x, nx = r.Mean(sys, q, true)
		b, nb = r.Mean(Baseline, q, true)
	}
	if nx == 0 || nb == 0 {
		c.Quiet = false
		x, nx = r.Mean(sys, q, false)
		b, nb = r.Mean(Baseline, q, false)
	}
	if nx == 0 || nb == 0 || b.Forwarded == 0 || b.Offered == 0 {
		return Comparison{}, false
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	c.XLBN, c.BaselineN = nx, nb
	c.Offered = ratio(x.OfferedPPS(), b.OfferedPPS())
	// A window's edges cut through packets in flight, so a lossless
	// system can forward a few more than were offered in it: a negative
	// loss, counted as none, or xlb's share would fall short of a
	// baseline's that merely ended its window with fuller rings.
	c.XLBLoss, c.BaseLoss = max(x.Loss(), 0), max(b.Loss(), 0)
	c.Delivered = ratio(1-c.XLBLoss, 1-c.BaseLoss)
	c.Forwarded = ratio(x.ForwardedPPS(), b.ForwardedPPS())
	c.WorkerCPU = ratio(x.PerPacket(x.WorkerCPU), b.PerPacket(b.WorkerCPU))
	c.WorkerUser = ratio(x.PerPacket(x.WorkerUser), b.PerPacket(b.WorkerUser))
	c.ProcessCPU = ratio(x.PerPacket(x.ProcessCPU), b.PerPacket(b.ProcessCPU))
	c.CoreBusy = ratio(x.PerPacket(x.CoreBusy), b.PerPacket(b.CoreBusy))
	return c, true
}

// matchedRounds lists the rounds in which sys's window and the
// baseline's, with q queues, are both quiet and were offered loads within
// MaxLoadGap of each other, and says whether a window is one of them.
func (r *Report) matchedRounds(sys string, q int) (rounds []int, in func(Result) bool) {
	type key struct{ round, queues int }
	matched := map[key]bool{}
	for _, b := range r.Results {
		if b.System != Baseline || !hasQueues(b, q) || b.Noisy() || b.OfferedPPS() == 0 {
			continue
		}
		k := key{b.Round, max(b.Queues, 1)}
		for _, x := range r.Results {
			if x.System == sys && (key{x.Round, max(x.Queues, 1)}) == k && !x.Noisy() &&
				math.Abs(x.OfferedPPS()/b.OfferedPPS()-1) <= MaxLoadGap {
				matched[k] = true
				if !slices.Contains(rounds, b.Round) {
					rounds = append(rounds, b.Round)
				}
			}
		}
	}
	return rounds, func(x Result) bool { return matched[key{x.Round, max(x.Queues, 1)}] }
}

// Goals are the goals, each met or not.
type Goals struct {
	Loss, Delivered, WorkerUser, WorkerCPU bool
}

// GoalsMet checks the goals. The loss goal is for a fixed rate, the
// forwarded share's for the generator's maximum: a run checks the one its
// rate stands for, and reports the other as met.
func (c Comparison) GoalsMet(fixedRate bool) Goals {
	g := Goals{Loss: true, Delivered: true,
		WorkerUser: c.WorkerUser > 0 && c.WorkerUser <= MaxWorkerUser,
		WorkerCPU:  c.WorkerCPU > 0 && c.WorkerCPU <= MaxWorkerCPU}
	if fixedRate {
		g.Loss = c.XLBLoss <= c.BaseLoss+MaxExtraLoss
	} else {
		g.Delivered = c.Delivered >= MinDelivered
	}
	return g
}

// Markdown renders the report: the setup, a row per system and round, and
// the comparison with the goals.
func (r *Report) Markdown() string {
	var b bytes.Buffer
	o := r.Options
	rate := "as fast as it can"
	if o.Rate != "" {
		rate = "at " + o.Rate
	}
	fmt.Fprintf(&b, "Machine: %s; %s; %s.\n\n", r.Machine, r.Machine.Trafgen, r.Start.UTC().Format("2006-01-02"))
	queues := o.Queues
	if len(queues) == 0 {
		queues = []int{1}
	}
	fmt.Fprintf(&b, "Load: trafgen on CPU %d, %s flows of 60-byte TCP ACKs to the VIP, %s. "+
		"Programs on CPU %d: one worker, %s receive, %s XDP (veth: copy-mode AF_XDP). "+
		"%v windows after %v of load, %d round(s). "+
		"A window is noisy (*) when other tasks and the hypervisor's steal took more than %.0f%% of either CPU.\n\n",
		o.GenCPU, thousands(Flows), rate, o.LBCPU, o.Receive, o.Mode, o.Duration, o.Warmup, o.Rounds, 100*NoisyShare)
	if slices.Max(queues) > 1 || len(o.SpareCPUs) > 0 {
		fmt.Fprintf(&b, "RX queues: %s, one worker (xdp-baseline: loop) per queue, on CPUs %s; the generator's flows "+
			"spread over the queues by XPS (the flow hash). CPU columns: worker = the workers together; LB core = CPU %d's. ",
			affinity.Format(queues), affinity.Format(o.LBCPUs(slices.Max(queues))), o.LBCPU)
		if len(o.SpareCPUs) > 0 {
			fmt.Fprintf(&b, "xlb's other threads on CPU(s) %s (xlbd -worker-cpus -isolate-workers).", affinity.Format(o.SpareCPUs))
		}
		b.WriteString("\n\n")
	}
	b.WriteString("| system | round | offered (pps) | forwarded (pps) | loss | RX ring full | rx_dropped | fill ring empty | invalid descs | worker CPU (ns/pkt) | of which user space | process CPU (ns/pkt) | LB core busy (ns/pkt) | LB core | generator core | others on gen / LB CPU | busiest others | queues | RX per queue |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.Results {
		util := func(d time.Duration) string {
			if x.Window <= 0 {
				return "0%"
			}
			return fmt.Sprintf("%.0f%%", 100*d.Seconds()/x.Window.Seconds())
		}
		mark := ""
		if x.Noisy() {
			mark = " *"
		}
		k := x.XSK
		fmt.Fprintf(&b, "| %s%s | %d | %s | %s | %s | %s | %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %s / %s | %s | %d | %s |\n",
			x.System, mark, x.Round, thousands(int(x.OfferedPPS())), thousands(int(x.ForwardedPPS())), percent(x.Loss()),
			thousands(int(k.RxFull)), thousands(int(k.RxDropped)), thousands(int(k.FillEmpty)), thousands(int(k.RxInvalid+k.TxInvalid)),
			x.PerPacket(x.WorkerCPU), x.PerPacket(x.WorkerUser), x.PerPacket(x.ProcessCPU),
			x.PerPacket(x.CoreBusy), util(x.CoreBusy), util(x.GenBusy),
			util(x.Noise.Others[0]+x.Noise.Steal[0]), util(x.Noise.Others[1]+x.Noise.Steal[1]), x.Noise.Top,
			max(x.Queues, 1), split(x))
	}
	for _, q := range queues {
		for _, sys := range []string{XLB, RefXLB} {
			r.compareTable(&b, sys, q, len(queues) > 1)
		}
	}
	if len(queues) > 1 {
		r.scalingTable(&b, queues)
	}
	return b.String()
}

// split is how a window's packets spread over the RX queues, in percent.
func split(x Result) string {
	var total uint64
	for _, n := range x.QueuePackets {
		total += n
	}
	if total == 0 {
		return ""
	}
	s := make([]string, max(x.Queues, 1))
	for i := range s {
		s[i] = fmt.Sprintf("%.0f", 100*float64(x.QueuePackets[i])/float64(total))
	}
	return strings.Join(s, "/") + "%"
}

// scalingTable compares each system's forwarded rate at each queue count
// with its rate at the first, at the loss each had.
func (r *Report) scalingTable(b *bytes.Buffer, queues []int) {
	fmt.Fprintf(b, "\n| system, against %d queue(s) | queues | offered (pps) | forwarded (pps) | loss | forwarded rate | windows |\n|---|---|---|---|---|---|---|\n", queues[0])
	for _, sys := range []string{Baseline, XLB, RefXLB} {
		base, n := r.Mean(sys, queues[0], true)
		if n == 0 {
			base, _ = r.Mean(sys, queues[0], false)
		}
		for _, q := range queues {
			m, n := r.Mean(sys, q, true)
			which := fmt.Sprintf("%d quiet", n)
			if n == 0 {
				if m, n = r.Mean(sys, q, false); n == 0 {
					continue
				}
				which = fmt.Sprintf("%d, **none quiet**", n)
			}
			ratio := 0.0
			if base.ForwardedPPS() > 0 {
				ratio = m.ForwardedPPS() / base.ForwardedPPS()
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %.2f× | %s |\n", sys, q, thousands(int(m.OfferedPPS())),
				thousands(int(m.ForwardedPPS())), percent(m.Loss()), ratio, which)
		}
	}
}

// compareTable writes the comparison of sys with the baseline at q queues,
// and its goals; nothing when either is missing. many says the run
// measured several queue counts.
func (r *Report) compareTable(b *bytes.Buffer, sys string, q int, many bool) {
	o := r.Options
	c, ok := r.CompareAt(sys, q)
	if !ok {
		return
	}
	fixed := o.Rate != ""
	g := c.GoalsMet(fixed)
	over := fmt.Sprintf("over the quiet rounds whose loads match within %.0f%% (%s)", 100*MaxLoadGap, roundList(c.Matched))
	switch {
	case !c.Quiet:
		over = "over **all** windows: one system had no quiet window"
	case len(c.Matched) == 0:
		over = fmt.Sprintf("over the quiet windows (%s %d, baseline %d); **no round's loads matched** within %.0f%%", sys, c.XLBN, c.BaselineN, 100*MaxLoadGap)
	}
	at := ""
	if many {
		at = fmt.Sprintf(", %d queue(s)", q)
	}
	fmt.Fprintf(b, "\n| %s / baseline%s, %s | value | goal | |\n|---|---|---|---|\n", sys, at, over)
	fmt.Fprintf(b, "| offered rate | %.3f | equal | |\n", c.Offered)
	lossGoal, shareGoal := "", ""
	if fixed {
		lossGoal = fmt.Sprintf("≤ baseline + %.1f points | %s", 100*MaxExtraLoss, verdict(g.Loss))
	} else {
		shareGoal = fmt.Sprintf("≥ %.0f%% | %s", 100*MinDelivered, verdict(g.Delivered))
	}
	fmt.Fprintf(b, "| loss, %s against the baseline | %s vs %s | %s |\n", sys, percent(c.XLBLoss), percent(c.BaseLoss), cmpCell(lossGoal))
	fmt.Fprintf(b, "| forwarded share of the offered load | %.1f%% | %s |\n", 100*c.Delivered, cmpCell(shareGoal))
	fmt.Fprintf(b, "| forwarded rate | %.1f%% | | |\n", 100*c.Forwarded)
	fmt.Fprintf(b, "| worker CPU per packet | %.2f× | ≤ %.1f× | %s |\n", c.WorkerCPU, MaxWorkerCPU, verdict(g.WorkerCPU))
	fmt.Fprintf(b, "| worker user-space CPU per packet | %.2f× | ≤ %.1f× | %s |\n", c.WorkerUser, MaxWorkerUser, verdict(g.WorkerUser))
	fmt.Fprintf(b, "| process CPU per packet | %.2f× | | |\n", c.ProcessCPU)
	fmt.Fprintf(b, "| LB core busy per packet | %.2f× | | |\n", c.CoreBusy)
}

// roundList names rounds: "round 2", "rounds 1, 3".
func roundList(rounds []int) string {
	s := make([]string, len(rounds))
	for i, n := range rounds {
		s[i] = strconv.Itoa(n)
	}
	if len(s) == 1 {
		return "round " + s[0]
	}
	return "rounds " + strings.Join(s, ", ")
}

// cmpCell is a goal and its verdict, or two empty cells for a goal the
// run's rate does not stand for.
func cmpCell(goal string) string {
	if goal == "" {
		return " |"
	}
	return goal
}

// percent formats a loss. Packets in flight when the counters are read
// can make a window's forwarded count exceed its offered count by a few;
// that shows as 0.00%, not as a negative loss.
func percent(f float64) string {
	return fmt.Sprintf("%.2f%%", 100*max(f, 0))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// thousands formats n with comma separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
