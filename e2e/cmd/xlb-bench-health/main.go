// Command xlb-bench-health measures what health checking 10,000 backends
// at a 1 s interval costs (issue #4): it starts 10,000 TCP listeners on
// loopback addresses, launches the built-in tcp plugin through plugins/host
// as xlbd does, runs control/health's scheduler over them for a while, and
// reports the CPU time used by this process (the scheduler's side, as in
// xlbd) and by the plugin, per second of wall time. The plugin's time is
// also split into user and system: on loopback the kernel's TCP work for
// both ends of each probe lands in the plugin's system time.
//
//	go build -o bin/plugins/ ./plugins/healthcheck/tcp
//	go run ./e2e/cmd/xlb-bench-health -plugin bin/plugins/tcp
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/plugins/host"
	"github.com/xlbproject/xlb/plugins/sdk"
)

func main() {
	plugin := flag.String("plugin", "bin/plugins/tcp", "the tcp health-check plugin binary")
	n := flag.Int("targets", 10000, "backends to check")
	interval := flag.Duration("interval", time.Second, "health-check interval")
	duration := flag.Duration("duration", 10*time.Second, "measured time, after one interval of warm-up")
	runs := flag.Int("runs", 1, "measured rounds of -duration each, one table row per round")
	withFloor := flag.Bool("floor", false, "also measure the kernel floor: a minimal loop of a check's system calls over the same backends (see floor.go)")
	floorLoopFlag := flag.Bool("floor-loop", false, "internal: be the floor loop (a child process)")
	serve := flag.Bool("serve", false, "internal: be the backends' listeners (a child process, so their CPU is not counted as xlbd's)")
	flag.Parse()
	if *serve {
		if err := listen(*n); err != nil {
			fmt.Fprintln(os.Stderr, "xlb-bench-health: backends:", err)
			os.Exit(1)
		}
		return
	}
	if *floorLoopFlag {
		if err := floorLoop(*n, *interval); err != nil {
			fmt.Fprintln(os.Stderr, "xlb-bench-health: floor loop:", err)
			os.Exit(1)
		}
		return
	}
	path, err := filepath.Abs(*plugin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xlb-bench-health:", err)
		os.Exit(1)
	}
	if err := run(path, *n, *interval, *duration, max(1, *runs), *withFloor); err != nil {
		fmt.Fprintln(os.Stderr, "xlb-bench-health:", err)
		os.Exit(1)
	}
}

// countingProber counts the verdicts and calls that pass through it.
type countingProber struct {
	inner             health.Prober
	mu                sync.Mutex
	pass, fail, calls int
}

func (c *countingProber) Probe(ctx context.Context, targets []health.Target) ([]health.Result, error) {
	rs, err := c.inner.Probe(ctx, targets)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	for _, r := range rs {
		if r.OK {
			c.pass++
		} else {
			c.fail++
		}
	}
	return rs, err
}

func (c *countingProber) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pass, c.fail, c.calls = 0, 0, 0
}

func (c *countingProber) read() (pass, fail, calls int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pass, c.fail, c.calls
}

const port = 18080

// backendAddr is backend i's loopback address.
func backendAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(i%250 + 1)})
}

