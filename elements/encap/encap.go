// Package encap implements GREEncap and IPIPEncap, the elements that tunnel a
// load-balanced packet to the backend chosen for it, as the Maglev forwarder
// does (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.2). GREEncap writes RFC 2784 GRE over IPv4
// or IPv6; IPIPEncap writes IP in IP: IPv4 in IPv4 (RFC 2003), IPv6 in IPv4
// (RFC 4213 section 3.5), and IPv4 or IPv6 in IPv6 (RFC 2473). The backend
// decapsulates and, holding the VIP on a local interface, answers the client
// directly.
//
// Both element types are thin registrations over one Encap type and one
// per-packet function (as VPP's lb plugin registers its v4/v6 x GRE/IPIP
// nodes over one function): the tunnel kind decides only the tunnel header
// and the outer protocol number. The outer family is the backend's, the
// inner family the packet's.
//
// Encapsulation is in place: the outer headers go into the frame's headroom
// and only the L2 header moves; the inner packet is not copied. Encap acts
// as a router hop for the inner packet (TTL / hop limit decremented). It
// does not touch MAC addresses: whoever transmits (TxXDP, or an element
// before it) owns L2 rewriting.
//
// A packet that the tunnel would make larger than the egress MTU is
// answered as a router answers it: ICMP Fragmentation Needed (IPv4 with
// DF) or ICMPv6 Packet Too Big, from the VIP to the client, built in the
// packet's own frame and rate-limited per worker (pmtu.go).
package encap

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/internal/csum"
	"github.com/xlbproject/xlb/pipeline"
)

// Output ports.
const (
	portOut  = 0
	portBad  = 1
	portICMP = 2 // ICMP errors to the client, built in the packet's frame
)

// tunnel selects the header written between the outer IP header and the
// inner packet.
type tunnel uint8

const (
	tunnelGRE  tunnel = iota // RFC 2784: 4-byte GRE header, outer protocol 47
	tunnelIPIP               // no header; outer protocol 4 or 41 by inner family
)

// IP protocol numbers (IANA) written as the outer protocol / next header.
const (
	protoIPv4 = 4  // IPv4 encapsulated: RFC 2003 (in IPv4), RFC 2473 (in IPv6)
	protoIPv6 = 41 // IPv6 encapsulated: RFC 4213 (in IPv4), RFC 2473 (in IPv6)
	protoGRE  = 47 // RFC 2784
)

// EtherTypes, which are also the GRE protocol types (RFC 2784 section 2.4).
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86DD
)

const (
	ethHdrLen  = 14
	ipv4HdrLen = 20
	ipv6HdrLen = 40
	greHdrLen  = 4
)

// Drop reasons, indices into dropReasons.
const (
	dropNoBackend = iota
	dropNoSource
	dropTTLExceeded
	dropTooBig
	dropNoHeadroom
	dropMalformed
	dropICMPRateLimited
	dropNoSpare
	numDrops
)

var dropReasons = [numDrops]pipeline.Reason{
	dropNoBackend:   pipeline.NewReason("encap.nobackend"),
	dropNoSource:    pipeline.NewReason("encap.nosource"),
	dropTTLExceeded: pipeline.NewReason("encap.ttl_exceeded"),
	dropTooBig:      pipeline.NewReason("encap.too_big"),
	dropNoHeadroom:  pipeline.NewReason("encap.no_headroom"),
	dropMalformed:   pipeline.NewReason("encap.malformed"),
	// Too big, and the ICMP reply was over the worker's rate.
	dropICMPRateLimited: pipeline.NewReason("encap.icmp_ratelimited"),
	// Too big, to be fragmented, and the batch had no spare packet left
	// for a fragment (see pipeline.Emitter).
	dropNoSpare: pipeline.NewReason("encap.frag_no_frame"),
}

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "GREEncap",
		Doc:     "Encapsulates each packet in GRE (RFC 2784) over IPv4 or IPv6, addressed to its chosen backend.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "bad", "icmp"},
		New:     func() pipeline.Element { return newEncap(tunnelGRE) },
	})
	pipeline.Register(pipeline.ElementType{
		Name:    "IPIPEncap",
		Doc:     "Encapsulates each packet in IP-in-IP (RFC 2003, RFC 2473, RFC 4213), addressed to its chosen backend.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "bad", "icmp"},
		New:     func() pipeline.Element { return newEncap(tunnelIPIP) },
	})
}

