// Package snat holds SNATReturn, the element that brings the replies of
// backends' own outbound connections back to them (SNAT as Ananta does it:
// Patel et al., "Ananta: Cloud Scale Load Balancing", SIGCOMM 2013,
// section 3.5). A backend opens connections with the VIP as source address
// and a source port from its range (the vip's snat_ports); the replies
// come to the VIP, reach any node by ECMP, and go to the backend that owns
// the destination port's range, through the graph's encapsulation as a
// load-balanced packet does. The ranges are in the snapshot, computed by
// the control plane the same on every node (control/snat.go), so no node
// keeps state for these connections, and no ConnTrack entry or Maglev
// lookup is spent on them. Ananta's departure: its muxes learn port ranges
// from a host agent on demand; here they are static, from configuration.
package snat

import (
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// Output ports.
const (
	portOut   = 0 // not a SNAT reply: on to ConnTrack
	portReply = 1 // a SNAT reply, p.VIP/Backend/Epoch set: to the encapsulation
	portBad   = 2
)

// reasonNoRange: the packet is to a VIP's address with SNAT, on a port of
// no VIP and of no backend's range: a reply to a connection no backend can
// have opened (a range of a backend removed, a port past the last range),
// or a scan.
var reasonNoRange = pipeline.NewReason("snat.norange")

// logEvery bounds how often the element logs snat.norange drops.
const logEvery = 10e9 // ns

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "SNATReturn",
		Doc:     "Sends replies to backends' outbound connections (source address the VIP, source port in the backend's snat_ports range) to that backend, without ConnTrack or Maglev; other packets go on unchanged.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "reply", "bad"},
		New:     func() pipeline.Element { return &Return{} },
	})
}

// Return is the SNATReturn element. It has no configuration: the ranges
// are the vip blocks' snat_ports.
type Return struct {
	view *snapshot.View
	snap *snapshot.Snapshot
	log  *slog.Logger // worker 0's only: one line per graph, not per worker

	now int64
	// The batch's replies, and its snat.norange drops with the last one's
	// VIP and port, for the log line.
	replies, norange uint64
	lastVIP          uint32
	lastPort         uint16
	// dropped counts the drops since the last line, logged is when it was
	// written.
	dropped uint64
	logged  int64
	pub     atomic.Uint64
}

// Provision gets the worker's view of the control plane's snapshots.
func (e *Return) Provision(ctx *pipeline.Context) error {
	v, err := snapshot.ViewFromContext(ctx)
	if err != nil {
		return err
	}
	e.view = v
	if ctx.Worker == 0 {
		e.log = ctx.Logger
	}
	return nil
}

// StartBatch takes the batch's snapshot.
func (e *Return) StartBatch(now int64) { e.snap, e.now = e.view.Snapshot(), now }

// Push sends a packet to a port of a backend's SNAT range on reply, with
// p.VIP, p.Backend and p.Epoch naming the backend; a packet to another
// port of that address that no VIP serves is dropped (snat.norange);
// every other packet leaves by out unchanged.
func (e *Return) Push(_ int, p *pipeline.Packet) int {
	s := e.snap
	vip, ok := s.SNATVIP(&p.Flow.Dst)
	if !ok {
		return portOut
	}
	f := &p.Flow
	v := &s.VIPs[vip]
	// Ports mean something for TCP and UDP only (LookupVIP's rule), and a
	// flow keyed without them (an ICMP error quoting a later fragment)
	// has none to look up.
	if (f.Proto != 6 && f.Proto != 17) || (v.Proto != 0 && v.Proto != f.Proto) || f.Flags&pipeline.FlowFragment != 0 {
		return portOut
	}
	if id := v.SNAT.Owner(f.DstPort); id != snapshot.NoReal {
		p.VIP, p.Backend, p.Epoch = vip, id, s.Reals.At(id).Epoch
		e.replies++
		return portReply
	}
	// Validate saw to it that no VIP on the address matches every port,
	// so its VIPs' ports are all it serves: a binary search of a few
	// ports, not LookupVIP's map look-ups, on the path of load-balanced
	// packets.
	if _, ok := slices.BinarySearch(v.SNAT.Service, f.DstPort); ok {
		return portOut
	}
	p.VIP = vip
	p.Reason = reasonNoRange
	e.norange++
	e.lastVIP, e.lastPort = vip, f.DstPort
	return portBad
}

// EndBatch publishes the batch's counter, logs snat.norange drops at most
// every logEvery, and lets go of the snapshot.
func (e *Return) EndBatch() {
	if e.replies > 0 {
		e.pub.Add(e.replies)
		e.replies = 0
	}
	if e.norange > 0 {
		e.dropped += e.norange
		e.norange = 0
		if e.log != nil && (e.logged == 0 || e.now-e.logged >= logEvery) {
			e.logged = e.now
			e.log.Warn("packets to ports of no backend's SNAT range are dropped as snat.norange: replies to connections no backend opened from its range (a backend removed, or a range moved by a change of backends, snat_ports or ports), or a scan",
				"vip", e.snap.VIPs[e.lastVIP].Name, "port", e.lastPort, "dropped", e.dropped)
			e.dropped = 0
		}
	}
	e.snap = nil
}

// Stats reports the replies sent. Drops are counted where they are
// discarded, by reason.
func (e *Return) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_snat_replies_total",
		Help: "Packets to a backend's SNAT range sent to that backend by SNATReturn.", Value: e.pub.Load()})
}

// Cleanup releases the view.
func (e *Return) Cleanup() error {
	e.view, e.snap = nil, nil
	return nil
}

var (
	_ pipeline.Pusher        = (*Return)(nil)
	_ pipeline.Provisioner   = (*Return)(nil)
	_ pipeline.BatchStarter  = (*Return)(nil)
	_ pipeline.BatchEnder    = (*Return)(nil)
	_ pipeline.StatsReporter = (*Return)(nil)
	_ pipeline.Cleaner       = (*Return)(nil)
)
