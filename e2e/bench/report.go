package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Goals from issue #3: xlb forwards at least MinForwarded of what the
// baseline forwards at the same offered load, with at most MaxCPU times
// its CPU time per packet.
const (
	MinForwarded = 0.95
	MaxCPU       = 1.5
)

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

// Mean averages a system's rounds.
func (r *Report) Mean(sys string) (Result, bool) {
	var m Result
	n := 0
	for _, x := range r.Results {
		if x.System != sys {
			continue
		}
		n++
		m.System = sys
		m.Window += x.Window
		m.Offered += x.Offered
		m.Forwarded += x.Forwarded
		m.LBDropped += x.LBDropped
		m.WorkerCPU += x.WorkerCPU
		m.WorkerUser += x.WorkerUser
		m.ProcessCPU += x.ProcessCPU
		m.CoreBusy += x.CoreBusy
	}
	return m, n > 0
}

// Comparison is xlb against the baseline, over all rounds.
type Comparison struct {
	Offered float64 // xlb's offered rate / the baseline's: how equal the loads were
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

// Compare compares xlb with the baseline; false when either is missing.
func (r *Report) Compare() (Comparison, bool) {
	x, ok1 := r.Mean(XLB)
	b, ok2 := r.Mean(Baseline)
	if !ok1 || !ok2 || b.Forwarded == 0 || b.Offered == 0 {
		return Comparison{}, false
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	return Comparison{
		Offered:    ratio(x.OfferedPPS(), b.OfferedPPS()),
		Delivered:  ratio(1-x.Loss(), 1-b.Loss()),
		Forwarded:  ratio(x.ForwardedPPS(), b.ForwardedPPS()),
		WorkerCPU:  ratio(x.PerPacket(x.WorkerCPU), b.PerPacket(b.WorkerCPU)),
		WorkerUser: ratio(x.PerPacket(x.WorkerUser), b.PerPacket(b.WorkerUser)),
		ProcessCPU: ratio(x.PerPacket(x.ProcessCPU), b.PerPacket(b.ProcessCPU)),
		CoreBusy:   ratio(x.PerPacket(x.CoreBusy), b.PerPacket(b.CoreBusy)),
	}, true
}

// GoalsMet reports whether the two goals hold.
func (c Comparison) GoalsMet() (forwarded, cpu bool) {
	return c.Delivered >= MinForwarded, c.WorkerCPU > 0 && c.WorkerCPU <= MaxCPU
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
	fmt.Fprintf(&b, "Load: trafgen on CPU %d, %s flows of 60-byte TCP ACKs to the VIP, %s. "+
		"Programs on CPU %d: one worker, %s receive, %s XDP (veth: copy-mode AF_XDP). "+
		"%v windows after %v of load, %d round(s).\n\n",
		o.GenCPU, thousands(Flows), rate, o.LBCPU, o.Receive, o.Mode, o.Duration, o.Warmup, o.Rounds)
	b.WriteString("| system | round | offered (pps) | forwarded (pps) | loss | refused by the socket | worker CPU (ns/pkt) | of which user space | process CPU (ns/pkt) | LB core busy (ns/pkt) | LB core utilisation |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, x := range r.Results {
		util := 0.0
		if x.Window > 0 {
			util = x.CoreBusy.Seconds() / x.Window.Seconds()
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f%% |\n",
			x.System, x.Round, thousands(int(x.OfferedPPS())), thousands(int(x.ForwardedPPS())), percent(x.Loss()),
			thousands(int(x.LBDropped)), x.PerPacket(x.WorkerCPU), x.PerPacket(x.WorkerUser), x.PerPacket(x.ProcessCPU),
			x.PerPacket(x.CoreBusy), 100*util)
	}
	c, ok := r.Compare()
	if !ok {
		return b.String()
	}
	fwdOK, cpuOK := c.GoalsMet()
	b.WriteString("\n| xlb / baseline | ratio | goal | |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| offered rate | %.3f | equal | |\n", c.Offered)
	fmt.Fprintf(&b, "| forwarded share of the offered load | %.1f%% | ≥ %.0f%% | %s |\n", 100*c.Delivered, 100*MinForwarded, verdict(fwdOK))
	fmt.Fprintf(&b, "| forwarded rate | %.1f%% | | |\n", 100*c.Forwarded)
	fmt.Fprintf(&b, "| worker CPU per packet | %.2f× | ≤ %.1f× | %s |\n", c.WorkerCPU, MaxCPU, verdict(cpuOK))
	fmt.Fprintf(&b, "| worker user-space CPU per packet | %.2f× | | |\n", c.WorkerUser)
	fmt.Fprintf(&b, "| process CPU per packet | %.2f× | | |\n", c.ProcessCPU)
	fmt.Fprintf(&b, "| LB core busy per packet | %.2f× | | |\n", c.CoreBusy)
	return b.String()
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
