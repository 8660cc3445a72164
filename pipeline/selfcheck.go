package pipeline

import (
	"fmt"
	"sync"
	"time"
)

// SelfChecker is implemented by elements that can tell whether they still
// forward: RxXDP checks that its XDP program is still attached and its
// socket still registered. SelfCheck is called from a goroutine other than
// the worker's (Runtime.SelfCheck), so it reads only what is safe to read
// there, and it must be quick (no more than a few system calls).
type SelfChecker interface {
	SelfCheck() error
}

// PollWaiter is implemented by sources whose Pull may wait for packets:
// MaxWait is the longest one Pull waits. A worker is stalled when its
// loop has not turned for StallAfter (see Options), which is at least ten
// of its sources' waits.
type PollWaiter interface {
	MaxWait() time.Duration
}

// DefaultStallAfter is the shortest time a worker's loop may stand still
// before Runtime.SelfCheck reports it stalled.
const DefaultStallAfter = time.Second

// worker run states, for the self-check.
const (
	notRunning int32 = iota
	running
	exited
)

// selfCheck is the self-check's memory of each worker's progress.
type selfCheck struct {
	mu    sync.Mutex
	after time.Duration
	seen  []progress
}

// progress is the loop count a worker had when the self-check last saw it
// move, and when that was.
type progress struct {
	iters uint64
	at    time.Time
}

// stallAfter is how long the instances' loops may stand still: at least
// DefaultStallAfter (or the option, when set), and ten of the longest wait
// of any source.
func stallAfter(opt time.Duration, insts []*Instance) time.Duration {
	d := DefaultStallAfter
	if opt > 0 {
		d = opt
	}
	for _, inst := range insts {
		for _, s := range inst.sources {
			if w, ok := s.el.(PollWaiter); ok {
				d = max(d, 10*w.MaxWait())
			}
		}
	}
	return d
}

// SelfCheck reports whether the forwarder still works, as of now: every
// worker is running and its loop has turned within the stall time (a
// worker blocked in an element or a system call stops it), and every
// element that implements SelfChecker passes. It returns the first
// failure, naming the worker (and element) and the reason; nil when all
// pass. A route announcer withdraws everything while it fails. It is
// meant to be called periodically (xlbd: every 200 ms) from one goroutine;
// the first call only records where each worker is.
func (rt *Runtime) SelfCheck(now time.Time) error {
	sc := &rt.check
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.seen == nil {
		sc.seen = make([]progress, len(rt.insts))
		for i, inst := range rt.insts {
			sc.seen[i] = progress{inst.iters.Load(), now}
		}
	}
	for i, inst := range rt.insts {
		switch inst.state.Load() {
		case notRunning:
			return fmt.Errorf("worker %d is not running", i)
		case exited:
			return fmt.Errorf("worker %d has stopped", i)
		}
		n := inst.iters.Load()
		if n != sc.seen[i].iters {
			sc.seen[i] = progress{n, now}
			continue
		}
		if stalled := now.Sub(sc.seen[i].at); stalled >= sc.after {
			return fmt.Errorf("worker %d made no progress for %v", i, stalled.Round(time.Millisecond))
		}
	}
	for i, inst := range rt.insts {
		for _, e := range inst.elems {
			if c, ok := e.el.(SelfChecker); ok {
				if err := c.SelfCheck(); err != nil {
					return fmt.Errorf("worker %d: `%s` (%s): %w", i, e.decl.Name, e.typ.Name, err)
				}
			}
		}
	}
	return nil
}