// Encap is a GREEncap or IPIPEncap instance. The exported fields are its
// configuration.
type Encap struct {
	Source4 string `hcl:"source4,optional" doc:"outer source address for IPv4 backends; at least one of source4 and source6 is required"`
	Source6 string `hcl:"source6,optional" doc:"outer source address for IPv6 backends"`
	TTL     int    `hcl:"ttl,optional" doc:"outer IPv4 TTL / IPv6 hop limit, 1 to 255"`
	MTU     int    `hcl:"mtu,optional" doc:"bound on the outer IP packet, 68 to 65535; 0 takes interface's MTU, or disables the check without interface"`
	// Interface is where the MTU is read when mtu is not set.
	Interface  string `hcl:"interface,optional" doc:"the egress interface, whose MTU bounds the outer IP packet when mtu is not set"`
	ICMPRate   int    `hcl:"icmp_rate,optional" doc:"ICMP Fragmentation Needed / Packet Too Big replies per second per worker (default 1000); 0 sends none"`
	ICMPBurst  int    `hcl:"icmp_burst,optional" doc:"replies a worker may send at once before icmp_rate paces them (default 50)"`
	TooBigNoDF string `hcl:"too_big_no_df,optional" doc:"an IPv4 packet without DF that the tunnel makes larger than the MTU: \"fragment\" cuts the outer packet into fragments (RFC 791; the backend reassembles them), \"drop\" drops it as encap.too_big"`

	tunnel tunnel

	// Set by Provision, read-only afterwards.
	src4       [4]byte
	src6       [16]byte
	src4U32    uint32 // src4 as one big-endian word, for writeIPv4
	has4, has6 bool
	ttl        uint8
	mtu        int // bound on the outer IP packet; 0: none
	view       *snapshot.View
	log        *slog.Logger // worker 0's only: one warning per graph, not per worker
	fragOuter  bool         // too_big_no_df is "fragment"
	emit       *pipeline.Emitter

	// Owned by the worker goroutine.
	snap   *snapshot.Snapshot // the batch's, from view
	id     uint16             // next outer IPv4 identification
	idStep uint16             // workers interleave IDs so they never collide
	fragID uint32             // next IPv6 Fragment identification, stepped alike
	spares [maxFragments - 1]*pipeline.Packet
	local  []backendCount // per real ID, this batch; zero between batches
	// touched lists the real IDs counted in local this batch, each once:
	// its capacity, len(local), is never exceeded.
	touched []uint32
	// outer holds, per real ID of the batch's snapshot, the outer IPv4
	// header Push's common case writes (see adoptOuter).
	outer  []outer4
	bucket bucket // ICMP replies
	// ICMP replies sent this batch, by type.
	sentFragNeeded, sentPTB uint64
	// Packets fragmented this batch, and the fragments they made.
	fragmented, fragments uint64
	warned                string // the backends warnNoSource last named
	// byReal is the counter of each real ID of the current snapshot, in
	// the snapshot's chunks of reals; rows holds every (VIP, backend)
	// counter ever made, by name.
	byReal []*statChunk
	rows   map[[2]string]*backendStat
	// The chunks of the reals last adopted, the names of that
	// snapshot's VIPs by index, and warnNoSource's entries per chunk:
	// a chunk a new snapshot shares holds the same reals (see
	// snapshot.Reals), so adopt derives nothing again for it.
	seen     []*[snapshot.RealChunk]snapshot.Real
	seenVIPs []string
	missing  [][]string

	// Published in EndBatch, read by Stats from another goroutine.
	// backends lists every row in order of first appearance, those of
	// backends a reload removed included: their packets were sent, and
	// the exit table and metrics keep counting them (a counter that
	// vanished would read as a reset).
	backends                    atomic.Pointer[[]*backendStat]
	totPkts                     atomic.Uint64
	totBytes                    atomic.Uint64
	totFragNeeded, totPTB       atomic.Uint64
	totFragmented, totFragments atomic.Uint64
}

