package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// placement is where a run's threads go: worker i on CPU workers[i %
// len(workers)], every other thread of the process (the Go runtime's
// sysmon, GC workers and idle Ms, the control plane's and the admin API's
// goroutines) on spare, the CPUs of the process's mask no worker uses. An
// empty spare means there is none: those threads share the workers' CPUs,
// as they do without pinning.
type placement struct {
	workers []int
	spare   unix.CPUSet
}

// planPlacement places n workers on the CPUs of allowed (the process's
// mask): on want, in its order, when given (each must be in allowed), else
// on the first n CPUs of allowed, wrapping around when n is larger.
func planPlacement(allowed unix.CPUSet, n int, want []int) (placement, error) {
	cpus := cpuList(allowed)
	if len(cpus) == 0 {
		return placement{}, errors.New("no CPU in this process's affinity mask")
	}
	var p placement
	if len(want) > 0 {
		for _, c := range want {
			if !slices.Contains(cpus, c) {
				return placement{}, fmt.Errorf("worker CPU %d is not in this process's affinity mask (%s)", c, formatCPUs(cpus))
			}
		}
		p.workers = want
	} else {
		p.workers = cpus[:min(max(n, 1), len(cpus))]
	}
	p.spare = allowed
	for _, c := range p.workers {
		p.spare.Clear(c)
	}
	return p, nil
}

// pin binds the calling thread to worker's CPU.
func (p placement) pin(worker int) error {
	var set unix.CPUSet
	set.Set(p.workers[worker%len(p.workers)])
	return unix.SchedSetaffinity(0, &set)
}

// confine moves every thread of the process to the spare CPUs, so that
// the workers, pinned afterwards, have their CPUs to themselves: the
// kernel gives a new thread its creator's mask, and the Go runtime
// creates its threads from unpinned ones (a worker's thread is locked, so
// the runtime starts the Ms it needs from its template thread), so threads
// created later land on the spare CPUs too. It sweeps until a pass finds
// every thread already there, which also catches threads created during a
// sweep by one not yet moved. False when there is no spare CPU.
func (p placement) confine() (bool, error) {
	if p.spare.Count() == 0 {
		return false, nil
	}
	return true, setAllThreads(&p.spare)
}

// setAllThreads sets the affinity mask of every thread of the process.
func setAllThreads(set *unix.CPUSet) error {
	for pass := 0; pass < 100; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		moved := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			var cur unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &cur); err != nil {
				continue // the thread ended meanwhile
			}
			if cur == *set {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("thread %d: %w", tid, err)
			}
			moved++
		}
		if moved == 0 {
			return nil
		}
	}
	return errors.New("threads kept appearing with another affinity mask")
}

// cpuList is the CPUs of set, in order.
func cpuList(set unix.CPUSet) []int {
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// parseCPUs reads a list of CPUs such as "1", "3,2" or "0-3,6", keeping its
// order (worker i goes on the i-th).
func parseCPUs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= len(unix.CPUSet{})*64 {
			return nil, fmt.Errorf("%q: want CPU numbers such as 1, 3,2 or 0-3", s)
		}
		for c := a; c <= b; c++ {
			if slices.Contains(cpus, c) {
				return nil, fmt.Errorf("%q: CPU %d twice", s, c)
			}
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// formatCPUs writes cpus as a comma-separated list.
func formatCPUs(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
