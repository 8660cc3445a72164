// Package maglev holds MaglevSelect, the element that picks a backend for
// the first packet of a flow by looking its hash up in the VIP's Maglev
// table (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4). The tables are built by the control
// plane with control/maglev and read here through the snapshot of the
// batch; this package only looks them up.
package maglev

import (
	"sync/atomic"

	table "github.com/xlbproject/xlb/control/maglev"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

var (
	// reasonNoVIP: the destination (address, protocol, port) is no VIP of
	// the current snapshot, e.g. a VIP removed while its packets were in
	// flight.
	reasonNoVIP = pipeline.NewReason("maglev.novip")
	// reasonNoBackend: the VIP has no real that may take new flows (every
	// one draining or down, or its pool is empty).
	reasonNoBackend = pipeline.NewReason("maglev.nobackend")
)

// Output ports.
const (
	portOut       = 0
	portNoBackend = 1
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "MaglevSelect",
		Doc:     "Selects a backend for a new flow by looking its hash up in the VIP's Maglev table.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "nobackend"},
		New:     func() pipeline.Element { return &Select{} },
	})
}

// Select is the MaglevSelect element. For each packet (valid after
// Parse5Tuple) it finds the VIP of the destination, picks the real in slot
// Slot(p.Hash, M) of the VIP's table and writes p.VIP, p.Backend and
// p.Epoch. It has no configuration.
type Select struct {
	view *snapshot.View
	// store is for SelectFlow, which runs on other goroutines than the
	// worker and so may not read view.
	store *snapshot.Store
	// snap is the batch's snapshot, from the worker's view.
	snap *snapshot.Snapshot

	batchSelected uint64 // this batch's selections, published in EndBatch
	selected      atomic.Uint64
}

// Provision gets the worker's view of the control plane's snapshots.
func (e *Select) Provision(ctx *pipeline.Context) error {
	v, err := snapshot.ViewFromContext(ctx)
	if err != nil {
		return err
	}
	e.view = v
	e.store, _ = snapshot.FromContext(ctx)
	return nil
}

// StartBatch takes the batch's snapshot, the one every element of the
// batch reads.
func (e *Select) StartBatch(int64) { e.snap = e.view.Snapshot() }

// Push selects the packet's backend.
func (e *Select) Push(_ int, p *pipeline.Packet) int {
	s := e.snap
	vip, ok := s.LookupVIP(&p.Flow)
	if !ok {
		p.Reason = reasonNoVIP
		return portNoBackend
	}
	v := &s.VIPs[vip]
	if len(v.Table) == 0 {
		p.VIP = vip
		p.Reason = reasonNoBackend
		return portNoBackend
	}
	id := v.Pick(p.Hash)
	p.VIP = vip
	p.Backend = id
	p.Epoch = s.Reals.At(id).Epoch
	e.batchSelected++
	return portOut
}

// SelectFlow answers what Push would pick for a packet of f with flow hash
// hash under the latest published snapshot, by running Push itself on a
// packet of the flow in a Select of its own: the answer cannot drift from
// what packets get, and Push pays nothing for it.
func (e *Select) SelectFlow(f *pipeline.Flow, hash uint64) pipeline.FlowSelection {
	s := e.store.Load()
	p := pipeline.Packet{Flow: *f, Hash: hash}
	scratch := Select{snap: s}
	port := scratch.Push(0, &p)
	if p.Reason == reasonNoVIP {
		return pipeline.FlowSelection{Reason: p.Reason.String()}
	}
	v := &s.VIPs[p.VIP]
	sel := pipeline.FlowSelection{VIP: v.Name, TableSize: len(v.Table)}
	if port != portOut {
		sel.Reason = p.Reason.String()
		return sel
	}
	// The slot Pick read (VIP.Pick is Table[maglev.Slot(hash, M)]).
	sel.Backend, sel.Slot = s.Reals.At(p.Backend).Backend, int(table.Slot(hash, len(v.Table)))
	return sel
}

// EndBatch publishes the batch's counter and drops the snapshot reference,
// so an idle worker does not pin an old snapshot.
func (e *Select) EndBatch() {
	if e.batchSelected > 0 {
		e.selected.Add(e.batchSelected)
		e.batchSelected = 0
	}
	e.snap = nil
}

// Stats reports the number of backends selected.
func (e *Select) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_maglev_selections_total",
		Help: "New flows assigned a backend by MaglevSelect.", Value: e.selected.Load()})
}

// Cleanup releases the view.
func (e *Select) Cleanup() error {
	e.view, e.snap = nil, nil
	return nil
}

var (
	_ pipeline.Pusher        = (*Select)(nil)
	_ pipeline.FlowSelector  = (*Select)(nil)
	_ pipeline.Provisioner   = (*Select)(nil)
	_ pipeline.BatchStarter  = (*Select)(nil)
	_ pipeline.BatchEnder    = (*Select)(nil)
	_ pipeline.StatsReporter = (*Select)(nil)
	_ pipeline.Cleaner       = (*Select)(nil)
)