// listen is the backends: n listeners that accept and close, then a byte
// on stdout to say they are ready, then wait to be killed.
func listen(n int) error {
	// n listeners and their accepted connections need more than the usual
	// 1024 descriptors.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	for i := range n {
		l, err := net.Listen("tcp", netip.AddrPortFrom(backendAddr(i), port).String())
		if err != nil {
			return fmt.Errorf("listener %d of %d: %w", i+1, n, err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	os.Stdout.Write([]byte{1})
	select {}
}

func run(plugin string, n int, interval, duration time.Duration, runs int, withFloor bool) error {
	pool := control.Pool{Name: "big", HealthChecks: []control.HealthCheck{{
		Method: "tcp", Interval: interval, Timeout: interval / 2, Rise: 2, Fall: 3,
		Port: port,
	}}}
	for i := range n {
		pool.Backends = append(pool.Backends, control.Backend{Name: fmt.Sprintf("b%05d", i), Address: backendAddr(i), Weight: 1})
	}
	// The backends are another process: accepting 10,000 connections a
	// second is their work, not xlbd's.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	backends := exec.Command(exe, "-serve", "-targets", strconv.Itoa(n))
	backends.Stderr = os.Stderr
	ready, err := backends.StdoutPipe()
	if err != nil {
		return err
	}
	backends.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := backends.Start(); err != nil {
		return err
	}
	defer func() { _ = backends.Process.Kill(); _ = backends.Wait() }()
	if _, err := ready.Read(make([]byte, 1)); err != nil {
		return fmt.Errorf("backends did not start: %w", err)
	}
	if withFloor {
		// Before the plugin starts, so that the two do not share the CPUs.
		cpu, wall, err := floor(exe, n, interval, duration)
		if err != nil {
			return err
		}
		perSec := func(d time.Duration) float64 { return d.Seconds() / wall.Seconds() }
		fmt.Printf("kernel floor (raw connect loop, %d targets per %v): user %.3f, sys %.3f, total %.3f cores\n\n",
			n, interval, perSec(cpu.user), perSec(cpu.sys), perSec(cpu.total()))
	}
	cfg := &control.Config{Pools: []control.Pool{pool}}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := host.New(host.Spec{Name: "tcp", Path: plugin, Kind: sdk.KindHealthChecker, Config: []byte("{}")}, host.Options{Logger: log})
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		return err
	}
	defer p.Stop()
	counter := &countingProber{inner: p.Prober()}
	sched := health.New(health.Options{Probers: map[string]health.Prober{"tcp": counter}})
	if err := sched.Configure(cfg); err != nil {
		return err
	}
	sched.Start()
	defer sched.Stop()

	// The PID is for a profiler attached by hand (perf record -p PID).
	fmt.Fprintf(os.Stderr, "plugin PID %d\n", p.Status().PID)
	time.Sleep(interval) // warm-up: every slot fires once
	fmt.Printf("| targets | interval | probes/s | failed | Probe calls/s | xlbd side (cores) | plugin user | plugin sys | plugin (cores) | total (cores) |\n|---|---|---|---|---|---|---|---|---|---|\n")
	failed := false
	for range runs {
		selfStart, pluginStart := cpuSelf(), cpuOf(p.Status().PID)
		counter.reset()
		start := time.Now()
		time.Sleep(duration)
		wall := time.Since(start)
		self, plugin := cpuSelf().sub(selfStart), cpuOf(p.Status().PID).sub(pluginStart)
		pass, fail, calls := counter.read()
		perSec := func(d time.Duration) float64 { return d.Seconds() / wall.Seconds() }
		fmt.Printf("| %d | %v | %.0f | %d | %.1f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", n, interval,
			float64(pass+fail)/wall.Seconds(), fail, float64(calls)/wall.Seconds(),
			perSec(self.total()), perSec(plugin.user), perSec(plugin.sys), perSec(plugin.total()), perSec(self.total()+plugin.total()))
		failed = failed || fail > 0
	}
	if failed {
		return errors.New("some probes failed: the numbers above are not of a healthy fleet")
	}
	return nil
}

// cpuTime is a process's CPU time, split into user and system.
type cpuTime struct{ user, sys time.Duration }

func (c cpuTime) total() time.Duration { return c.user + c.sys }

func (c cpuTime) sub(o cpuTime) cpuTime { return cpuTime{c.user - o.user, c.sys - o.sys} }

// cpuSelf is this process's CPU time: the scheduler and the plugin client,
// what xlbd spends on health checking.
func cpuSelf() cpuTime {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return cpuTime{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

// cpuOf is a process's CPU time from /proc/PID/stat (utime and stime, in
// clock ticks).
func cpuOf(pid int) cpuTime {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTime{}
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return cpuTime{}
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return cpuTime{time.Duration(ut) * time.Second / ticksPerSecond, time.Duration(st) * time.Second / ticksPerSecond}
}
