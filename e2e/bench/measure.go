package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// Result is one system's measured window.
type Result struct {
	System string
	Round  int
	Window time.Duration // between the two samples

	// Offered is what the generator put on the link: its end's
	// tx_packets plus tx_dropped (veth drops when the LB's receive ring
	// is full, before XDP). Forwarded is what came back to it: its end's
	// rx_packets. LBDropped is the LB end's rx_dropped: packets the XDP
	// program redirected that the AF_XDP socket could not take (RX ring
	// full or no free frame on the fill ring).
	Offered, Forwarded, LBDropped uint64

	// WorkerCPU is the on-CPU time of the process's busiest thread (the
	// worker: the forwarding loop), ProcessCPU that of all its threads,
	// both from /proc/<pid>/task/<tid>/schedstat (nanoseconds, including
	// the softirq work that interrupts them). CoreBusy is the LB CPU's
	// non-idle time from /proc/stat (10 ms ticks), whoever ran: the
	// program, softirqs run by ksoftirqd, anything else scheduled there.
	WorkerCPU, ProcessCPU, CoreBusy time.Duration
	WorkerThread                    string // the worker thread's name
	Threads                         int
	// WorkerUser is the part of WorkerCPU spent in user space (the
	// program's own code, from utime in /proc/<pid>/task/<tid>/stat, 10 ms
	// ticks, scaled to WorkerCPU); the rest is the kernel's: system calls
	// (transmit, poll) and the softirqs that run in them.
	WorkerUser time.Duration

	Output string // the program's output (its counters at exit)
}

func (r Result) rate(n uint64) float64 {
	if r.Window <= 0 {
		return 0
	}
	return float64(n) / r.Window.Seconds()
}

// OfferedPPS is the offered load in packets per second.
func (r Result) OfferedPPS() float64 { return r.rate(r.Offered) }

// ForwardedPPS is the forwarding rate in packets per second.
func (r Result) ForwardedPPS() float64 { return r.rate(r.Forwarded) }

// Loss is the fraction of the offered packets not forwarded (negative
// when more came back than went out: packets in flight at the samples).
func (r Result) Loss() float64 {
	if r.Offered == 0 {
		return 0
	}
	return 1 - float64(r.Forwarded)/float64(r.Offered)
}

// PerPacket is d per forwarded packet, in nanoseconds.
func (r Result) PerPacket(d time.Duration) float64 {
	if r.Forwarded == 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / float64(r.Forwarded)
}

// Summary is one line for the log.
func (r Result) Summary() string {
	return fmt.Sprintf("offered %.0f pps, forwarded %.0f pps, loss %.2f%%, worker %.0f ns/pkt (%s), process %.0f ns/pkt, core %.0f ns/pkt",
		r.OfferedPPS(), r.ForwardedPPS(), 100*r.Loss(), r.PerPacket(r.WorkerCPU), r.WorkerThread,
		r.PerPacket(r.ProcessCPU), r.PerPacket(r.CoreBusy))
}

// sample is the counters at one moment.
type sample struct {
	at      time.Time
	gen, lb netlink.LinkStatistics
	threads map[int]thread
	core    cpuTimes
}

type thread struct {
	name         string
	run          time.Duration // schedstat: on-CPU time
	utime, stime uint64        // stat: user and system ticks
}

