package health

import (
	"cmp"
	"slices"
	"time"
)

// Stats is a snapshot of the scheduler's state and counters.
type Stats struct {
	Backends []BackendStats // by name; backends without checks are omitted
	Checks   []CheckGroupStats
	// Publishes counts SetHealth calls, PublishErrors those that failed.
	Publishes, PublishErrors uint64
	LastPublishError         string
}

// BackendStats is one backend's health.
type BackendStats struct {
	Name string
	// Healthy is the health given to the controller: Raw and not
	// Suppressed (once the coalescing window has passed).
	Healthy, Raw, Suppressed bool
	Penalty                  float64 // dampening penalty, decayed to now
	Transitions              uint64  // of Raw
	Methods                  []MethodStats
}

// MethodStats is one (backend, method) check.
type MethodStats struct {
	Method     string
	Up         bool
	Pass, Fail int // consecutive
	Probes     uint64
	Last       Result
	LastAt     time.Time
	// Latencies are the probes' latencies, those without a verdict
	// (Unknown) left out: failures count, since a probe that timed out
	// took its timeout.
	Latencies Latencies
}

// LatencyBuckets are the upper bounds of the probe latency histogram each
// check keeps: from a probe on the same network (under a millisecond) to
// one at the longest timeouts.
var LatencyBuckets = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// Latencies is a histogram of probe latencies, counted where a check's
// result arrives.
type Latencies struct {
	// Counts[i] is the probes that took more than LatencyBuckets[i-1] and
	// at most LatencyBuckets[i]; the last, those that took longer than
	// every bucket.
	Counts [len(LatencyBuckets) + 1]uint64
	Sum    time.Duration
}

func (l *Latencies) observe(d time.Duration) {
	i, _ := slices.BinarySearch(LatencyBuckets[:], d)
	l.Counts[i]++
	l.Sum += d
}

// CheckGroupStats is one pool's health check.
type CheckGroupStats struct {
	Pool, Method string
	Targets      int
	// Calls counts Probe calls, Probes the targets they carried, Unknowns
	// the results without a verdict, ProberErrors calls that failed as a
	// whole, Overruns batches skipped because the previous one of their
	// slot was still running.
	Calls, Probes, Unknowns, ProberErrors, Overruns uint64
	LastProberError                                 string
}

// Stats returns the current state and counters.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	st := Stats{Publishes: s.publishes, PublishErrors: s.publishErrors, LastPublishError: s.lastPublishErr}
	for _, b := range s.backends {
		bs := BackendStats{Name: b.name, Healthy: b.healthy(), Raw: b.raw, Suppressed: b.suppressed,
			Penalty: b.decayed(now, s.opt.Dampening), Transitions: b.transitions}
		for m, c := range b.checks {
			bs.Methods = append(bs.Methods, MethodStats{Method: m, Up: c.up, Pass: c.pass, Fail: c.fail,
				Probes: c.probes, Last: c.last, LastAt: c.lastAt, Latencies: c.latencies})
		}
		slices.SortFunc(bs.Methods, func(a, b MethodStats) int { return cmp.Compare(a.Method, b.Method) })
		st.Backends = append(st.Backends, bs)
	}
	slices.SortFunc(st.Backends, func(a, b BackendStats) int { return cmp.Compare(a.Name, b.Name) })
	for _, g := range s.groups {
		n := 0
		for _, sl := range g.slots {
			n += len(sl.targets)
		}
		st.Checks = append(st.Checks, CheckGroupStats{Pool: g.pool, Method: g.hc.Method, Targets: n,
			Calls: g.calls, Probes: g.probes, Unknowns: g.unknowns, ProberErrors: g.proberErrors, Overruns: g.overruns,
			LastProberError: g.lastProberErr})
	}
	return st
}
