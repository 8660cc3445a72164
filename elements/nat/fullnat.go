package nat

import (
	"net/netip"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/internal/flowhash"
	"github.com/xlbproject/xlb/pipeline"
)

// FullNAT is two-armed NAT that rewrites the source too (LVS's FULLNAT,
// from Alibaba's patches): a client's packet reaches its backend from an
// address of the node's own source pool and a port allocated for the
// flow, to the backend's address and port; the backend answers that
// address, which is routed to the node, and the node rewrites the reply
// back to VIP:port -> client:port. The backends need no route change, and
// in a cluster each node's pool is its own, so every reply reaches the
// node that holds its translation (docs/modes.md). The client's address
// is lost to the backend.
//
// Ports are allocated per (source address, backend endpoint): the flow's
// hash picks an address of the pool and a sequence of ports, and the
// first (at most maxProbes, over the pool's addresses in turn) whose
// reply 5-tuple no live flow holds is the flow's. ConnTrack
// records it on the flow's entry, so later packets keep it, and the reply
// entry refers back to the flow, whose entry holds the client. Probing
// is bounded, as Linux's NAT port search is, so that a full range costs a
// new flow a bounded number of look-ups: past them the packet is dropped
// as fullnat.ports_exhausted, logged at most every logEvery.
//
// It takes GREEncap's place by its type word, with source_pool added:
// not source4, usually the node's own address, whose health checks'
// replies from the backends' service ports must stay the kernel's.
type FullNAT struct {
	Ports      map[string]int `hcl:"ports,optional" doc:"port mapping: the port a backend, by name, serves its VIPs' TCP and UDP ports on; a backend not named keeps the port the client sent to"`
	ConnTrack  string         `hcl:"conntrack,optional" doc:"the ConnTrack before FullNAT, declared before it, whose table holds the flows' sources and replies"`
	Interface  string         `hcl:"interface,optional" doc:"the interface the backends' replies come back on (that of an RxXDP): it hands the graph the packets from the backends' services to the source pool"`
	SourcePool []string       `hcl:"source_pool" doc:"the node's source addresses (IPv4 and IPv6, at most 256), routed to this node only and used by nothing else (not the node's own address): the backends see connections from them"`
	Source4    string         `hcl:"source4,optional" doc:"unused (see source_pool); accepted so that a GREEncap block becomes a FullNAT block by its type word and source_pool"`
	Source6    string         `hcl:"source6,optional" doc:"unused, as source4"`

	translator
	pool4, pool6 [][16]byte
	addrs        []netip.Addr

	// Owned by the worker goroutine: the exhaustion log's state.
	now, logged int64
	exhausted   uint64
}

// Source ports FullNAT allocates, and the look-ups a new flow may take.
const (
	firstSourcePort = 1024
	sourcePorts     = 65536 - firstSourcePort
	maxProbes       = 64
	logEvery        = 10e9 // ns
)

var (
	reasonFullNoBackend = pipeline.NewReason("fullnat.nobackend")
	reasonFullFamily    = pipeline.NewReason("fullnat.family")
	// The pool has no address of the packet's family.
	reasonNoSource = pipeline.NewReason("fullnat.nosource")
	// Only TCP and UDP flows are translated, and ICMP errors about them:
	// other protocols have no port to allocate.
	reasonFullProto = pipeline.NewReason("fullnat.proto")
	// ICMP that is not an error about a TCP or UDP flow: echo (no
	// identifier is allocated), other informational messages, errors
	// about those.
	reasonFullICMP = pipeline.NewReason("fullnat.icmp")
	// An ICMP error about a flow that holds no source: one this node
	// does not know (or knows untracked), which nothing can be quoted to.
	reasonICMPUnknown = pipeline.NewReason("fullnat.icmp_unknown")
	// An ICMP error whose quote FullNAT cannot read: its transport
	// header after IPv6 extension headers.
	reasonFullICMPError = pipeline.NewReason("fullnat.icmp_error")
	reasonExhausted     = pipeline.NewReason("fullnat.ports_exhausted")
	// ConnTrack could not store the flow (or its reply entry): its
	// bucket is full of established flows. Sent, its replies would come
	// back to a source no entry holds, so it is dropped instead, and the
	// client retries.
	reasonUntracked = pipeline.NewReason("fullnat.untracked")
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "FullNAT",
		Doc:     "Rewrites each packet's VIP:port to its backend's address and port and its source to an address and port of the node's source pool, and the backend's replies back (LVS FULLNAT); replies are recognised by ConnTrack.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "bad", "icmp"},
		New:     func() pipeline.Element { return &FullNAT{ConnTrack: "ct"} },
	})
}

// CheckSnapshot refuses several workers for a file being checked
// (snapshot.Checker), as Provision does at start: FullNAT runs one.
func (e *FullNAT) CheckSnapshot(_ *snapshot.Snapshot, workers int) error {
	if workers == 1 {
		return nil
	}
	return oneWorker("FullNAT", workers)
}

