package parse

import (
	"time"

	"github.com/xlbproject/xlb/pipeline"
)

// A later fragment that arrives before its first is held, by copy, for a
// short while, and sent on when its first fragment comes. Behind
// FragRedirect that is the common order for a datagram that a router
// split (its first fragment to the flow's node, the later ones to the
// chosen node): the first takes one hop more and is overtaken. Holding
// the receive frame itself would pin it across batches, and a flood of
// orphans would drain the AF_XDP fill ring; a copy into a fixed number of
// slots of the element's own bounds what orphans can take, to the
// slots, and costs them two copies. A fragment held longer than
// frag_hold_time, evicted by a newer orphan when every slot is taken, or
// still held when the graph stops is dropped as
// parse.fragment_without_first, counted late (pipeline.DropCounter) since
// Push returned Consumed for it.

// Limits and defaults of the hold.
const (
	defaultFragHold     = 64
	maxFragHold         = 4096
	defaultFragHoldTime = "100ms"
	maxFragHoldTime     = time.Second
	// holdSlotSize bounds a held frame: a 1500-byte MTU's Ethernet frame
	// with two VLAN tags fits; a longer later fragment is not held.
	holdSlotSize = 2048
)

// reasonHoldNoFrame: a held later fragment whose first came, but the
// batch's source had no spare frame to send it in.
var reasonHoldNoFrame = pipeline.NewReason("parse.fragment_hold_no_frame")

// heldFrag is one held later fragment.
type heldFrag struct {
	key    pipeline.Flow // the datagram's, as fragment.key
	at     int64         // the batch clock when it was held
	n      int           // its length, from the slot's start
	l3, l4 uint16
	used   bool
}

// holdCounters is one batch's worth of counts, published in EndBatch.
type holdCounters struct {
	held, released, dropped, noFrame uint64
}

// fragHold is the per-worker hold: slots of holdSlotSize bytes, allocated
// in setup; empty when frag_hold is 0 or the element has no Emitter.
type fragHold struct {
	slots []heldFrag
	buf   []byte
	n     int   // slots in use
	time  int64 // frag_hold_time, ns
	local holdCounters
}

func (h *fragHold) init(slots int, d time.Duration) {
	h.slots = make([]heldFrag, slots)
	h.buf = make([]byte, slots*holdSlotSize)
	h.time = int64(d)
}

func (h *fragHold) slot(i int) []byte { return h.buf[i*holdSlotSize : (i+1)*holdSlotSize] }

// put copies p, a later fragment of datagram key without its first, into
// a free slot, or the oldest one's (which is dropped), and reports
// whether it did: not when there are no slots or p does not fit one.
func (h *fragHold) put(key *pipeline.Flow, p *pipeline.Packet, now int64) bool {
	d := p.Data()
	if len(h.slots) == 0 || len(d) > holdSlotSize {
		return false
	}
	v := -1
	for i := range h.slots {
		if !h.slots[i].used {
			v = i
			break
		}
		if v < 0 || h.slots[i].at < h.slots[v].at {
			v = i
		}
	}
	s := &h.slots[v]
	if s.used {
		h.local.dropped++
	} else {
		h.n++
	}
	*s = heldFrag{key: *key, at: now, n: copy(h.slot(v), d), l3: p.L3, l4: p.L4, used: true}
	h.local.held++
	return true
}

// expire drops the fragments held longer than the hold time at now, or
// every one with all set.
func (h *fragHold) expire(now int64, all bool) {
	for i := range h.slots {
		if s := &h.slots[i]; s.used && (all || now-s.at > h.time) {
			s.used = false
			h.n--
			h.local.dropped++
		}
	}
}

// release sends on every fragment held for datagram key, whose first
// fragment Parse5Tuple just recorded, with the flow and hash of its table
// entry, in spares emitted on out.
func (e *Parse5Tuple) release(key *pipeline.Flow) {
	h := &e.hold
	for i := range h.slots {
		s := &h.slots[i]
		if !s.used || s.key != *key {
			continue
		}
		s.used = false
		h.n--
		ent := e.frags.follow(key)
		sp := e.emit.Spare()
		if ent == nil || sp == nil || sp.Tailroom() < s.n {
			if sp != nil {
				sp.Recycle()
			}
			h.local.noFrame++
			continue
		}
		copy(sp.Extend(s.n), h.slot(i)[:s.n])
		sp.L3, sp.L4 = s.l3, s.l4
		sp.Flow, sp.Hash = ent.flow, ent.hash
		sp.Flow.Flags |= pipeline.FlowLaterFragment
		if !e.emit.Emit(portOut, sp) {
			sp.Recycle()
			h.local.noFrame++
			continue
		}
		h.local.released++
		e.counts[(sp.Flow.Family>>1)&1][classFragment]++
	}
}

// publishHold counts the batch's late drops and publishes its counts.
func (e *Parse5Tuple) publishHold() {
	l := &e.hold.local
	if *l == (holdCounters{}) {
		return
	}
	e.drops.Add(reasonFragNoFirst, l.dropped)
	e.drops.Add(reasonHoldNoFrame, l.noFrame)
	e.holdPub.held.Add(l.held)
	e.holdPub.released.Add(l.released)
	*l = holdCounters{}
}
