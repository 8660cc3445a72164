// Package nat implements NAT, the forwarding of LVS's network address
// translation (LVS/NAT, "VS/NAT" in Zhang's "Linux Virtual Server for
// Scalable Network Services", Ottawa Linux Symposium 2000): a client's
// packet reaches its backend with its destination VIP:port rewritten to the
// backend's address and port, and the backend, whose route back to the
// client goes through the balancer, answers from its own address; the
// balancer rewrites the reply's source back to VIP:port. The backend needs
// no VIP, no tunnel and no configuration but that route, and any OS will
// do; the price is that replies, usually most of the bytes, cross the
// balancer too.
//
// NAT takes GREEncap's place in the default graph by its type word: the
// same ports (icmp stays empty) and the same attributes (source4 and
// source6 are accepted and unused; interface is the one replies come back
// on). Both directions enter by its one input, from ct.hit: ConnTrack holds
// each flow's reverse, keyed on the reply's 5-tuple, which NAT records
// (pipeline.ReplyTracker) as it sends the flow's packets, so that a reply
// is a hit like its flow's packets, marked FlowReply. A reply of a flow the
// node does not hold is a miss for no VIP, which ConnTrack drops as
// conntrack.reply_unknown: it never leaves untranslated. docs/modes.md
// says why the graph is so and what a cluster needs.
//
// Checksums are updated incrementally (RFC 1624): the IPv4 header's, and
// TCP's, UDP's and ICMPv6's, whose pseudo-header holds the addresses.
// Like LVS, and unlike GREEncap, NAT keeps the TTL.
package nat

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/internal/csum"
	"github.com/xlbproject/xlb/elements/internal/flowhash"
	"github.com/xlbproject/xlb/pipeline"
)

// Output ports: GREEncap's, so that one replaces the other in a graph.
const (
	portOut = 0
	portBad = 1
)

const (
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

var (
	reasonNoBackend = pipeline.NewReason("nat.nobackend")
	// The real is of the other IP family than the VIP: NAT translates
	// addresses, not families (that would be NAT64).
	reasonFamily = pipeline.NewReason("nat.family")
	// An ICMP error about a flow whose quoted transport header is after
	// IPv6 extension headers: NAT does not walk them.
	reasonICMPError = pipeline.NewReason("nat.icmp_error")
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "NAT",
		Doc:     "Rewrites each packet's VIP:port to its backend's address and port, and the backend's replies back to VIP:port (LVS NAT); replies are recognised by ConnTrack.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "bad", "icmp"},
		New:     func() pipeline.Element { return &NAT{ConnTrack: "ct"} },
	})
}

// NAT is the element. The exported fields are its configuration.
type NAT struct {
	Ports     map[string]int `hcl:"ports,optional" doc:"port mapping: the port a backend, by name, serves its VIPs' TCP and UDP ports on; a backend not named keeps the port the client sent to"`
	ConnTrack string         `hcl:"conntrack,optional" doc:"the ConnTrack before NAT, declared before it, whose table holds the flows' replies"`
	Interface string         `hcl:"interface,optional" doc:"the interface the backends' replies come back on (that of an RxXDP): it hands the graph the packets from the backends' services to addresses not the node's own; without it, replies reach the graph only if something else sends them"`
	Source4   string         `hcl:"source4,optional" doc:"unused (no source is rewritten); accepted so that a GREEncap block becomes a NAT block by its type word"`
	Source6   string         `hcl:"source6,optional" doc:"unused, as source4"`

	view  *snapshot.View
	ct    pipeline.ReplyTracker
	steer pipeline.ReplySteering // worker 0's, nil without interface
	name  string
	log   *slog.Logger

	// Owned by the worker goroutine.
	snap   *snapshot.Snapshot
	key    flowhash.Key
	ports  []uint16 // by real ID: the backend's port, 0 to keep the VIP's
	warned string
	local  [2]counts // forward, reply
	// reply is the reply flow handed to TrackReply: an interface call's
	// argument would escape, and allocate, if it were on the stack.
	reply pipeline.Flow
	// hashes are a batch's reply hashes, for Prefetch.
	hashes [pipeline.MaxBatch]uint64

	pub [2]struct{ pkts, bytes atomic.Uint64 }
}

