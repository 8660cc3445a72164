package bench

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/internal/ethtool"
)

// Result is one system's measured window.
type Result struct {
	System string
	Round  int
	Queues int           // RX queues, one worker each (0 is 1)
	Window time.Duration // between the two samples

	// Offered is what the generator put on the link: its end's
	// tx_packets plus tx_dropped (veth drops when the LB's receive ring
	// is full, before XDP). Forwarded is what came back to it: its end's
	// rx_packets. LBDropped is the LB end's rx_dropped: packets the XDP
	// program redirected that the AF_XDP socket could not take (RX ring
	// full or no free frame on the fill ring).
	Offered, Forwarded, LBDropped uint64
	// QueuePackets are the packets the XDP program saw on each of the LB
	// end's RX queues (veth's rx_queue_N_xdp_packets): how the generator
	// spread its flows.
	QueuePackets [MaxQueues]uint64

	// WorkerCPU is the on-CPU time of the process's busiest thread (the
	// worker: the forwarding loop; with N queues, of its N busiest
	// threads, the N workers), ProcessCPU that of all its threads,
	// both from /proc/<pid>/task/<tid>/schedstat (nanoseconds, including
	// the softirq work that interrupts them). CoreBusy is the LB CPU's
	// non-idle time from /proc/stat (10 ms ticks), whoever ran: the
	// program, softirqs run by ksoftirqd, anything else scheduled there.
	WorkerCPU, ProcessCPU, CoreBusy time.Duration
	WorkerThread                    string // the worker threads' names
	Threads                         int
	// WorkerUser is the part of WorkerCPU spent in user space (the
	// program's own code, from utime in /proc/<pid>/task/<tid>/stat, 10 ms
	// ticks, scaled to WorkerCPU); the rest is the kernel's: system calls
	// (transmit, poll) and the softirqs that run in them.
	WorkerUser time.Duration
	// GenCPU is the generator's on-CPU time (trafgen's threads); GenBusy
	// its CPU's non-idle time, which includes the LB's receive path (see
	// the package doc).
	GenCPU, GenBusy time.Duration

	// XSK is the kernel's counters of the program's AF_XDP socket in the
	// window: where the LB end's rx_dropped comes from.
	XSK XSKStats
	// Noise is what else ran on the two CPUs in the window.
	Noise Noise

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
	tasks   map[int]thread      // every thread on the machine, by id
	cpus    [2]cpuTimes         // the generator's CPU, the LB's
	xsk     map[string]XSKStats // the program's sockets
	queues  [MaxQueues]uint64   // the LB end's packets per RX queue
}

type thread struct {
	taskStat
	pid int
	run time.Duration // schedstat: on-CPU time
}

// roles say whose a thread is in a window.
type roles struct {
	lb   int    // the program under test's pid
	gen  int    // trafgen's process group (it forks its worker)
	self int    // the benchmark's own pid: it sleeps through the window
	cpus [2]int // the generator's CPU, the LB's
}

// sample reads the link counters at both ends, the AF_XDP sockets'
// counters of the program pid, every thread's CPU time and the two CPUs'
// times, close together.
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
	if s.xsk, err = xskSockets(pid); err != nil {
		return s, err
	}
	if s.queues, err = b.queueStats(); err != nil {
		return s, err
	}
	if s.tasks, err = tasks(); err != nil {
		return s, err
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	for i, c := range []int{b.o.GenCPU, b.o.LBCPU} {
		if s.cpus[i], err = parseCPU(string(stat), c); err != nil {
			return s, err
		}
	}
	return s, nil
}