// Validate checks the port mapping and the source pool.
func (e *FullNAT) Validate() error {
	if err := validatePorts(e.Ports, e.ConnTrack, "FullNAT"); err != nil {
		return err
	}
	for _, a := range []struct{ attr, v string }{{"source4", e.Source4}, {"source6", e.Source6}} {
		if _, err := netip.ParseAddr(a.v); a.v != "" && err != nil {
			return &pipeline.AttrError{Attr: a.attr, Msg: "must be an IP address (it is unused by FullNAT: see source_pool)"}
		}
	}
	addrs, err := sourceAddrs(e.SourcePool)
	if err != nil {
		return err
	}
	// Not source4 by default: it is usually the node's own address,
	// whose replies from the backends' service ports (health checks')
	// must stay the kernel's.
	if len(addrs) == 0 {
		return &pipeline.AttrError{Attr: "source_pool", Msg: "must name the node's source addresses for FullNAT, addresses of this node only and used by nothing else (not the node's own, whose health checks' replies would be taken for the pool's)"}
	}
	e.addrs, e.pool4, e.pool6 = addrs, nil, nil
	for _, a := range addrs {
		if a.Is4() {
			e.pool4 = append(e.pool4, a.As16())
		} else {
			e.pool6 = append(e.pool6, a.As16())
		}
	}
	return nil
}

// Provision finds the ConnTrack and the interface's steering, which it
// also has hand the graph the replies to the pool.
func (e *FullNAT) Provision(ctx *pipeline.Context) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if err := e.provision(ctx, "FullNAT", "xlb_fullnat", e.Ports, e.ConnTrack, e.Interface); err != nil {
		return err
	}
	if e.steer != nil {
		ps, ok := e.steer.(pipeline.PoolSteering)
		if !ok {
			return &pipeline.AttrError{Attr: "interface", Msg: "cannot steer the source pool's replies to the graph"}
		}
		ps.SteerPool(e.name, e.addrs)
		e.pooled = true
	}
	return nil
}

// StartBatch notes the batch's clock, for the exhaustion log.
func (e *FullNAT) StartBatch(now int64) {
	e.now = now
	e.translator.StartBatch(now)
}

// EndBatch logs the batch's exhaustion drops, at most every logEvery.
func (e *FullNAT) EndBatch() {
	if e.exhausted != 0 && e.log != nil && (e.logged == 0 || e.now-e.logged >= logEvery) {
		e.log.Warn("new flows dropped as fullnat.ports_exhausted: no free source port for their backend within the look-ups allowed; add addresses to source_pool", "element", e.name, "dropped", e.exhausted, "pool", len(e.addrs))
		e.logged, e.exhausted = e.now, 0
	}
	e.translator.EndBatch()
}

// Push translates p: a packet of a flow to its real's address and port
// from its source, a reply (FlowReply) from them back to VIP:port ->
// client:port, and an ICMP error about a flow as a packet of the flow
// or of its reply, its quote as one of the other direction (RFC 5508
// §4.2; see icmpError). Input: a frame Parse5Tuple parsed and ConnTrack
// found. On bad, the packet is unchanged but for p.Reason.
func (e *FullNAT) Push(_ int, p *pipeline.Packet) int {
	f := &p.Flow
	if f.Proto != protoTCP && f.Proto != protoUDP {
		p.Reason = reasonFullProto
		if f.Proto == protoICMP && f.Family == 4 || f.Proto == protoICMPv6 && f.Family == 6 {
			p.Reason = reasonFullICMP
		}
		return portBad
	}
	r := e.snap.Real(p.Backend, p.Epoch)
	if r == nil {
		p.Reason = reasonFullNoBackend
		return portBad
	}
	if r.Family != f.Family {
		p.Reason = reasonFullFamily
		return portBad
	}
	d := p.Data()
	ip, l4 := d[p.L3:], d[p.L4:]
	v4 := f.Family == 4
	later := f.Flags&pipeline.FlowLaterFragment != 0
	if later {
		l4 = nil // no transport header: addresses only
	}
	// An ICMP error's first fragment has its ICMP header and quote to
	// translate; its later fragments, their addresses only, as any.
	icmp := f.Flags&pipeline.FlowICMPError != 0
	so, do := addrOffsets(v4)
	if f.Flags&pipeline.FlowReply != 0 {
		vip := e.snap.VIPs[p.VIP].Addr.As16()
		if icmp && !later {
			return e.icmpError(p, addrBytes(&vip, v4), addrBytes(&p.Peer, v4), p.VIPPort, p.PeerPort, 1)
		}
		diff, _ := rewrite(ip, v4, so, addrBytes(&vip, v4), l4, 0, p.VIPPort)
		d2, _ := rewrite(ip, v4, do, addrBytes(&p.Peer, v4), l4, 2, p.PeerPort)
		if !later {
			fixTransport(l4, f.Proto, v4, diff+d2)
		}
		e.count(1, len(d))
		return portOut
	}
	pool := e.pool4
	if !v4 {
		pool = e.pool6
	}
	if len(pool) == 0 {
		p.Reason = reasonNoSource
		return portBad
	}
	bport := f.DstPort
	if int(p.Backend) < len(e.ports) && e.ports[p.Backend] != 0 {
		bport = e.ports[p.Backend]
	}
	sport, idx, ok := e.ct.Source(p)
	switch {
	case icmp:
		// An error allocates nothing: it is about a flow that has its
		// source, or about none FullNAT can name to its backend.
		if !ok || int(idx) >= len(pool) {
			p.Reason = reasonICMPUnknown
			return portBad
		}
		if !later {
			return e.icmpError(p, addrBytes(&pool[idx], v4), addrBytes(&r.Addr16, v4), sport, bport, 0)
		}
	default:
		res := pipeline.SourceTaken
		if ok && int(idx) < len(pool) {
			res = e.track(p, r, bport, &pool[idx], sport, idx)
		}
		if res == pipeline.SourceTaken {
			sport, idx, res = e.allocate(p, r, bport, pool)
		}
		switch res {
		case pipeline.SourceTaken:
			e.exhausted++
			p.Reason = reasonExhausted
			return portBad
		case pipeline.SourceUntracked:
			p.Reason = reasonUntracked
			return portBad
		}
	}
	diff, _ := rewrite(ip, v4, do, addrBytes(&r.Addr16, v4), l4, 2, bport)
	d2, _ := rewrite(ip, v4, so, addrBytes(&pool[idx], v4), l4, 0, sport)
	if !later {
		fixTransport(l4, f.Proto, v4, diff+d2)
	}
	e.count(0, len(d))
	return portOut
}