type backendCount struct{ pkts, bytes uint64 }

// statChunk is the counters of one chunk of the snapshot's reals.
type statChunk [snapshot.RealChunk]*backendStat

// backendStat is the published counter of one backend of one VIP. Its
// labels are immutable; a backend removed and added again by name carries
// on with its counter, whatever its real ID.
type backendStat struct {
	vip, backend string
	pkts, bytes  atomic.Uint64
}

func newEncap(t tunnel) *Encap {
	return &Encap{TTL: 64, ICMPRate: defaultICMPRate, ICMPBurst: defaultICMPBurst, TooBigNoDF: policyFragment, tunnel: t}
}

// Validate checks the configuration without side effects.
func (e *Encap) Validate() error {
	_, err := e.parse()
	return err
}

type parsedConfig struct {
	src4       [4]byte
	src6       [16]byte
	has4, has6 bool
}

func (e *Encap) parse() (parsedConfig, error) {
	var c parsedConfig
	if e.Source4 == "" && e.Source6 == "" {
		return c, &pipeline.AttrError{Attr: "source4", Msg: "or source6 must be set: the outer source address for IPv4 or IPv6 backends"}
	}
	if e.Source4 != "" {
		a, err := netip.ParseAddr(e.Source4)
		if err != nil || !a.Is4() || !unicast(a) {
			return c, &pipeline.AttrError{Attr: "source4", Msg: "must be a unicast IPv4 address such as \"192.0.2.1\""}
		}
		c.src4, c.has4 = a.As4(), true
	}
	if e.Source6 != "" {
		a, err := netip.ParseAddr(e.Source6)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" || !unicast(a) {
			return c, &pipeline.AttrError{Attr: "source6", Msg: "must be a unicast IPv6 address such as \"2001:db8::1\""}
		}
		c.src6, c.has6 = a.As16(), true
	}
	if e.TTL < 1 || e.TTL > 255 {
		return c, &pipeline.AttrError{Attr: "ttl", Msg: "must be between 1 and 255"}
	}
	// 68 is the IPv4 minimum MTU (RFC 791); an IPv6 outer needs 1280
	// (RFC 8200), but a lower value only drops more packets.
	if e.MTU != 0 && (e.MTU < 68 || e.MTU > 65535) {
		return c, &pipeline.AttrError{Attr: "mtu", Msg: "must be 0 (no check) or between 68 and 65535"}
	}
	if e.ICMPRate < 0 || e.ICMPRate > 1e6 {
		return c, &pipeline.AttrError{Attr: "icmp_rate", Msg: "must be between 0 (no replies) and 1000000 per second"}
	}
	if e.ICMPBurst < 1 || e.ICMPBurst > 1e6 {
		return c, &pipeline.AttrError{Attr: "icmp_burst", Msg: "must be between 1 and 1000000"}
	}
	if e.TooBigNoDF != policyFragment && e.TooBigNoDF != policyDrop {
		return c, &pipeline.AttrError{Attr: "too_big_no_df", Msg: `must be "fragment" or "drop"`}
	}
	return c, nil
}

