// Package affinity reads and sets which CPUs threads may run on, and
// reads and writes lists of CPUs, for xlbd's workers and the tools that
// pin threads as it does.
package affinity

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mask is the CPUs the calling thread may run on, in order: at start,
// the process's mask (taskset's or a cgroup's).
func Mask() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	cpus := List(set)
	if len(cpus) == 0 {
		return nil, errors.New("no CPU in the affinity mask")
	}
	return cpus, nil
}

// Pin binds the calling thread to cpu.
func Pin(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}

// Set is cpus as a CPUSet.
func Set(cpus []int) unix.CPUSet {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	return set
}

// List is the CPUs of set, in order.
func List(set unix.CPUSet) []int {
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// SetAllThreads sets the mask of every thread of the process. It sweeps
// /proc/self/task until a pass finds every thread already with it, which
// also catches a thread created during a sweep by one not yet moved (the
// kernel gives a new thread its creator's mask).
func SetAllThreads(set unix.CPUSet) error {
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
			if cur == set {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
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

// Parse reads a list of CPUs such as "1", "3,2" or "0-3,6" (the kernel's
// Cpus_allowed_list, taskset -c), keeping its order.
func Parse(s string) ([]int, error) {
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

// Format writes cpus as a comma-separated list, as Parse and taskset -c
// read it.
func Format(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}
