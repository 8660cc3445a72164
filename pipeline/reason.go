package pipeline

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Reason names why a packet was dropped. Elements register their reasons at
// init and set Packet.Reason before they return Drop, or a drop port that
// leads to a Discard; the engine counts every drop per element and reason,
// so every drop in xlb has a name and a counter (as in VPP's error
// counters).
type Reason uint16

// MaxReasons bounds the number of distinct reasons so that counters can be
// fixed-size arrays indexed by Reason.
const MaxReasons = 256

// ReasonNone is the zero Reason: a packet dropped without one is counted
// under "unspecified", which is itself a bug to fix in the element.
const ReasonNone Reason = 0

var reasons = struct {
	sync.Mutex
	names  []string
	byName map[string]Reason
}{names: []string{"unspecified"}, byName: map[string]Reason{"unspecified": 0}}

// NewReason registers a drop reason named "<element family>.<what>", for
// example "parse.truncated". It panics on a duplicate name or when more than
// MaxReasons are registered: both are programming errors found at init.
func NewReason(name string) Reason {
	reasons.Lock()
	defer reasons.Unlock()
	if _, dup := reasons.byName[name]; dup {
		panic(fmt.Sprintf("pipeline: drop reason %q registered twice", name))
	}
	if len(reasons.names) == MaxReasons {
		panic(fmt.Sprintf("pipeline: too many drop reasons registering %q (max %d)", name, MaxReasons))
	}
	r := Reason(len(reasons.names))
	reasons.names = append(reasons.names, name)
	reasons.byName[name] = r
	return r
}

// String returns the reason's registered name.
func (r Reason) String() string {
	reasons.Lock()
	defer reasons.Unlock()
	if int(r) < len(reasons.names) {
		return reasons.names[r]
	}
	return fmt.Sprintf("reason(%d)", uint16(r))
}

// Reasons returns every registered reason name, indexed by Reason.
func Reasons() []string {
	reasons.Lock()
	defer reasons.Unlock()
	return append([]string(nil), reasons.names...)
}

// DropCounter is one element instance's drop counts in one worker, by
// reason. The engine keeps one per element: it counts there what Push
// returns Drop for, and reports it in ElementStats.
type DropCounter struct {
	n    [MaxReasons]atomic.Uint64
	late atomic.Uint64 // of n, packets that Push had returned Consumed for
}

// Add counts n packets dropped for reason r after the element's Push
// returned Consumed for them: queued for transmission and then refused by
// a full ring, say. Call it once the Push calls have returned (EndBatch is
// the place, once per batch), from the worker's goroutine. The engine then
// reports them as dropped and no longer as consumed.
func (d *DropCounter) Add(r Reason, n uint64) {
	if n == 0 {
		return
	}
	d.n[bounded(r)].Add(n)
	d.late.Add(n)
}

// Drop does what the engine does when Push returns Drop for p: it counts p
// under p.Reason and recycles it. It is for programs that drive elements
// without a graph; the engine itself counts a batch's drops locally and
// publishes them once.
func (d *DropCounter) Drop(p *Packet) {
	d.n[bounded(p.Reason)].Add(1)
	p.Recycle()
}

// Count returns how many packets were dropped for reason r, for tests and
// tools.
func (d *DropCounter) Count(r Reason) uint64 { return d.n[bounded(r)].Load() }

// bounded maps a Reason out of range, which NewReason never returns, to
// ReasonNone rather than past the counters.
func bounded(r Reason) Reason {
	if int(r) >= MaxReasons {
		return ReasonNone
	}
	return r
}