func unicast(a netip.Addr) bool {
	return !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// Provision parses the addresses and gets the worker's view of the
// snapshots.
func (e *Encap) Provision(ctx *pipeline.Context) error {
	c, err := e.parse()
	if err != nil {
		return err
	}
	v, err := snapshot.ViewFromContext(ctx)
	if err != nil {
		return err
	}
	e.mtu = e.MTU
	if e.mtu == 0 && e.Interface != "" {
		ifi, err := net.InterfaceByName(e.Interface)
		if err != nil {
			return &pipeline.AttrError{Attr: "interface", Msg: fmt.Sprintf("cannot read its MTU (%v); name an interface of this host or set mtu", err)}
		}
		e.mtu = ifi.MTU
	}
	e.bucket = newBucket(e.ICMPRate, e.ICMPBurst)
	e.src4, e.src6, e.has4, e.has6 = c.src4, c.src6, c.has4, c.has6
	e.src4U32 = binary.BigEndian.Uint32(e.src4[:])
	e.ttl = uint8(e.TTL)
	e.view = v
	if ctx.Worker == 0 {
		e.log = ctx.Logger
	}
	e.idStep = uint16(max(ctx.Workers, 1))
	e.id = uint16(ctx.Worker)
	e.fragID = uint32(ctx.Worker)
	e.fragOuter = e.TooBigNoDF == policyFragment
	e.emit = ctx.Emitter()
	return nil
}

// Cleanup drops the references Provision took; nothing else is held.
func (e *Encap) Cleanup() error {
	e.view, e.snap = nil, nil
	return nil
}

// StartBatch takes the batch's snapshot and, when it is a new one, adopts
// its reals.
func (e *Encap) StartBatch(now int64) {
	e.bucket.refill(now)
	e.snap = e.view.Snapshot()
	if e.view.Changed() {
		e.adopt(e.snap)
	}
}

// adopt takes a new snapshot's reals: it grows the per-real scratch and
// maps each real ID to its (VIP, backend) row, adding rows for new names
// and keeping every other. It allocates only when the snapshot changed,
// never per packet, and looks only at the chunks of reals the snapshot
// does not share with the last one: a reload that changes one VIP's reals
// costs a chunk or two, not a walk of every real. The scratch is empty:
// EndBatch flushed the last batch's counts, which belong to the old
// snapshot's reals.
func (e *Encap) adopt(s *snapshot.Snapshot) {
	if n := s.Reals.Len(); n > len(e.local) {
		e.local = make([]backendCount, n)
		e.touched = make([]uint32, 0, n)
	}
	if e.rows == nil {
		e.rows = map[[2]string]*backendStat{}
	}
	var all []*backendStat
	if p := e.backends.Load(); p != nil {
		all = *p
	}
	// A real names its VIP by index: a shared chunk's rows (named by
	// VIP) stand only while every VIP keeps its place.
	vips := make([]string, len(s.VIPs))
	for i := range s.VIPs {
		vips[i] = s.VIPs[i].Name
	}
	sameVIPs := slices.Equal(vips, e.seenVIPs)
	added := false
	byReal := make([]*statChunk, s.Reals.Chunks())
	seen := make([]*[snapshot.RealChunk]snapshot.Real, len(byReal))
	for k := range byReal {
		c := s.Reals.Chunk(k)
		seen[k] = c
		if sameVIPs && k < len(e.seen) && e.seen[k] == c && k < len(e.byReal) {
			byReal[k] = e.byReal[k]
			continue
		}
		st := new(statChunk)
		for j := range c {
			r := &c[j]
			if r.Epoch == 0 {
				continue
			}
			key := [2]string{"", r.Backend}
			if int(r.VIP) < len(vips) {
				key[0] = vips[r.VIP]
			}
			b := e.rows[key]
			if b == nil {
				b = &backendStat{vip: key[0], backend: key[1]}
				e.rows[key] = b
				if !added {
					// A copy: Stats may be reading the published list.
					all, added = slices.Clip(all), true
				}
				all = append(all, b)
			}
			st[j] = b
		}
		byReal[k] = st
	}
	e.byReal = byReal
	if added {
		e.backends.Store(&all)
	}
	e.adoptOuter(s)
	if e.log != nil {
		e.warnNoSource(seen)
	}
	e.seen, e.seenVIPs = seen, vips
}

// adoptOuter fills e.outer for the snapshot s from the chunks of reals it
// does not share with the last one (e.seen): a real's entry in a shared
// chunk is the same real's. e.outer covers whole chunks and is sliced to
// s's reals, so that an ID past them is not found there.
func (e *Encap) adoptOuter(s *snapshot.Snapshot) {
	proto := byte(protoIPv4)
	if e.tunnel == tunnelGRE {
		proto = protoGRE
	}
	all := e.outer[:cap(e.outer)]
	if n := s.Reals.Chunks() * snapshot.RealChunk; n > len(all) {
		all = append(make([]outer4, 0, n), all...)[:n]
	}
	for k := range s.Reals.Chunks() {
		c := s.Reals.Chunk(k)
		if k < len(e.seen) && e.seen[k] == c {
			continue
		}
		o := all[k*snapshot.RealChunk : (k+1)*snapshot.RealChunk]
		for j := range c {
			r := &c[j]
			o[j] = outer4{}
			if r.Epoch != 0 && r.Family != 6 && e.has4 {
				o[j] = e.newOuter4(binary.BigEndian.Uint32(r.Addr16[12:]), proto)
				o[j].epoch = r.Epoch
			}
		}
	}
	e.outer = all[:s.Reals.Len()]
}

// warnNoSource logs the backends whose family has no outer source
// configured (an IPv6 backend without source6, say, whatever the VIP's
// family), when that list changes: every packet chosen for them is
// dropped as encap.nosource, which the counters show only once traffic
// arrives and the configuration check cannot see (it knows the graph or
// the pools, not both). chunks are the new snapshot's reals; only those
// not seen last time are looked at.
func (e *Encap) warnNoSource(chunks []*[snapshot.RealChunk]snapshot.Real) {
	if e.has4 && e.has6 {
		return // every family has its source: nothing to warn of
	}
	missing := make([][]string, len(chunks))
	var all []string
	for k, c := range chunks {
		if k < len(e.seen) && e.seen[k] == c && k < len(e.missing) {
			missing[k] = e.missing[k]
		} else {
			for j := range c {
				r := &c[j]
				if r.Epoch != 0 && ((r.Family == 6 && !e.has6) || (r.Family != 6 && !e.has4)) {
					missing[k] = append(missing[k], r.Backend+" "+r.Addr.String())
				}
			}
		}
		all = append(all, missing[k]...)
	}
	e.missing = missing
	slices.Sort(all)
	list := strings.Join(slices.Compact(all), ", ")
	if list == e.warned {
		return
	}
	e.warned = list
	if list != "" {
		e.log.Warn("no outer source address for these backends' family (source4 / source6): packets to them are dropped as encap.nosource", "backends", list)
	}
}

// EndBatch publishes the batch's counters and lets go of its snapshot.
func (e *Encap) EndBatch() {
	e.flush()
	e.snap = nil
}

func (e *Encap) flush() {
	bs := e.byReal
	// The totals are the sums of the reals' counts, taken here rather than
	// kept beside them packet by packet.
	var pkts, bytes uint64
	for _, id := range e.touched {
		c := &e.local[id]
		pkts += c.pkts
		bytes += c.bytes
		if k := int(id / snapshot.RealChunk); k < len(bs) {
			if b := bs[k][id%snapshot.RealChunk]; b != nil {
				b.pkts.Add(c.pkts)
				b.bytes.Add(c.bytes)
			}
		}
		*c = backendCount{}
	}
	e.touched = e.touched[:0]
	if e.fragmented != 0 {
		e.totFragmented.Add(e.fragmented)
		e.totFragments.Add(e.fragments)
		e.fragmented, e.fragments = 0, 0
	}
	if e.sentFragNeeded|e.sentPTB != 0 {
		e.totFragNeeded.Add(e.sentFragNeeded)
		e.totPTB.Add(e.sentPTB)
		e.sentFragNeeded, e.sentPTB = 0, 0
	}
	if pkts != 0 {
		e.totPkts.Add(pkts)
		e.totBytes.Add(bytes)
	}
}

// Stats reports totals and per-backend counters. Packets sent to bad are
// counted by the engine where they are dropped (a Discard), by reason.
func (e *Encap) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_encap_packets_total", Help: "Packets encapsulated.", Value: e.totPkts.Load()})
	emit(pipeline.Metric{Name: "xlb_encap_bytes_total", Help: "Bytes of encapsulated frames sent, outer headers included.", Value: e.totBytes.Load()})
	emit(pipeline.Metric{Name: "xlb_encap_icmp_sent_total", Help: "ICMP errors sent to clients for packets too big to encapsulate, by type.",
		Labels: []pipeline.Label{{Name: "type", Value: "frag_needed"}}, Value: e.totFragNeeded.Load()})
	emit(pipeline.Metric{Name: "xlb_encap_icmp_sent_total", Help: "ICMP errors sent to clients for packets too big to encapsulate, by type.",
		Labels: []pipeline.Label{{Name: "type", Value: "packet_too_big"}}, Value: e.totPTB.Load()})
	emit(pipeline.Metric{Name: "xlb_encap_fragmented_total", Help: "IPv4 packets without DF too big for the tunnel whose outer packet was fragmented.", Value: e.totFragmented.Load()})
	emit(pipeline.Metric{Name: "xlb_encap_fragments_total", Help: "Outer fragments sent for packets too big for the tunnel.", Value: e.totFragments.Load()})
	p := e.backends.Load()
	if p == nil {
		return
	}
	for _, b := range *p {
		labels := []pipeline.Label{{Name: "vip", Value: b.vip}, {Name: "backend", Value: b.backend}}
		emit(pipeline.Metric{Name: "xlb_encap_backend_packets_total", Help: "Packets encapsulated to a backend.", Labels: labels, Value: b.pkts.Load()})
		emit(pipeline.Metric{Name: "xlb_encap_backend_bytes_total", Help: "Bytes of encapsulated frames sent to a backend.", Labels: labels, Value: b.bytes.Load()})
	}
}