// sample reads the link counters at both ends, the LB program's threads
// and the LB CPU's times, in that order, close together.
func (b *bench) sample(pid int) (sample, error) {
	var s sample
	var err error
	s.at = time.Now()
	if s.gen, err = b.linkStats(b.genNS, b.genIdx); err != nil {
		return s, err
	}
	if s.lb, err = b.linkStats(b.lbNS, b.lbIdx); err != nil {
		return s, err
	}
	if s.threads, err = threads(pid); err != nil {
		return s, err
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	s.core, err = parseCPU(string(stat), b.o.LBCPU)
	return s, err
}

func (b *bench) linkStats(ns string, idx int) (netlink.LinkStatistics, error) {
	h, err := b.lab.Handle(ns)
	if err != nil {
		return netlink.LinkStatistics{}, err
	}
	defer h.Close()
	l, err := h.LinkByIndex(idx)
	if err != nil {
		return netlink.LinkStatistics{}, err
	}
	if l.Attrs().Statistics == nil {
		return netlink.LinkStatistics{}, fmt.Errorf("no statistics for %s in %s", l.Attrs().Name, ns)
	}
	return *l.Attrs().Statistics, nil
}

// fill computes the window's numbers from two samples.
func (r *Result) fill(s0, s1 sample) {
	r.Window = s1.at.Sub(s0.at)
	r.Offered = (s1.gen.TxPackets + s1.gen.TxDropped) - (s0.gen.TxPackets + s0.gen.TxDropped)
	r.Forwarded = s1.gen.RxPackets - s0.gen.RxPackets
	r.LBDropped = s1.lb.RxDropped - s0.lb.RxDropped
	r.Threads = len(s1.threads)
	worker := -1
	for tid, t1 := range s1.threads {
		d := t1.run - s0.threads[tid].run // a thread born in the window started at 0
		r.ProcessCPU += d
		if d > r.WorkerCPU {
			r.WorkerCPU, r.WorkerThread, worker = d, fmt.Sprintf("%s/%d", t1.name, tid), tid
		}
	}
	if worker >= 0 {
		t0, t1 := s0.threads[worker], s1.threads[worker]
		u, st := t1.utime-t0.utime, t1.stime-t0.stime
		if u+st > 0 {
			r.WorkerUser = time.Duration(float64(r.WorkerCPU) * float64(u) / float64(u+st))
		}
	}
	r.CoreBusy = s1.core.busy - s0.core.busy
}

// threads reads the on-CPU time of every thread of pid.
func threads(pid int) (map[int]thread, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := make(map[int]thread, len(ents))
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		run, err := parseSchedstat(string(b))
		if err != nil {
			return nil, fmt.Errorf("thread %d: %w", tid, err)
		}
		st, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		name, utime, stime, err := parseStat(string(st))
		if err != nil {
			return nil, fmt.Errorf("thread %d: %w", tid, err)
		}
		m[tid] = thread{name: name, run: run, utime: utime, stime: stime}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("process %d has no threads", pid)
	}
	return m, nil
}

// parseSchedstat reads the first field of /proc/<pid>/task/<tid>/schedstat:
// the time the thread has spent on a CPU, in nanoseconds.
func parseSchedstat(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, fmt.Errorf("schedstat %q: want 3 fields", s)
	}
	ns, err := strconv.ParseUint(f[0], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("schedstat %q: %w", s, err)
	}
	return time.Duration(ns), nil
}

// parseStat reads a thread's name (field 2) and user and system time in
// ticks (fields 14 and 15) from /proc/<pid>/task/<tid>/stat. The name is
// in parentheses and may hold spaces and parentheses itself.
func parseStat(s string) (name string, utime, stime uint64, err error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, 0, fmt.Errorf("stat %q: no name", s)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3; fields 14 and 15 are f[11] and f[12].
	if len(f) < 13 {
		return "", 0, 0, fmt.Errorf("stat %q: short", s)
	}
	if utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return "", 0, 0, fmt.Errorf("stat utime: %w", err)
	}
	if stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return "", 0, 0, fmt.Errorf("stat stime: %w", err)
	}
	return s[open+1 : end], utime, stime, nil
}

// cpuTimes is one CPU's line of /proc/stat.
type cpuTimes struct {
	busy time.Duration // user, nice, system, irq, softirq
}

// userHZ is the unit of /proc/stat, USER_HZ, 100 on every Linux
// architecture Go supports.
const userHZ = 100

// parseCPU finds the line of CPU cpu in /proc/stat's text:
//
//	cpuN user nice system idle iowait irq softirq steal guest guest_nice
//
// (guest time is already counted in user; steal, time the hypervisor
// took, is not busy).
func parseCPU(stat string, cpu int) (cpuTimes, error) {
	name := "cpu" + strconv.Itoa(cpu)
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != name {
			continue
		}
		if len(f) < 9 {
			return cpuTimes{}, fmt.Errorf("/proc/stat: short line %q", line)
		}
		var v [8]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[1+i], 10, 63)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
			}
			v[i] = n
		}
		tick := time.Second / userHZ
		busy := v[0] + v[1] + v[2] + v[5] + v[6]
		return cpuTimes{busy: time.Duration(busy) * tick}, nil
	}
	return cpuTimes{}, fmt.Errorf("/proc/stat has no %s", name)
}