type counts struct{ pkts, bytes uint64 }

// Validate checks the port mapping and the unused addresses.
func (e *NAT) Validate() error {
	for b, p := range e.Ports {
		if p < 1 || p > 65535 {
			return &pipeline.AttrError{Attr: "ports", Msg: fmt.Sprintf("must give backend %q a port from 1 to 65535, not %d", b, p)}
		}
	}
	if e.ConnTrack == "" {
		return &pipeline.AttrError{Attr: "conntrack", Msg: "must name the ConnTrack element before NAT"}
	}
	for _, a := range []struct{ attr, v string }{{"source4", e.Source4}, {"source6", e.Source6}} {
		if _, err := netip.ParseAddr(a.v); a.v != "" && err != nil {
			return &pipeline.AttrError{Attr: a.attr, Msg: "must be an IP address (it is unused by NAT)"}
		}
	}
	return nil
}

// Provision finds the worker's ConnTrack, which must be provisioned before
// (declared before NAT), and worker 0 the interface's reply steering.
func (e *NAT) Provision(ctx *pipeline.Context) error {
	if err := e.Validate(); err != nil {
		return err
	}
	// A reply is received on the RX queue the NIC's hash of its own
	// 5-tuple picks, not its flow's, and each worker's ConnTrack is its
	// own: with several workers most replies would miss their flow's
	// entry and be dropped. docs/modes.md says what would lift this.
	if ctx.Workers > 1 {
		return fmt.Errorf("NAT runs with one worker (this graph has %d): a reply arrives on the RX queue of its own hash, whose worker's ConnTrack does not hold its flow; set workers = 1 (and the interface's combined queues to 1, ethtool -L)", ctx.Workers)
	}
	v, err := snapshot.ViewFromContext(ctx)
	if err != nil {
		return err
	}
	e.view, e.name = v, ctx.Name
	slot := ctx.Local(pipeline.ReplyTrackerKey{Name: e.ConnTrack}, func() any { return &pipeline.ReplyTrackerSlot{} }).(*pipeline.ReplyTrackerSlot)
	if slot.Tracker == nil {
		return &pipeline.AttrError{Attr: "conntrack", Msg: fmt.Sprintf("names no ConnTrack declared before this element (%q): NAT records each flow's reply in its table; declare the ConnTrack first", e.ConnTrack)}
	}
	e.ct = slot.Tracker
	e.ct.ExpectReplies()
	if ctx.Worker == 0 {
		e.log = ctx.Logger
		if e.Interface != "" {
			st, _ := ctx.Shared(pipeline.ReplySteerKey{Interface: e.Interface}, func() any { return nil }).(pipeline.ReplySteering)
			if st == nil {
				return &pipeline.AttrError{Attr: "interface", Msg: fmt.Sprintf("has no RxXDP (%s): NAT has the interface's XDP program hand the graph the backends' replies; declare an RxXDP on it", e.Interface)}
			}
			e.steer = st
		}
	}
	if st, err := snapshot.FromContext(ctx); err == nil {
		if s := st.Load(); s != nil {
			e.adopt(s)
		}
	}
	return nil
}

// Cleanup withdraws the steered endpoints; it works after a partial
// Provision.
func (e *NAT) Cleanup() error {
	if e.steer != nil {
		e.steer.SteerReplies(e.name, nil)
		e.steer = nil
	}
	return nil
}

// StartBatch takes the batch's snapshot and, when it is a new one, adopts
// it.
func (e *NAT) StartBatch(int64) {
	e.snap = e.view.Snapshot()
	if e.view.Changed() {
		e.adopt(e.snap)
	}
}

