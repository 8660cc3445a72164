package pipeline

import (
	"context"
	"iter"
)

// The interfaces below let a program ask a running graph about flows
// without knowing its element types: what hash a flow gets, which backend
// a new flow would get, and what the flow tables hold. Each is found on a
// worker's elements (Instance.Elements), as StatsReporter is, and answered
// by the code the packets run, so that an answer cannot disagree with the
// data path.

// FlowHasher is implemented by the element that computes packets' flow
// hash (Parse5Tuple). FlowHash returns the hash a packet of f would get
// now. It may be called from any goroutine.
type FlowHasher interface {
	FlowHash(f *Flow) uint64
}

// FlowSelection is what a backend selector picks for a new flow of one
// hash now. VIP is empty when the flow is for no VIP; Backend is empty
// when the VIP has no backend that takes new flows. Reason is then the
// drop reason a packet of the flow gets.
type FlowSelection struct {
	VIP       string `json:"vip"`
	Backend   string `json:"backend"`
	Slot      int    `json:"slot"`
	TableSize int    `json:"table_size"`
	Reason    string `json:"reason,omitempty"`
}

// FlowSelector is implemented by elements that pick a backend for a new
// flow (MaglevSelect). SelectFlow answers what Push would pick for a packet
// of f with flow hash hash, against the latest published state. It may be
// called from any goroutine.
type FlowSelector interface {
	SelectFlow(f *Flow, hash uint64) FlowSelection
}

// FlowCount is the live flows of one backend of one VIP.
type FlowCount struct {
	VIP     string `json:"vip"`
	Backend string `json:"backend"`
	Flows   uint64 `json:"flows"`
}

// FlowTableStats is one worker's flow table.
type FlowTableStats struct {
	// Entries is the flows not idle by their timeout; Capacity is how
	// many the table holds.
	Entries  uint64 `json:"entries"`
	Capacity uint64 `json:"capacity"`
	// Flows counts the live flows whose backend may still carry them, by
	// VIP and backend, sorted.
	Flows []FlowCount `json:"flows"`
}

// TrackedFlow is what a flow table holds for one flow. When Held, the
// flow's packets go to Backend whatever a selector would pick now.
type TrackedFlow struct {
	Held    bool   `json:"held"`
	VIP     string `json:"vip,omitempty"`
	Backend string `json:"backend,omitempty"`
	// Ignored says why an entry found is not used: "idle" (past its
	// timeout) or "stale" (its backend is gone, down or moved).
	Ignored string `json:"ignored,omitempty"`
}

// FlowTracker is implemented by flow tables (ConnTrack). The table belongs
// to its worker, so both calls hand the question to the worker, which
// answers at a batch boundary, and wait for the answer until ctx is done:
// an idle worker answers within a source's poll interval, a stopped worker
// never (the caller's ctx bounds the wait). hash is the flow's FlowHash.
type FlowTracker interface {
	FlowTable(ctx context.Context) (FlowTableStats, error)
	TrackedFlow(ctx context.Context, f *Flow, hash uint64) (TrackedFlow, error)
}

// Elements yields the instance's elements by name, in declaration order.
// Only the interfaces above may be called from another goroutine.
func (inst *Instance) Elements() iter.Seq2[string, Element] {
	return func(yield func(string, Element) bool) {
		for _, e := range inst.elems {
			if !yield(e.decl.Name, e.el) {
				return
			}
		}
	}
}
