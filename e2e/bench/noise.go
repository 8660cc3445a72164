package bench

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// NoisyShare is the share of a window's time on either of the two CPUs
// beyond which the window is noisy: other tasks (other helpers' builds, a
// kworker storm) and the hypervisor's steal took that much from the
// generator or the program under test. The figures compared with the
// goals are those of the quiet windows.
const NoisyShare = 0.03

// Noise is what ran on the benchmark's two CPUs in a window besides the
// programs under test, the packet path's softirq threads and the harness.
type Noise struct {
	// Others is the on-CPU time of other tasks, by the CPU each last ran
	// on at the window's end (a task that moved between the two is
	// counted on one), on the generator's CPU and the LB's. Tasks on
	// neither CPU are not counted.
	Others [2]time.Duration
	// Steal is each CPU's time taken by the hypervisor (/proc/stat).
	Steal [2]time.Duration
	// Top names the busiest other tasks, "name/pid 12ms" comma-separated.
	Top string
}

// other is a task that is not part of the measurement, in one window.
type other struct {
	name     string
	pid, cpu int
	run      time.Duration
}

// noise sums the others' time on the benchmark's CPUs (gen, lb).
func noise(others []other, cpus [2]int, steal [2]time.Duration) Noise {
	n := Noise{Steal: steal}
	var top []other
	for _, o := range others {
		for i, c := range cpus {
			if o.cpu == c {
				n.Others[i] += o.run
				top = append(top, o)
			}
		}
	}
	slices.SortFunc(top, func(a, b other) int { return cmp.Compare(b.run, a.run) })
	var names []string
	for _, o := range top[:min(len(top), 3)] {
		if o.run >= time.Millisecond {
			names = append(names, fmt.Sprintf("%s/%d %dms", o.name, o.pid, o.run.Milliseconds()))
		}
	}
	n.Top = strings.Join(names, ", ")
	return n
}

// Share is the larger of the two CPUs' shares of window w taken by others
// and steal.
func (n Noise) Share(w time.Duration) float64 {
	if w <= 0 {
		return 0
	}
	return max(float64(n.Others[0]+n.Steal[0]), float64(n.Others[1]+n.Steal[1])) / float64(w)
}

// Noisy says whether others took more than NoisyShare of either CPU in
// the result's window.
func (r Result) Noisy() bool { return r.Noise.Share(r.Window) > NoisyShare }