// adopt maps each real ID of s to its backend's port and the hash seed to
// its key; worker 0 also steers the reals' endpoints. It allocates only
// when the snapshot changed, never per packet.
func (e *NAT) adopt(s *snapshot.Snapshot) {
	e.key = flowhash.NewKey(s.HashSeed)
	ports := make([]uint16, s.Reals.Len())
	var eps []pipeline.ServiceEndpoint
	var anyPort []string
	for k := 0; k < s.Reals.Chunks(); k++ {
		c := s.Reals.Chunk(k)
		for j := range c {
			r := &c[j]
			if r.Epoch == 0 {
				continue
			}
			ports[r.ID] = uint16(e.Ports[r.Backend])
			if e.steer == nil {
				continue
			}
			v := &s.VIPs[r.VIP]
			protos := []uint8{v.Proto}
			if v.Proto == 0 {
				protos = []uint8{protoTCP, protoUDP}
			}
			vports := v.Ports
			if ports[r.ID] != 0 {
				vports = ports[r.ID : r.ID+1]
			}
			if len(vports) == 0 {
				anyPort = append(anyPort, v.Name)
			}
			for _, pr := range protos {
				for _, p := range vports {
					eps = append(eps, pipeline.ServiceEndpoint{Addr: r.Addr.Unmap(), Port: p, Proto: pr})
				}
			}
		}
	}
	e.ports = ports
	if e.steer == nil {
		return
	}
	e.steer.SteerReplies(e.name, eps)
	slices.Sort(anyPort)
	list := fmt.Sprint(slices.Compact(anyPort))
	if len(anyPort) > 0 && list != e.warned {
		e.log.Error("VIPs of every port: their backends' replies cannot be told from the backends' own traffic, so they are not steered to the graph; give the VIPs ports, or the backends a port in ports", "vips", list)
	}
	e.warned = list
}

// EndBatch publishes the batch's counters and lets go of its snapshot.
func (e *NAT) EndBatch() {
	for d := range e.local {
		if l := &e.local[d]; l.pkts != 0 {
			e.pub[d].pkts.Add(l.pkts)
			e.pub[d].bytes.Add(l.bytes)
			*l = counts{}
		}
	}
	e.snap = nil
}

// Stats reports the packets translated, by direction. Drops are counted
// where they are discarded, by reason.
func (e *NAT) Stats(emit func(pipeline.Metric)) {
	for d, dir := range [2]string{"forward", "reply"} {
		l := []pipeline.Label{{Name: "direction", Value: dir}}
		emit(pipeline.Metric{Name: "xlb_nat_packets_total", Help: "Packets translated: to a backend (forward) or back to the client (reply).", Labels: l, Value: e.pub[d].pkts.Load()})
		emit(pipeline.Metric{Name: "xlb_nat_bytes_total", Help: "Bytes of frames translated, by direction.", Labels: l, Value: e.pub[d].bytes.Load()})
	}
}

