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
// worker does not hold (another worker's or node's) is a miss for no VIP,
// which ConnTrack hands NAT's stateless translation (stateless.go): from
// its source endpoint alone, unless that endpoint is ambiguous; what that
// does not know ConnTrack drops as conntrack.reply_unknown: it never
// leaves untranslated. docs/modes.md says why the graph is so and what a
// cluster needs.
//
// Checksums are updated incrementally (RFC 1624): the IPv4 header's, and
// TCP's, UDP's and ICMPv6's, whose pseudo-header holds the addresses.
// Like LVS, and unlike GREEncap, NAT keeps the TTL.
package nat

import (
	"net/netip"

	"github.com/xlbproject/xlb/control/snapshot"
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
	protoSCTP   = 132
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

	translator
	stateless statelessState
}

// Validate checks the port mapping and the unused addresses.
func (e *NAT) Validate() error {
	if err := validatePorts(e.Ports, e.ConnTrack, "NAT"); err != nil {
		return err
	}
	for _, a := range []struct{ attr, v string }{{"source4", e.Source4}, {"source6", e.Source6}} {
		if _, err := netip.ParseAddr(a.v); a.v != "" && err != nil {
			return &pipeline.AttrError{Attr: a.attr, Msg: "must be an IP address (it is unused by NAT)"}
		}
	}
	return nil
}

// Provision finds the worker's ConnTrack, which must be provisioned before
// (declared before NAT), and worker 0 the interface's reply steering, and
// gives the ConnTrack its stateless reply translation. Several workers
// are refused while an endpoint of the snapshot is ambiguous: its replies
// on another worker than their flow's would be dropped.
func (e *NAT) Provision(ctx *pipeline.Context) error {
	if err := e.Validate(); err != nil {
		return err
	}
	e.multi, e.adopted = true, e.adoptReplies
	if err := e.provision(ctx, "NAT", "xlb_nat", e.Ports, e.ConnTrack, e.Interface); err != nil {
		return err
	}
	if err := e.ambiguity(); err != nil {
		return err
	}
	slot := ctx.Local(pipeline.ReplyTrackerKey{Name: e.ConnTrack}, func() any { return &pipeline.ReplyTrackerSlot{} }).(*pipeline.ReplyTrackerSlot)
	slot.Stateless = e
	return nil
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
		e.count(0, len(d))
		return portOut
	}
	var l4p []byte
	if ports {
		l4p = l4
	}
	diff, _ := rewrite(ip, v4, aoff, addr, l4p, poff, port)
	// A later fragment's transport checksum is in the first fragment,
	// which the addresses' and ports' difference was applied to.
	if f.Flags&pipeline.FlowLaterFragment == 0 {
		fixTransport(l4, f.Proto, v4, diff)
	}
	dir := 1
	if !reply {
		dir = 0
		if f.Flags&pipeline.FlowLaterFragment == 0 {
			rf := e.replyFlow(f, r, port)
			e.ct.TrackReply(p, rf, e.key.Hash(rf))
		}
	}
	e.count(dir, len(d))
	return portOut
}

// icmpError translates an ICMP error about a flow (RFC 5508 §4.2): the
// outer address as the flow's packets are (the destination to the real's
// on the way to a backend, the source to the VIP's on a reply), and the
// quoted packet, which went the other way, likewise (its source, or its
// destination, and that port). It reports false, the packet unchanged,
// when translateICMPError cannot read the quote.
func (e *NAT) icmpError(p *pipeline.Packet, addr []byte, port uint16, reply bool) bool {
	if reply {
		return translateICMPError(p, addr, nil, nil, addr, 0, port)
	}
	return translateICMPError(p, nil, addr, addr, nil, port, 0)
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

var (
	_ pipeline.Pusher        = (*NAT)(nil)
	_ pipeline.Prefetcher    = (*NAT)(nil)
	_ pipeline.Validator     = (*NAT)(nil)
	_ pipeline.Provisioner   = (*NAT)(nil)
	_ pipeline.Cleaner       = (*NAT)(nil)
	_ pipeline.BatchStarter  = (*NAT)(nil)
	_ pipeline.BatchEnder    = (*NAT)(nil)
	_ pipeline.StatsReporter = (*NAT)(nil)
	_ snapshot.Checker       = (*NAT)(nil)
)