// drop sends p to bad with reason d.
func (e *Encap) drop(p *pipeline.Packet, d int) int {
	p.Reason = dropReasons[d]
	return portBad
}

// Push encapsulates p towards its backend. Input: an Ethernet frame whose
// inner IP header is at p.L3 and p.Backend/p.Epoch naming a real. Output
// on out: the same L2 header (its last EtherType set to the outer family),
// then the outer IP header at p.L3, the tunnel header, and the inner
// packet at p.L4. On bad, the packet is unchanged but for p.Reason.
func (e *Encap) Push(in int, p *pipeline.Packet) int {
	var port [1]uint8
	if e.PushBatch(in, []*pipeline.Packet{p}, port[:]) == 1 {
		return int(port[0])
	}
	r := e.snap.Real(p.Backend, p.Epoch)
	if r == nil {
		return e.drop(p, dropNoBackend)
	}
	return e.encap(p, r, p.Data())
}

// PushBatch is Push for the common case, IPv4 in IPv4 behind an Ethernet
// header that moves as two words, whole and within the MTU, to a real of
// the batch's snapshot (its outer4 in e.outer bears its epoch),
// encapsulated here straight from the inner header's words as loaded. It
// stops at anything else, or anything doubtful, which encap decides from
// scratch (nothing is written before every check has passed).
func (e *Encap) PushBatch(_ int, pkts []*pipeline.Packet, ports []uint8) int {
	ports = ports[:len(pkts)]
	overhead := ipv4HdrLen
	if e.tunnel == tunnelGRE {
		overhead = ipv4HdrLen + greHdrLen
	}
	for i, p := range pkts {
		data := p.Data()
		l3 := int(p.L3)
		if int(p.Backend) >= len(e.outer) || l3 < ethHdrLen || l3 > 16 || l3+ipv4HdrLen > len(data) {
			return i
		}
		o := &e.outer[p.Backend]
		ip := data[l3 : l3+ipv4HdrLen]
		w0 := binary.BigEndian.Uint64(ip[0:8])  // version, IHL, TOS, length, ID, flags, offset
		w1 := binary.BigEndian.Uint32(ip[8:12]) // TTL, protocol, checksum
		innerLen := int(w0 >> 32 & 0xffff)
		if o.epoch != p.Epoch || o.epoch == 0 ||
			w0>>60 != 4 || be16(data[l3-2:]) != etherTypeIPv4 || int(w0>>54&0x3c) < ipv4HdrLen ||
			innerLen < int(w0>>54&0x3c) || l3+innerLen > len(data) || w1>>24 <= 1 ||
			e.mtu > 0 && overhead+innerLen > e.mtu || overhead+innerLen > 0xffff || p.Headroom() < overhead {
			return i
		}
		p.Truncate(l3 + innerLen)
		// decTTL's update, as one store of TTL, protocol and checksum:
		// csum.Replace's difference ^m + m' is 0xfeff for any word m
		// whose TTL, its high byte, is above 1.
		binary.BigEndian.PutUint32(ip[8:12], (w1>>16-0x100)<<16|uint32(csum.Update(uint16(w1), 0xfeff)))
		d := p.Prepend(overhead)
		moveL2(d, overhead, l3) // its EtherType, IPv4, stays
		h := d[l3:]
		e.writeIPv4(h, byte(w0>>48), overhead+innerLen, w0&0x4000 != 0, o)
		if overhead != ipv4HdrLen {
			binary.BigEndian.PutUint32(h[ipv4HdrLen:], etherTypeIPv4)
		}
		p.L4 = uint16(l3 + overhead)
		e.count(p.Backend, uint64(len(d)))
		ports[i] = portOut
	}
	return len(pkts)
}