// Push translates p: a packet of a flow to its real's address and port, a
// reply (FlowReply) from them back to VIP:port. Input: a frame Parse5Tuple
// parsed and ConnTrack found (p.Backend/p.Epoch naming a real, p.VIPPort
// for a reply). p.Flow stays the flow as parsed. On bad, the packet is
// unchanged but for p.Reason.
func (e *NAT) Push(_ int, p *pipeline.Packet) int {
	r := e.snap.Real(p.Backend, p.Epoch)
	if r == nil {
		p.Reason = reasonNoBackend
		return portBad
	}
	f := &p.Flow
	if r.Family != f.Family {
		p.Reason = reasonFamily
		return portBad
	}
	d := p.Data()
	ip, l4 := d[p.L3:], d[p.L4:]
	v4 := f.Family == 4
	// Ports are rewritten for TCP and UDP only; a later fragment has no
	// transport header, only its datagram's ports in p.Flow.
	ports := (f.Proto == protoTCP || f.Proto == protoUDP) && f.Flags&pipeline.FlowLaterFragment == 0
	reply := f.Flags&pipeline.FlowReply != 0
	var addr []byte // the new address
	var aoff, poff int
	var port uint16
	if reply {
		a := e.snap.VIPs[p.VIP].Addr.As16()
		addr, port = a[:], p.VIPPort
		aoff, poff = 12, 0 // sources
		if !v4 {
			aoff = 8
		}
	} else {
		addr, port = r.Addr16[:], f.DstPort
		if bp := e.ports[p.Backend]; bp != 0 {
			port = bp
		}
		aoff, poff = 16, 2 // destinations
		if !v4 {
			aoff = 24
		}
	}
	if v4 {
		addr = addr[12:]
	}
	// A later fragment of an ICMP error has no ICMP header: only its
	// address changes, below, as any later fragment's.
	if f.Flags&(pipeline.FlowICMPError|pipeline.FlowLaterFragment) == pipeline.FlowICMPError {
		if !e.icmpError(p, addr, port, reply) {
			p.Reason = reasonICMPError
			return portBad
		}
		e.local[0].pkts++
		e.local[0].bytes += uint64(len(d))
		return portOut
	}
	var l4p []byte
	if ports {
		l4p = l4
	}
	diff, _ := rewrite(ip, v4, aoff, addr, l4p, poff, port)
	switch {
	case f.Flags&pipeline.FlowLaterFragment != 0:
		// The transport checksum is in the first fragment, which the
		// addresses' and ports' difference was applied to.
	case f.Proto == protoTCP:
		l4[16], l4[17] = split(csum.Update(join(l4[16:]), diff))
	case f.Proto == protoUDP:
		// An IPv4 UDP checksum of 0 means none (RFC 768); a computed 0
		// is sent as its other form, 0xffff.
		if c := join(l4[6:]); c != 0 || !v4 {
			c = csum.Update(c, diff)
			if c == 0 {
				c = 0xffff
			}
			l4[6], l4[7] = split(c)
		}
	case f.Proto == protoICMPv6:
		l4[2], l4[3] = split(csum.Update(join(l4[2:]), diff))
	}
	dir := 1
	if !reply {
		dir = 0
		if f.Flags&pipeline.FlowLaterFragment == 0 {
			rf := e.replyFlow(f, r, port)
			e.ct.TrackReply(p, rf, e.key.Hash(rf))
		}
	}
	e.local[dir].pkts++
	e.local[dir].bytes += uint64(len(d))
	return portOut
}

// rewrite writes addr (4 or 16 bytes, by v4) at ip[aoff:] and, with l4,
// port at l4[poff:], updating the IPv4 header checksum of ip. It returns
// the checksum difference the address and the port make (for a transport
// checksum) and the one the header checksum's change makes (for an ICMP
// checksum over ip, when ip is quoted in an ICMP error).
func rewrite(ip []byte, v4 bool, aoff int, addr, l4 []byte, poff int, port uint16) (diff, hdiff uint32) {
	old := ip[aoff : aoff+len(addr)]
	diff = csum.Diff(old, addr)
	copy(old, addr)
	if v4 {
		oc := join(ip[10:])
		nc := csum.Update(oc, diff)
		ip[10], ip[11] = split(nc)
		hdiff = uint32(^oc) + uint32(nc)
	}
	if l4 != nil {
		if op := join(l4[poff:]); op != port {
			l4[poff], l4[poff+1] = split(port)
			diff += uint32(^op) + uint32(port)
		}
	}
	return diff, hdiff
}

