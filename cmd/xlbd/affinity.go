package main

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/affinity"
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
func planPlacement(allowed []int, n int, want []int) (placement, error) {
	if len(allowed) == 0 {
		return placement{}, errors.New("no CPU in this process's affinity mask")
	}
	var p placement
	if len(want) > 0 {
		for _, c := range want {
			if !slices.Contains(allowed, c) {
				return placement{}, fmt.Errorf("worker CPU %d is not in this process's affinity mask (%s)", c, affinity.Format(allowed))
			}
		}
		p.workers = want
	} else {
		p.workers = allowed[:min(max(n, 1), len(allowed))]
	}
	p.spare = affinity.Set(allowed)
	for _, c := range p.workers {
		p.spare.Clear(c)
	}
	return p, nil
}

// pin binds the calling thread to worker's CPU.
func (p placement) pin(worker int) error { return affinity.Pin(p.workers[worker%len(p.workers)]) }

// confine moves every thread of the process to the spare CPUs, so that
// the workers, pinned afterwards, have their CPUs to themselves: the
// kernel gives a new thread its creator's mask, and the Go runtime
// creates its threads from unpinned ones (a worker's thread is locked, so
// the runtime starts the threads it needs from its template thread), so
// threads created later land on the spare CPUs too. False when there is
// no spare CPU.
func (p placement) confine() (bool, error) {
	if p.spare.Count() == 0 {
		return false, nil
	}
	return true, affinity.SetAllThreads(p.spare)
}