// icmpError translates an ICMP error about a flow, counted in direction
// dir: it leaves from src to dst (to the backend from the flow's source,
// dir 0; to the client from the VIP, dir 1), and its quote, a packet of
// the other direction, from dst:dport to src:sport, as that direction's
// packets are translated. So a router's Fragmentation Needed or Packet
// Too Big about a reply reaches the backend, and path MTU discovery
// works through FullNAT; a backend's Port Unreachable reaches the client.
func (e *FullNAT) icmpError(p *pipeline.Packet, src, dst []byte, sport, dport uint16, dir int) int {
	if !translateICMPError(p, src, dst, dst, src, dport, sport) {
		p.Reason = reasonFullICMPError
		return portBad
	}
	e.count(dir, p.Len())
	return portOut
}

// allocate finds p's flow a source: the first of maxProbes candidates,
// each a port drawn from the flow's hash and the probe's number, the
// pool's addresses in turn, that TrackSource takes. The ports are drawn
// independently (double hashing's effect) rather than counted on from a
// start: ports allocated one after another would form runs that every
// flow starting in one must probe through, and a pool at three quarters
// full ran out of look-ups for one new flow in 6,500
// (BenchmarkPipeline/miss-fullnat) where independent draws fail at
// 0.75^64.
//
// It reports SourceTaken when every candidate was (the range is
// exhausted), and SourceUntracked as soon as the table cannot hold the
// flow.
func (e *FullNAT) allocate(p *pipeline.Packet, r *snapshot.Real, bport uint16, pool [][16]byte) (uint16, uint8, pipeline.SourceResult) {
	n := uint64(len(pool))
	first := p.Hash % n
	for i := uint64(0); i < maxProbes; i++ {
		idx := uint8((first + i) % n)
		port := uint16(firstSourcePort + flowhash.Score(p.Hash, i)%sourcePorts)
		if res := e.track(p, r, bport, &pool[idx], port, idx); res != pipeline.SourceTaken {
			return port, idx, res
		}
	}
	return 0, 0, pipeline.SourceTaken
}

// track records p's flow's source (src:sport, pool index idx) and its
// reply entry (ReplyTracker.TrackSource).
func (e *FullNAT) track(p *pipeline.Packet, r *snapshot.Real, bport uint16, src *[16]byte, sport uint16, idx uint8) pipeline.SourceResult {
	rf := &e.reply
	*rf = pipeline.Flow{Src: r.Addr16, Dst: *src, SrcPort: bport, DstPort: sport, Proto: p.Flow.Proto, Family: p.Flow.Family}
	return e.ct.TrackSource(p, rf, e.key.Hash(rf), idx)
}

var (
	_ pipeline.Pusher        = (*FullNAT)(nil)
	_ pipeline.Validator     = (*FullNAT)(nil)
	_ pipeline.Provisioner   = (*FullNAT)(nil)
	_ pipeline.Cleaner       = (*FullNAT)(nil)
	_ pipeline.BatchStarter  = (*FullNAT)(nil)
	_ pipeline.BatchEnder    = (*FullNAT)(nil)
	_ pipeline.StatsReporter = (*FullNAT)(nil)
	_ snapshot.Checker       = (*FullNAT)(nil)
)