// icmpError translates an ICMP error about a flow (RFC 5508 §4.2): the
// outer address as the flow's packets are (the destination to the real's
// on the way to a backend, the source to the VIP's on a reply), and the
// quoted packet, which went the other way, likewise (its source, or its
// destination, and that port), with the quote's IPv4 header checksum, its
// transport checksum when quoted, and the ICMP checksum over all of it.
// It reports false, the packet unchanged, when the quote's transport
// header is after IPv6 extension headers (or the quote is cut short).
func (e *NAT) icmpError(p *pipeline.Packet, addr []byte, port uint16, reply bool) bool {
	f := &p.Flow
	d := p.Data()
	ip, icmp := d[p.L3:], d[p.L4:]
	v4 := f.Family == 4
	// Parse5Tuple checked the quote's IP header; checked again here, as
	// cheap as a comment, so that no input can make NAT read past it.
	if len(icmp) < 8+20 {
		return false
	}
	q := icmp[8:]
	qhl := 40
	if v4 {
		qhl = int(q[0]&0x0f) << 2
	} else if len(q) < qhl || q[6] != f.Proto {
		return false
	}
	if qhl < 20 || len(q) < qhl {
		return false
	}
	// The outer packet goes as the flow's; the quote is one of the other
	// direction: its source (and source port) is what the flow's packets
	// have as destination.
	src, dst := 12, 16
	if !v4 {
		src, dst = 8, 24
	}
	oa, qa, qp := dst, src, 0
	if reply {
		oa, qa, qp = src, dst, 2
	}
	ql4 := q[qhl:]
	ports := f.Flags&pipeline.FlowFragment == 0 && (f.Proto == protoTCP || f.Proto == protoUDP) && len(ql4) >= 4
	if !ports {
		ql4 = nil
	}
	odiff, _ := rewrite(ip, v4, oa, addr, nil, 0, 0)
	qdiff, hdiff := rewrite(q, v4, qa, addr, ql4, qp, port)
	// The quoted transport checksum, when quoted whole.
	cdiff := uint32(0)
	c := -1
	switch {
	case ql4 == nil:
	case f.Proto == protoTCP && len(ql4) >= 18:
		c = 16
	case f.Proto == protoUDP && len(ql4) >= 8 && (!v4 || join(ql4[6:]) != 0):
		c = 6
	}
	if c >= 0 {
		oc := join(ql4[c:])
		nc := csum.Update(oc, qdiff)
		if nc == 0 && f.Proto == protoUDP {
			nc = 0xffff
		}
		ql4[c], ql4[c+1] = split(nc)
		cdiff = uint32(^oc) + uint32(nc)
	}
	total := qdiff + hdiff + cdiff
	if !v4 {
		total += odiff // ICMPv6's pseudo-header
	}
	icmp[2], icmp[3] = split(csum.Update(join(icmp[2:]), total))
	return true
}

// replyFlow is the reply of flow f sent to real r on port (the backend's,
// or for other protocols than TCP and UDP, f's destination port), as
// Parse5Tuple will key it, in e.reply.
func (e *NAT) replyFlow(f *pipeline.Flow, r *snapshot.Real, port uint16) *pipeline.Flow {
	rf := &e.reply
	*rf = pipeline.Flow{Src: r.Addr16, Dst: f.Src, SrcPort: port, DstPort: f.SrcPort, Proto: f.Proto, Family: f.Family}
	if f.Proto != protoTCP && f.Proto != protoUDP {
		// Echo identifiers, kept in both ports, and no ports for the
		// rest: as Parse5Tuple keys the replies.
		rf.SrcPort = f.DstPort
	}
	return rf
}

// Prefetch has ConnTrack touch the reply entries the batch's packets to
// backends will record, so that their cache misses overlap (see
// ConnTrack's Prefetch): a reply entry is in another bucket than its
// flow's, as cold in a large table.
func (e *NAT) Prefetch(_ int, pkts []*pipeline.Packet) {
	n := 0
	for _, p := range pkts {
		f := &p.Flow
		if f.Flags&(pipeline.FlowReply|pipeline.FlowLaterFragment|pipeline.FlowICMPError) != 0 {
			continue
		}
		r := e.snap.Real(p.Backend, p.Epoch)
		if r == nil || int(p.Backend) >= len(e.ports) {
			continue
		}
		port := f.DstPort
		if bp := e.ports[p.Backend]; bp != 0 && (f.Proto == protoTCP || f.Proto == protoUDP) {
			port = bp
		}
		e.hashes[n] = e.key.Hash(e.replyFlow(f, r, port))
		n++
	}
	e.ct.PrefetchReplies(e.hashes[:n])
}

func join(b []byte) uint16        { return uint16(b[0])<<8 | uint16(b[1]) }
func split(v uint16) (byte, byte) { return byte(v >> 8), byte(v) }

var (
	_ pipeline.Pusher        = (*NAT)(nil)
	_ pipeline.Prefetcher    = (*NAT)(nil)
	_ pipeline.Validator     = (*NAT)(nil)
	_ pipeline.Provisioner   = (*NAT)(nil)
	_ pipeline.Cleaner       = (*NAT)(nil)
	_ pipeline.BatchStarter  = (*NAT)(nil)
	_ pipeline.BatchEnder    = (*NAT)(nil)
	_ pipeline.StatsReporter = (*NAT)(nil)
)
