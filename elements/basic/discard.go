// Package basic holds the small elements every xlb graph uses: Discard, the
// sink that counts dropped packets by reason, and Counter, a pass-through
// packet and byte counter. They are Click's Discard and Counter elements
// (Kohler et al., "The Click modular router", TOCS 2000); Discard keys its
// counts by the packet's drop reason, as VPP's error counters do.
package basic

import (
	"sync/atomic"

	"github.com/xlbproject/xlb/pipeline"
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:   "Discard",
		Doc:    "Drops every packet, counting it by its drop reason.",
		Inputs: []string{"in"},
		New:    func() pipeline.Element { return &Discard{} },
	})
}

// Discard is a sink: it counts each packet under p.Reason and recycles it.
type Discard struct {
	// Per-batch counts, indexed by reason; touched lists the reasons with
	// a non-zero count so that EndBatch publishes only those.
	batch   [pipeline.MaxReasons]uint64
	touched [pipeline.MaxReasons]pipeline.Reason
	nTouch  int

	counts [pipeline.MaxReasons]atomic.Uint64
}

// Push counts and recycles the packet.
func (d *Discard) Push(_ int, p *pipeline.Packet) int {
	r := p.Reason
	if int(r) >= pipeline.MaxReasons {
		r = pipeline.ReasonNone // cannot happen: NewReason bounds reasons
	}
	if d.batch[r] == 0 {
		d.touched[d.nTouch] = r
		d.nTouch++
	}
	d.batch[r]++
	p.Recycle()
	return pipeline.Consumed
}

// EndBatch publishes the batch's counts.
func (d *Discard) EndBatch() {
	for _, r := range d.touched[:d.nTouch] {
		d.counts[r].Add(d.batch[r])
		d.batch[r] = 0
	}
	d.nTouch = 0
}

// Stats reports xlb_drop_packets_total for every reason seen.
func (d *Discard) Stats(emit func(pipeline.Metric)) {
	var names []string
	for r := range d.counts {
		v := d.counts[r].Load()
		if v == 0 {
			continue
		}
		if names == nil {
			names = pipeline.Reasons()
		}
		name := pipeline.Reason(r).String()
		if r < len(names) {
			name = names[r]
		}
		emit(pipeline.Metric{Name: "xlb_drop_packets_total", Help: "Packets dropped, by reason.",
			Labels: []pipeline.Label{{Name: "reason", Value: name}}, Value: v})
	}
}

// Count returns how many packets were dropped with reason r (published
// counts only), for tests and tools.
func (d *Discard) Count(r pipeline.Reason) uint64 {
	if int(r) >= pipeline.MaxReasons {
		return 0
	}
	return d.counts[r].Load()
}

var (
	_ pipeline.Pusher        = (*Discard)(nil)
	_ pipeline.BatchEnder    = (*Discard)(nil)
	_ pipeline.StatsReporter = (*Discard)(nil)
)