// queueStats reads the packets the LB end's XDP program saw per RX queue.
func (b *bench) queueStats() ([MaxQueues]uint64, error) {
	var q [MaxQueues]uint64
	err := b.lab.Do(b.lbNS, func() error {
		m, err := ethtool.Stats(Iface)
		for i := range q {
			q[i] = m[fmt.Sprintf("rx_queue_%d_xdp_packets", i)]
		}
		return err
	})
	return q, err
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
func (r *Result) fill(s0, s1 sample, who roles) {
	r.Window = s1.at.Sub(s0.at)
	r.Offered = (s1.gen.TxPackets + s1.gen.TxDropped) - (s0.gen.TxPackets + s0.gen.TxDropped)
	r.Forwarded = s1.gen.RxPackets - s0.gen.RxPackets
	r.LBDropped = s1.lb.RxDropped - s0.lb.RxDropped
	r.XSK = xskWindow(s0.xsk, s1.xsk)
	for i := range r.QueuePackets {
		r.QueuePackets[i] = s1.queues[i] - s0.queues[i]
	}
	type lbThread struct {
		tid int
		run time.Duration
	}
	var lb []lbThread
	var others []other
	for tid, t1 := range s1.tasks {
		d := t1.run - s0.tasks[tid].run // a thread born in the window started at 0
		switch {
		case t1.pid == who.lb:
			r.Threads++
			r.ProcessCPU += d
			lb = append(lb, lbThread{tid, d})
		case t1.pgrp == who.gen && who.gen != 0:
			r.GenCPU += d
		case t1.pid == who.self, strings.HasPrefix(t1.name, "ksoftirqd/"), d <= 0:
			// The harness, asleep; the packet path's softirqs, deferred
			// to their thread: both part of the measurement.
		default:
			others = append(others, other{name: t1.name, pid: t1.pid, cpu: t1.cpu, run: d})
		}
	}
	// The workers are the busiest threads, one per queue.
	slices.SortFunc(lb, func(a, b lbThread) int { return cmp.Or(cmp.Compare(b.run, a.run), cmp.Compare(a.tid, b.tid)) })
	var names []string
	for _, w := range lb[:min(max(r.Queues, 1), len(lb))] {
		t0, t1 := s0.tasks[w.tid], s1.tasks[w.tid]
		r.WorkerCPU += w.run
		names = append(names, fmt.Sprintf("%s/%d", t1.name, w.tid))
		u, st := t1.utime-t0.utime, t1.stime-t0.stime
		if u+st > 0 {
			r.WorkerUser += time.Duration(float64(w.run) * float64(u) / float64(u+st))
		}
	}
	r.WorkerThread = strings.Join(names, " ")
	r.CoreBusy = s1.cpus[1].busy - s0.cpus[1].busy
	r.GenBusy = s1.cpus[0].busy - s0.cpus[0].busy
	r.Noise = noise(others, who.cpus, [2]time.Duration{s1.cpus[0].steal - s0.cpus[0].steal, s1.cpus[1].steal - s0.cpus[1].steal})
}

// tasks reads the on-CPU time of every thread on the machine: those of
// the program under test for its figures, all of them for the window's
// noise.
func tasks() (map[int]thread, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	m := make(map[int]thread, 4*len(procs))
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "task")
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // the process ended meanwhile
		}
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
			ts, err := parseStat(string(st))
			if err != nil {
				return nil, fmt.Errorf("thread %d: %w", tid, err)
			}
			m[tid] = thread{taskStat: ts, pid: pid, run: run}
		}
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

// taskStat is what the benchmark reads of /proc/<pid>/task/<tid>/stat.
type taskStat struct {
	name         string
	pgrp         int    // field 5: trafgen's forked worker stays in its group
	utime, stime uint64 // fields 14 and 15, in ticks
	cpu          int    // field 39: the CPU it last ran on
}

// parseStat reads a thread's stat line. The name is in parentheses and may
// hold spaces and parentheses itself.
func parseStat(s string) (taskStat, error) {
	var t taskStat
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return t, fmt.Errorf("stat %q: no name", s)
	}
	t.name = s[open+1 : end]
	// f[0] is field 3, so field n is f[n-3].
	f := strings.Fields(s[end+1:])
	if len(f) < 39-2 {
		return t, fmt.Errorf("stat %q: short", s)
	}
	var err error
	num := func(i int) uint64 {
		v, e := strconv.ParseUint(f[i-3], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("stat field %d %q: %w", i, f[i-3], e)
		}
		return v
	}
	t.pgrp, t.utime, t.stime, t.cpu = int(num(5)), num(14), num(15), int(num(39))
	return t, err
}

// cpuTimes is one CPU's line of /proc/stat.
type cpuTimes struct {
	busy  time.Duration // user, nice, system, irq, softirq
	steal time.Duration // taken by the hypervisor for someone else
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
		return cpuTimes{busy: time.Duration(busy) * tick, steal: time.Duration(v[7]) * tick}, nil
	}
	return cpuTimes{}, fmt.Errorf("/proc/stat has no %s", name)
}
