package pipeline

import (
	"fmt"
	"sync"
)

// Reason names why a packet was dropped. Elements register their reasons at
// init and set Packet.Reason before returning a drop port; Discard counts
// packets per reason, so every drop in xlb has a name and a counter (as in
// VPP's error counters).
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