// encap is Push for any packet to the real r, data being p.Data().
func (e *Encap) encap(p *pipeline.Packet, r *snapshot.Real, data []byte) int {
	l3 := int(p.L3)
	// The L2 header must at least be Ethernet, ending with an EtherType
	// that agrees with the IP version found at L3.
	if l3 < ethHdrLen || l3+ipv4HdrLen > len(data) {
		return e.drop(p, dropMalformed)
	}
	etherType := be16(data[l3-2:])
	var (
		innerLen  int  // inner IP packet length, without Ethernet padding
		tos       byte // inner IPv4 TOS / IPv6 traffic class
		df        bool // outer IPv4 must not be fragmented
		ttlOff    int  // inner TTL / hop limit offset in data
		innerType uint16
		innerProt byte
	)
	switch {
	case data[l3]>>4 == 4 && etherType == etherTypeIPv4:
		ihl := int(data[l3]&0x0f) * 4
		innerLen = int(be16(data[l3+2:]))
		if ihl < ipv4HdrLen || innerLen < ihl || l3+innerLen > len(data) {
			return e.drop(p, dropMalformed)
		}
		tos = data[l3+1]
		// RFC 2003 section 3.1: DF is copied from the inner header. When
		// it is clear, the outer may be fragmented by routers on the way.
		df = data[l3+6]&0x40 != 0
		ttlOff = l3 + 8
		innerType, innerProt = etherTypeIPv4, protoIPv4
	case data[l3]>>4 == 6 && etherType == etherTypeIPv6:
		if l3+ipv6HdrLen > len(data) {
			return e.drop(p, dropMalformed)
		}
		// A zero payload length (jumbogram, RFC 2675) cannot occur on an
		// Ethernet frame, so it is read literally.
		innerLen = ipv6HdrLen + int(be16(data[l3+4:]))
		if l3+innerLen > len(data) {
			return e.drop(p, dropMalformed)
		}
		tos = data[l3]<<4 | data[l3+1]>>4
		// IPv6 is never fragmented on the path, so neither is its tunnel
		// (RFC 4213 section 3.2 sets DF on the IPv4 outer).
		df = true
		ttlOff = l3 + 7
		innerType, innerProt = etherTypeIPv6, protoIPv6
	default:
		return e.drop(p, dropMalformed)
	}

	ipLen := ipv4HdrLen
	if r.Family == 6 {
		ipLen = ipv6HdrLen
		if !e.has6 {
			return e.drop(p, dropNoSource)
		}
	} else if !e.has4 {
		return e.drop(p, dropNoSource)
	}
	if data[ttlOff] <= 1 {
		// A router would send ICMP Time Exceeded; that is future work.
		return e.drop(p, dropTTLExceeded)
	}
	tunLen, proto := 0, innerProt
	if e.tunnel == tunnelGRE {
		tunLen, proto = greHdrLen, protoGRE
	}
	overhead := ipLen + tunLen
	// The MTU, when set, bounds the whole outer IP packet: the client is
	// told the MTU left for it. The outer IPv4 total length and the outer
	// IPv6 payload length are 16 bits, a bound no client can be told of
	// (no Ethernet frame reaches it).
	var frag fragPlan // k == 0: the outer packet is sent whole
	if e.mtu > 0 && overhead+innerLen > e.mtu {
		v4 := innerType == etherTypeIPv4
		if !v4 || df || !e.fragOuter {
			return e.tooBig(p, data, l3, innerLen, v4, df, e.mtu-overhead)
		}
		var ok bool
		if frag, ok = e.planFragments(ipLen, overhead+innerLen); !ok {
			return e.drop(p, dropTooBig)
		}
	}
	if (ipLen == ipv4HdrLen && overhead+innerLen > 0xffff) || tunLen+innerLen > 0xffff {
		return e.drop(p, dropTooBig)
	}
	if p.Headroom() < overhead {
		return e.drop(p, dropNoHeadroom)
	}
	if l3+overhead > 0xffff { // p.L4 must fit; only absurd L2 lengths get here
		return e.drop(p, dropMalformed)
	}
	if frag.k != 0 && !e.takeSpares(frag, l3, ipLen) {
		return e.drop(p, dropNoSpare)
	}

	// Every check has passed: from here on the packet is modified.
	p.Truncate(l3 + innerLen) // Ethernet padding would otherwise be tunnelled
	decTTL(data[l3:], innerType == etherTypeIPv4)
	d := p.Prepend(overhead)
	moveL2(d, overhead, l3)
	h := d[l3:]
	if ipLen == ipv4HdrLen {
		put16(d[l3-2:], etherTypeIPv4)
		o := e.newOuter4(binary.BigEndian.Uint32(r.Addr16[12:]), proto)
		e.writeIPv4(h, tos, overhead+innerLen, df, &o)
	} else {
		put16(d[l3-2:], etherTypeIPv6)
		e.writeIPv6(h, tos, tunLen+innerLen, flowLabel(p.Hash), proto, r.Addr16[:])
	}
	if tunLen != 0 {
		// RFC 2784 section 2: C=0, reserved0=0, version 0, then the
		// protocol type; no checksum, key or sequence number.
		binary.BigEndian.PutUint32(h[ipLen:], uint32(innerType))
	}
	p.L4 = uint16(l3 + overhead) // p.L3 already points at the outer header

	// p.Backend < snap.Reals.Len() <= len(local), as Real found it.
	n := uint64(len(d))
	if frag.k != 0 {
		n = uint64(e.fragment(p, frag, l3, ipLen))
		e.fragmented++
		e.fragments += uint64(frag.k)
	}
	e.count(p.Backend, n)
	return portOut
}

// count counts a packet of n bytes sent to real id (< len(e.local), as
// Real found it).
func (e *Encap) count(id uint32, n uint64) {
	c := &e.local[id]
	if c.pkts == 0 {
		e.touched = append(e.touched, id) // within its capacity, len(local)
	}
	c.pkts++
	c.bytes += n
}

var (
	_ pipeline.Pusher        = (*Encap)(nil)
	_ pipeline.BatchPusher   = (*Encap)(nil)
	_ pipeline.Validator     = (*Encap)(nil)
	_ pipeline.Provisioner   = (*Encap)(nil)
	_ pipeline.Cleaner       = (*Encap)(nil)
	_ pipeline.BatchStarter  = (*Encap)(nil)
	_ pipeline.BatchEnder    = (*Encap)(nil)
	_ pipeline.StatsReporter = (*Encap)(nil)
)
