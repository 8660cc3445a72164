// Package parse implements Parse5Tuple, the element that reads the headers
// of an Ethernet frame — up to two IEEE 802.1Q / 802.1ad VLAN tags, IPv4
// (RFC 791) or IPv6 with its extension headers (RFC 8200), then TCP, UDP,
// SCTP, ICMP (RFC 792) or ICMPv6 (RFC 4443) — and writes the packet's header
// offsets, flow 5-tuple and seeded flow hash for the elements after it.
//
// A first fragment is parsed and hashed on its 5-tuple like the flow's
// unfragmented packets; later fragments take its flow and hash from a
// per-worker fragment table (frag.go), so every fragment of a datagram
// reaches the flow's backend and passes its VIP's port filter. ICMP errors are
// keyed on the flow they quote, reversed, as GLB Director and Katran do: a
// Fragmentation Needed (RFC 1191) or Packet Too Big (RFC 8201) that a router
// sends to the VIP about a backend's reply follows the client's flow to
// that backend, so path MTU discovery works through the load balancer.
//
// The element only reads headers; it does not verify checksums (see
// parseIPv4) and it trims link-layer padding after the IP datagram.
//
// FragRedirect (redirect.go), before Parse5Tuple in a cluster, sends every
// fragment to the node chosen for its datagram, so that a datagram's
// fragments meet in one node's fragment table.
package parse

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "Parse5Tuple",
		Doc:     "Parses Ethernet/VLAN/IPv4/IPv6 headers into header offsets, the flow 5-tuple and the seeded flow hash; malformed frames leave by bad.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "bad"},
		New: func() pipeline.Element {
			return &Parse5Tuple{FragCapacity: defaultFragCapacity, FragTimeout: defaultFragTimeout,
				FragHold: defaultFragHold, FragHoldTime: defaultFragHoldTime}
		},
	})
}

// Output ports.
const (
	portOut = 0
	portBad = 1
)

// Drop reasons, one per distinct way a frame can fail to parse.
var (
	reasonTruncatedEth = pipeline.NewReason("parse.truncated_eth")
	reasonTooManyVLANs = pipeline.NewReason("parse.too_many_vlans")
	reasonNotIP        = pipeline.NewReason("parse.not_ip")
	reasonBadVersion   = pipeline.NewReason("parse.bad_version")
	reasonBadIHL       = pipeline.NewReason("parse.bad_ihl")
	reasonBadTotalLen  = pipeline.NewReason("parse.bad_total_length")
	reasonTruncatedIP  = pipeline.NewReason("parse.truncated_ip")
	reasonTruncatedExt = pipeline.NewReason("parse.truncated_ext_header")
	reasonTooManyExt   = pipeline.NewReason("parse.too_many_ext_headers")
	reasonTruncatedL4  = pipeline.NewReason("parse.truncated_l4")
	reasonBadICMPInner = pipeline.NewReason("parse.bad_icmp_inner")
	// reasonFragNoFirst: a later fragment whose first fragment is not in
	// the fragment table (not seen yet, timed out or evicted).
	reasonFragNoFirst = pipeline.NewReason("parse.fragment_without_first")
	// reasonICMPForeign: an ICMP error quotes a packet that its
	// destination did not send, so it cannot be about one of that VIP's
	// flows (see parseICMPError).
	reasonICMPForeign = pipeline.NewReason("parse.icmp_foreign_quote")
)

// Martian sources (RFC 1812 §5.3.7, RFC 4291 §2.5.2-§2.7): addresses no
// client can send from. Forwarded, they would make a backend answer a
// broadcast, multicast or loopback address, or the VIP itself.
var (
	reasonMartianBroadcast = pipeline.NewReason("parse.martian_broadcast")   // 255.255.255.255
	reasonMartianMulticast = pipeline.NewReason("parse.martian_multicast")   // 224.0.0.0/4, ff00::/8
	reasonMartianThisNet   = pipeline.NewReason("parse.martian_unspecified") // 0.0.0.0/8, ::
	reasonMartianLoopback  = pipeline.NewReason("parse.martian_loopback")    // 127.0.0.0/8, ::1
	reasonMartianLand      = pipeline.NewReason("parse.martian_land")        // source == destination: the VIP itself
	// RFC 1112 §4's class E, reserved for future use and never assigned;
	// the limited broadcast, inside it, keeps its own reason.
	reasonMartianReserved = pipeline.NewReason("parse.martian_reserved") // 240.0.0.0/4
	// Routers must not forward a packet with a link-local source to
	// another link (RFC 3927 §2.7, RFC 4291 §2.5.6), and the backend
	// could not answer it: it is on another link.
	reasonMartianLinkLocal = pipeline.NewReason("parse.martian_link_local") // 169.254.0.0/16, fe80::/10
	// IPv4 addresses written in IPv6 form, which no stack sends from:
	// IPv4-mapped addresses only stand for IPv4 peers inside a socket API
	// (RFC 4291 §2.5.5.2; Linux drops them on input) and IPv4-compatible
	// ones are deprecated (RFC 4291 §2.5.5.1) and never assigned.
	reasonMartianMapped = pipeline.NewReason("parse.martian_ipv4_in_ipv6") // ::ffff:0:0/96, ::/96
	// A source equal to another VIP's address: the backend would answer
	// that VIP, that is the balancer, not a client (see vipFilter).
	reasonMartianVIP = pipeline.NewReason("parse.martian_vip")
)

const (
	ethHeaderLen = 14
	vlanTagLen   = 4
	// maxVLANTags is two: an 802.1ad S-tag and an 802.1Q C-tag (QinQ).
	maxVLANTags = 2
	// maxExtHeaders bounds the IPv6 extension header walk, so a chain of
	// tiny headers cannot make the per-packet cost unbounded. Real traffic
	// carries at most two or three (RFC 8200 §4.1 lists six kinds, each
	// once, destination options twice).
	maxExtHeaders = 8

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100 // 802.1Q C-tag
	etherTypeQinQ = 0x88a8 // 802.1ad S-tag

	protoHopByHop = 0
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoICMPv6   = 58
	protoDestOpts = 60
	protoSCTP     = 132
)

// Packet classes counted per family in xlb_parse_packets_total.
const (
	classTCP = iota
	classUDP
	classSCTP
	classICMP
	classICMPError
	classFragment
	classOther
	numClasses
)

var classNames = [numClasses]string{"tcp", "udp", "sctp", "icmp", "icmp_error", "fragment", "other"}

// Parse5Tuple is the parser element. What it accepts is fixed by the
// standards above and its hash seed comes from the service snapshot; its
// configuration is the fragment table's size and timeout.
type Parse5Tuple struct {
	FragCapacity int    `hcl:"frag_capacity,optional" doc:"datagrams each worker's fragment table holds (first fragments seen, awaiting their later fragments), rounded up to a power of two of 4-way buckets"`
	FragTimeout  string `hcl:"frag_timeout,optional" doc:"how long after its last fragment a datagram's entry lets later fragments follow it, a duration"`
	FragHold     int    `hcl:"frag_hold,optional" doc:"later fragments each worker holds (copied) until their first fragment comes, 0 to 4096; 0 drops them at once"`
	FragHoldTime string `hcl:"frag_hold_time,optional" doc:"how long a later fragment is held for its first fragment, a duration"`

	view *snapshot.View
	// store is for FlowHash, which runs on other goroutines than the
	// worker and so may not read view.
	store *snapshot.Store
	key   hashKey // from the batch's snapshot's HashSeed
	vips  vipFilter

	// counts is this batch's tally, owned by the worker; total is what
	// Stats reads, published once per batch by EndBatch.
	counts [2][numClasses]uint64
	total  [2][numClasses]atomic.Uint64

	frags    fragTable
	fragsPub struct {
		recorded, followed, expired, evicted, capacity atomic.Uint64
	}

	// hold keeps later fragments that came before their first (hold.go),
	// sent on through emit; drops counts those lost once held.
	hold    fragHold
	holdPub struct{ held, released atomic.Uint64 }
	now     int64 // the batch's clock
	// touched keeps Prefetch's loads from being optimised away.
	touched byte
	emit    *pipeline.Emitter
	drops   *pipeline.DropCounter
}

// Validate checks the fragment table's and the hold's attributes without
// side effects.
func (e *Parse5Tuple) Validate() error {
	if _, err := e.fragConfig(); err != nil {
		return err
	}
	_, err := e.holdConfig()
	return err
}

// holdConfig checks frag_hold and frag_hold_time and returns the latter.
func (e *Parse5Tuple) holdConfig() (time.Duration, error) {
	if e.FragHold < 0 || e.FragHold > maxFragHold {
		return 0, &pipeline.AttrError{Attr: "frag_hold", Msg: "must be 0 (no hold) to 4096"}
	}
	d, err := time.ParseDuration(e.FragHoldTime)
	if err != nil {
		return 0, &pipeline.AttrError{Attr: "frag_hold_time", Msg: "must be a duration such as \"5ms\""}
	}
	if d <= 0 || d > maxFragHoldTime {
		return 0, &pipeline.AttrError{Attr: "frag_hold_time", Msg: "must be greater than 0 and at most 1s"}
	}
	return d, nil
}

// fragConfig checks frag_capacity and frag_timeout and returns the latter.
func (e *Parse5Tuple) fragConfig() (time.Duration, error) {
	if e.FragCapacity <= 0 || e.FragCapacity > maxFragCapacity {
		return 0, &pipeline.AttrError{Attr: "frag_capacity", Msg: "must be greater than 0 and at most 1048576"}
	}
	d, err := time.ParseDuration(e.FragTimeout)
	if err != nil {
		return 0, &pipeline.AttrError{Attr: "frag_timeout", Msg: "must be a duration such as \"1s\" or \"500ms\""}
	}
	if d <= 0 || d > maxFragTimeout {
		return 0, &pipeline.AttrError{Attr: "frag_timeout", Msg: "must be greater than 0 and at most 30s"}
	}
	return d, nil
}

// setup allocates the fragment table, keyed by seed.
func (e *Parse5Tuple) setup(seed uint64) error {
	d, err := e.fragConfig()
	if err != nil {
		return err
	}
	e.frags.init(e.FragCapacity, d, seed)
	e.fragsPub.capacity.Store(uint64(len(e.frags.ents)))
	if e.emit == nil {
		// Driven without a graph: nothing could send a held fragment on.
		return nil
	}
	hd, err := e.holdConfig()
	if err != nil {
		return err
	}
	e.hold.init(e.FragHold, hd)
	return nil
}

// Provision gets the worker's view of the snapshots, which hold the hash
// seed, and allocates the fragment table.
func (e *Parse5Tuple) Provision(ctx *pipeline.Context) error {
	v, err := snapshot.ViewFromContext(ctx)
	if err != nil {
		return err
	}
	e.view = v
	e.store, _ = snapshot.FromContext(ctx)
	e.emit, e.drops = ctx.Emitter(), ctx.DropCounter()
	return e.setup(e.store.Load().HashSeed)
}

// FlowHash returns the hash a packet of f gets under the latest published
// seed: what `xlbctl lookup` asks.
func (e *Parse5Tuple) FlowHash(f *pipeline.Flow) uint64 {
	return HashFlow(e.store.Load().HashSeed, f)
}

// StartBatch takes the hash seed of the batch's snapshot, so a seed change
// in config takes effect at a batch boundary, and the batch's clock.
func (e *Parse5Tuple) StartBatch(now int64) {
	s := e.view.Snapshot()
	e.key = newHashKey(s.HashSeed)
	if e.view.Changed() {
		e.vips.build(s)
	}
	e.frags.tick = uint32(uint64(now) >> fragTickShift)
	e.now = now
}

// prefetchSpan is how far into a frame Prefetch reaches: Ethernet, IPv4
// and TCP headers without options end before it, so it covers both cache
// lines of headers that straddle one.
const prefetchSpan = ethHeaderLen + 20 + 20

// Prefetch touches the headers of every packet of the batch before the
// first is parsed. Parse5Tuple is the first to read what the NIC (or,
// with veth, another CPU) wrote: issue 13 measured it at 113 ns a packet
// on the wire against 17 in process, one cache miss after another. These
// loads are independent, so the CPU keeps them in flight together.
func (e *Parse5Tuple) Prefetch(_ int, pkts []*pipeline.Packet) {
	var sum byte
	for _, p := range pkts {
		if d := p.Data(); len(d) >= prefetchSpan {
			sum += d[0] + d[prefetchSpan-1]
		} else if len(d) > 0 {
			sum += d[0]
		}
	}
	e.touched = sum
}

// Push parses p. On `out`, p.L3, p.L4, p.Flow and p.Hash are valid and the
// packet's data ends where its IP datagram ends. On `bad`, p.Reason says
// why and the other fields are unspecified.
func (e *Parse5Tuple) Push(in int, p *pipeline.Packet) int {
	var port [1]uint8
	if e.PushBatch(in, []*pipeline.Packet{p}, port[:]) == 1 {
		return int(port[0])
	}
	return e.pushFrame(p)
}

// PushBatch is Push for the common case, an untagged IPv4 TCP or UDP
// packet without options or fragmentation from an ordinary source, parsed
// here straight, without parseFrame's calls; it stops at anything else, or
// anything doubtful, which pushFrame decides from scratch (nothing is
// written before the common case has checked everything).
func (e *Parse5Tuple) PushBatch(_ int, pkts []*pipeline.Packet, ports []uint8) int {
	ports = ports[:len(pkts)]
	// The packets are counted here and added to e.counts once: an
	// increment there per packet is a load and a store.
	var counts [classUDP + 1]uint64
	n := len(pkts)
	for i, p := range pkts {
		d := p.Data()
		if len(d) < ethHeaderLen+20+8 {
			n = i
			break
		}
		ip := d[ethHeaderLen:]
		w0 := binary.BigEndian.Uint64(ip[0:8])  // version, IHL, TOS, length, ID, flags, offset
		w1 := binary.BigEndian.Uint32(ip[8:12]) // TTL, protocol, checksum
		src := binary.LittleEndian.Uint32(ip[12:16])
		dst := binary.LittleEndian.Uint32(ip[16:20])
		tot := int(w0 >> 32 & 0xffff)
		proto := uint8(w1 >> 16)
		need, class := 20+20, classTCP
		if proto == protoUDP {
			need, class = 20+8, classUDP
		}
		// martian4's tests: this net, loopback, multicast and above,
		// link-local, land, and a source that may be a VIP's.
		sa := binary.BigEndian.Uint32(ip[12:16])
		a := sa >> 24
		if be16(d[12:]) != etherTypeIPv4 || w0>>56 != 0x45 || w0&0x3fff != 0 ||
			proto != protoTCP && proto != protoUDP || tot < need || tot > len(ip) ||
			a == 0 || a == 127 || a >= 0xe0 || sa>>16 == 0xa9fe || src == dst ||
			e.vips.maybe(0xffff<<32|uint64(sa)) {
			n = i
			break
		}
		l4 := ip[20:]
		p.Truncate(ethHeaderLen + tot)
		f := &p.Flow
		lo4, lo4d := 0xffff<<16|uint64(src)<<32, 0xffff<<16|uint64(dst)<<32
		binary.LittleEndian.PutUint64(f.Src[:8], 0)
		binary.LittleEndian.PutUint64(f.Src[8:], lo4)
		binary.LittleEndian.PutUint64(f.Dst[:8], 0)
		binary.LittleEndian.PutUint64(f.Dst[8:], lo4d)
		sp, dp := be16(l4), be16(l4[2:])
		f.SrcPort, f.DstPort, f.Proto, f.Family, f.Flags = sp, dp, proto, 4, 0
		p.L3, p.L4 = ethHeaderLen, ethHeaderLen+20
		p.Hash = e.key.Words(0, lo4, 0, lo4d, uint64(sp)<<24|uint64(dp)<<8|uint64(proto))
		counts[class]++
		ports[i] = portOut
	}
	e.counts[0][classTCP] += counts[classTCP]
	e.counts[0][classUDP] += counts[classUDP]
	return n
}

// pushFrame is Push for any frame: parseFrame, then the fragment tables.
func (e *Parse5Tuple) pushFrame(p *pipeline.Packet) int {
	var fr fragment
	class, r := parseFrame(p, &fr, &e.vips)
	if r != pipeline.ReasonNone {
		p.Reason = r
		return portBad
	}
	switch fr.kind {
	case notFragment:
		p.Hash = e.key.Hash(&p.Flow)
	case firstFragment:
		p.Hash = e.key.Hash(&p.Flow)
		e.frags.record(&fr.key, &p.Flow, p.Hash)
		if e.hold.n > 0 {
			e.release(&fr.key)
		}
	default:
		ent := e.frags.follow(&fr.key)
		if ent == nil {
			if e.hold.put(&fr.key, p, e.now) {
				p.Recycle()
				return pipeline.Consumed
			}
			p.Reason = reasonFragNoFirst
			return portBad
		}
		p.Flow, p.Hash = ent.flow, ent.hash
		p.Flow.Flags |= pipeline.FlowLaterFragment
	}
	e.counts[(p.Flow.Family>>1)&1][class]++
	return portOut
}

// EndBatch drops the fragments held too long and publishes the batch's
// counts.
func (e *Parse5Tuple) EndBatch() {
	if e.hold.n > 0 {
		e.hold.expire(e.now, false)
	}
	e.publishHold()
	if l := &e.frags.local; *l != (fragCounters{}) {
		e.fragsPub.recorded.Add(l.recorded)
		e.fragsPub.followed.Add(l.followed)
		e.fragsPub.expired.Add(l.expired)
		e.fragsPub.evicted.Add(l.evicted)
		*l = fragCounters{}
	}
	for f := range e.counts {
		for c, n := range e.counts[f] {
			if n != 0 {
				e.total[f][c].Add(n)
				e.counts[f][c] = 0
			}
		}
	}
}

// Stats reports xlb_parse_packets_total by family and class.
func (e *Parse5Tuple) Stats(emit func(pipeline.Metric)) {
	families := [2]string{"ipv4", "ipv6"} // index (Family>>1)&1: 4 -> 0, 6 -> 1
	for f := range e.total {
		for c := range e.total[f] {
			emit(pipeline.Metric{
				Name:   "xlb_parse_packets_total",
				Help:   "Packets parsed and passed on, by IP family and protocol class.",
				Labels: []pipeline.Label{{Name: "family", Value: families[f]}, {Name: "class", Value: classNames[c]}},
				Value:  e.total[f][c].Load(),
			})
		}
	}
	for _, m := range []struct {
		event, help string
		v           *atomic.Uint64
	}{
		{"recorded", "First fragments recorded in the fragment table.", &e.fragsPub.recorded},
		{"followed", "Later fragments that found their first fragment's flow.", &e.fragsPub.followed},
		{"expired", "Later fragments whose datagram's entry had timed out (dropped as parse.fragment_without_first).", &e.fragsPub.expired},
		{"evicted", "Live datagrams replaced by a new first fragment in a full bucket.", &e.fragsPub.evicted},
	} {
		emit(pipeline.Metric{Name: "xlb_parse_fragment_table_" + m.event + "_total", Help: m.help, Value: m.v.Load()})
	}
	emit(pipeline.Metric{Name: "xlb_parse_fragment_table_capacity", Help: "Datagrams the fragment table holds.",
		Value: e.fragsPub.capacity.Load(), Gauge: true})
	emit(pipeline.Metric{Name: "xlb_parse_fragment_hold_held_total", Help: "Later fragments held (copied) until their first fragment came.",
		Value: e.holdPub.held.Load()})
	emit(pipeline.Metric{Name: "xlb_parse_fragment_hold_released_total", Help: "Held later fragments sent on after their first fragment.",
		Value: e.holdPub.released.Load()})
}

// Cleanup drops the fragments still held when the graph stops.
func (e *Parse5Tuple) Cleanup() error {
	if e.hold.n > 0 {
		e.hold.expire(0, true)
		e.publishHold()
	}
	return nil
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

// parseFrame writes p.L3, p.L4 and p.Flow, and fr when p is a fragment,
// and returns the packet's class, or the reason it cannot be parsed. A
// first fragment's flow is parsed as an unfragmented packet's; a later
// fragment's has no ports and Proto is the datagram's key protocol.
//
// vips holds the VIP addresses a source must not be (martian_vip).
func parseFrame(p *pipeline.Packet, fr *fragment, vips *vipFilter) (int, pipeline.Reason) {
	d := p.Data()
	if len(d) < ethHeaderLen {
		return 0, reasonTruncatedEth
	}
	et := be16(d[12:])
	off := ethHeaderLen
	for tags := 0; et == etherTypeVLAN || et == etherTypeQinQ; tags++ {
		if tags == maxVLANTags {
			return 0, reasonTooManyVLANs
		}
		if len(d) < off+vlanTagLen {
			return 0, reasonTruncatedEth
		}
		et = be16(d[off+2:]) // after the 2-byte TCI
		off += vlanTagLen
	}
	switch et {
	case etherTypeIPv4:
		return parseIPv4(p, d, off, fr, vips)
	case etherTypeIPv6:
		return parseIPv6(p, d, off, fr, vips)
	}
	// ARP, LLDP and the like: a live RxXDP never hands them over (the XDP
	// program passes them to the kernel), but a capture replay does.
	return 0, reasonNotIP
}

// setMapped writes the IPv4 address a4 as ::ffff:a.b.c.d into a16, in two
// 8-byte stores: the flow hash loads the address as two 8-byte words right
// after, and a load that spans several narrower stores waits for them to
// retire instead of being forwarded from the store buffer.
func setMapped(a16 *[16]byte, a4 []byte) {
	binary.LittleEndian.PutUint64(a16[:8], 0)
	binary.LittleEndian.PutUint64(a16[8:], 0xffff<<16|uint64(binary.LittleEndian.Uint32(a4[:4]))<<32)
}

// parseIPv4 parses the IPv4 header at d[l3:].
//
// The header checksum is not verified: a router may skip it (RFC 1812
// §5.2.2 allows it for speed) because the link layer's CRC already caught
// corruption on the wire, the backend verifies the inner header again, and
// verifying would cost a pass over the header for every packet. A packet
// shorter than its total length is truncated and dropped; a longer one
// carries link-layer padding (Ethernet pads to 60 bytes), which is trimmed.
func parseIPv4(p *pipeline.Packet, d []byte, l3 int, fr *fragment, vips *vipFilter) (int, pipeline.Reason) {
	ip := d[l3:]
	if len(ip) < 20 {
		return 0, reasonTruncatedIP
	}
	if ip[0]>>4 != 4 {
		return 0, reasonBadVersion
	}
	ihl := int(ip[0]&0x0f) << 2
	if ihl < 20 {
		return 0, reasonBadIHL
	}
	tot := int(be16(ip[2:]))
	if tot < ihl {
		return 0, reasonBadTotalLen
	}
	if tot > len(ip) {
		return 0, reasonTruncatedIP
	}
	ip = ip[:tot]
	p.Truncate(l3 + tot)
	if r := martian4(ip, vips); r != pipeline.ReasonNone {
		return 0, r
	}

	// Field by field rather than from a zeroed Flow: see setMapped.
	f := &p.Flow
	setMapped(&f.Src, ip[12:16])
	setMapped(&f.Dst, ip[16:20])
	f.SrcPort, f.DstPort, f.Proto, f.Family, f.Flags = 0, 0, ip[9], 4, 0
	p.L3, p.L4 = uint16(l3), uint16(l3+ihl)
	// MF set or a non-zero offset: a fragment, first or later. Options
	// were skipped through IHL without being interpreted.
	if fo := be16(ip[6:]); fo&0x3fff != 0 {
		fr.key = *f
		fr.key.DstPort = be16(ip[4:])
		if fo&0x1fff != 0 {
			fr.kind = laterFragment
			return classFragment, 0
		}
		fr.kind = firstFragment
		if _, r := transport(f, ip[ihl:]); r != pipeline.ReasonNone {
			return 0, r
		}
		return classFragment, 0
	}
	return transport(f, ip[ihl:])
}

// parseIPv6 parses the IPv6 header at d[l3:] and its extension headers.
// Jumbograms (payload length 0 with a Jumbo Payload option, RFC 2675) do
// not fit an Ethernet MTU and fail as a truncated extension header.
func parseIPv6(p *pipeline.Packet, d []byte, l3 int, fr *fragment, vips *vipFilter) (int, pipeline.Reason) {
	ip := d[l3:]
	if len(ip) < 40 {
		return 0, reasonTruncatedIP
	}
	if ip[0]>>4 != 6 {
		return 0, reasonBadVersion
	}
	tot := 40 + int(be16(ip[4:]))
	if tot > len(ip) {
		return 0, reasonTruncatedIP
	}
	ip = ip[:tot]
	p.Truncate(l3 + tot)
	if r := martian6(ip, vips); r != pipeline.ReasonNone {
		return 0, r
	}

	proto, l4, frag, fh, r := walkIPv6(ip, ip[6], 40)
	if r != pipeline.ReasonNone {
		return 0, r
	}
	f := &p.Flow
	*f = pipeline.Flow{Proto: proto, Family: 6}
	copy(f.Src[:], ip[8:24])
	copy(f.Dst[:], ip[24:40])
	p.L3, p.L4 = uint16(l3), uint16(l3+l4)
	if frag == notFragment {
		return transport(f, ip[l4:])
	}
	fr.kind = frag
	fr.key = pipeline.Flow{Src: f.Src, Dst: f.Dst, SrcPort: be16(ip[fh+4:]), DstPort: be16(ip[fh+6:]), Proto: ip[fh], Family: 6}
	if frag == firstFragment {
		if _, r := transport(f, ip[l4:]); r != pipeline.ReasonNone {
			return 0, r
		}
	}
	return classFragment, 0
}

// martian4 returns why the source of the IPv4 header ip is martian, or
// ReasonNone. A source equal to the destination is the VIP itself (a LAND
// packet): the one VIP a packet can be checked against without a lookup;
// the others are in vips.
// Only the limited broadcast is known here: a subnet's directed broadcast
// depends on prefixes xlb does not have.
func martian4(ip []byte, vips *vipFilter) pipeline.Reason {
	src := binary.BigEndian.Uint32(ip[12:])
	switch a := src >> 24; {
	case a == 0:
		return reasonMartianThisNet
	case a == 127:
		return reasonMartianLoopback
	case a&0xf0 == 0xe0:
		return reasonMartianMulticast
	case src == 0xffffffff:
		return reasonMartianBroadcast
	case a&0xf0 == 0xf0:
		return reasonMartianReserved
	case src>>16 == 0xa9fe:
		return reasonMartianLinkLocal
	case src == binary.BigEndian.Uint32(ip[16:]):
		return reasonMartianLand
	case vips.has(0, 0xffff<<32|uint64(src)):
		return reasonMartianVIP
	}
	return pipeline.ReasonNone
}

// martian6 is martian4 for the IPv6 header ip: ::, ::1, ff00::/8,
// fe80::/10, IPv4 addresses in IPv6 form (::ffff:0:0/96 and ::/96) and a
// source equal to the destination. Other prefixes with an IPv4 address
// inside (NAT64's 64:ff9b::/96, 6to4's 2002::/16) are sent by translators
// and relays, and stay.
func martian6(ip []byte, vips *vipFilter) pipeline.Reason {
	hi, lo := binary.BigEndian.Uint64(ip[8:]), binary.BigEndian.Uint64(ip[16:])
	switch {
	case hi>>56 == 0xff:
		return reasonMartianMulticast
	case hi>>54 == 0xfe80>>6:
		return reasonMartianLinkLocal
	case hi != 0:
	case lo == 0:
		return reasonMartianThisNet
	case lo == 1:
		return reasonMartianLoopback
	case lo>>32 == 0xffff, lo>>32 == 0:
		return reasonMartianMapped
	}
	if hi == binary.BigEndian.Uint64(ip[24:]) && lo == binary.BigEndian.Uint64(ip[32:]) {
		return reasonMartianLand
	}
	if vips.has(hi, lo) {
		return reasonMartianVIP
	}
	return pipeline.ReasonNone
}

// Fragment kinds found by walkIPv6.
const (
	notFragment = iota
	firstFragment
	laterFragment
)

// walkIPv6 follows the extension header chain of the IPv6 packet b, whose
// next header nh starts at b[off:]. It returns the upper-layer protocol and
// the offset of its header, whether the packet is a fragment, and the
// offset fh of its Fragment header when it is.
//
// A first fragment (offset 0, M set) carries the whole header chain (RFC
// 7112), so the walk goes on through the headers after its Fragment
// header (Destination Options, AH) to the upper-layer header, as for an
// unfragmented packet. A later fragment carries no more headers: the walk
// stops there, returning the Fragment header's Next Header and the start
// of the fragment's payload. An atomic fragment (offset 0, M clear) is a
// whole datagram and is walked through as unfragmented (RFC 6946).
//
// ESP and No Next Header end the walk like an upper-layer protocol. Other
// headers in extension header format (Mobility, HIP, Shim6) are rare at a
// VIP and also end it, as an upper-layer protocol without ports.
func walkIPv6(b []byte, nh uint8, off int) (proto uint8, l4, frag, fh int, r pipeline.Reason) {
	for n := 0; ; n++ {
		switch nh {
		case protoHopByHop, protoRouting, protoDestOpts, protoFragment, protoAH:
		default:
			return nh, off, frag, fh, 0
		}
		if n == maxExtHeaders {
			return 0, 0, 0, 0, reasonTooManyExt
		}
		// Every extension header is at least 8 bytes long.
		if len(b) < off+8 {
			return 0, 0, 0, 0, reasonTruncatedExt
		}
		next := b[off]
		var hlen int
		switch nh {
		case protoFragment:
			fo := be16(b[off+2:]) // offset<<3 | res(2) | M
			if fo>>3 != 0 {
				return next, off + 8, laterFragment, off, 0
			}
			if fo&1 != 0 && frag == notFragment {
				frag, fh = firstFragment, off
			}
			hlen = 8
		case protoAH:
			hlen = (int(b[off+1]) + 2) * 4 // RFC 4302: in 4-byte units, minus 2
		default:
			hlen = (int(b[off+1]) + 1) * 8 // in 8-byte units, not counting the first 8
		}
		if len(b) < off+hlen {
			return 0, 0, 0, 0, reasonTruncatedExt
		}
		nh = next
		off += hlen
	}
}

// transport reads the ports of the upper-layer header l4 (from the first
// byte of the header to the end of the datagram) into f, whose Proto and
// Family are set. Only the fixed header that carries the ports is checked
// for length: the balancer reads nothing else of it.
func transport(f *pipeline.Flow, l4 []byte) (int, pipeline.Reason) {
	switch f.Proto {
	case protoTCP:
		if len(l4) < 20 {
			return 0, reasonTruncatedL4
		}
		f.SrcPort, f.DstPort = be16(l4), be16(l4[2:])
		return classTCP, 0
	case protoUDP:
		if len(l4) < 8 {
			return 0, reasonTruncatedL4
		}
		f.SrcPort, f.DstPort = be16(l4), be16(l4[2:])
		return classUDP, 0
	case protoSCTP:
		if len(l4) < 12 { // RFC 9260 common header
			return 0, reasonTruncatedL4
		}
		f.SrcPort, f.DstPort = be16(l4), be16(l4[2:])
		return classSCTP, 0
	case protoICMP:
		if f.Family == 4 {
			return parseICMP(f, l4)
		}
	case protoICMPv6:
		if f.Family == 6 {
			return parseICMP(f, l4)
		}
	}
	return classOther, 0
}

// ICMP message kinds.
const (
	icmpOther = iota
	icmpEcho
	icmpError
)

// icmpProto is the ICMP protocol number of an IP family.
func icmpProto(family uint8) uint8 {
	if family == 4 {
		return protoICMP
	}
	return protoICMPv6
}

// icmpKind classifies an ICMP (family 4) or ICMPv6 (family 6) type.
func icmpKind(family, typ uint8) int {
	if family == 4 {
		switch typ {
		case 0, 8: // echo reply, echo request
			return icmpEcho
		case 3, 11, 12: // destination unreachable (incl. fragmentation needed), time exceeded, parameter problem
			return icmpError
		}
		return icmpOther
	}
	switch typ {
	case 128, 129: // echo request, echo reply
		return icmpEcho
	case 1, 2, 3, 4: // destination unreachable, packet too big, time exceeded, parameter problem
		return icmpError
	}
	return icmpOther
}

// parseICMP keys echo requests and replies on their identifier, written to
// both ports so that the key is the same in either direction (and after an
// ICMP error's reversal), and ICMP errors on the flow they quote. Other
// informational messages are keyed on the 3-tuple.
func parseICMP(f *pipeline.Flow, l4 []byte) (int, pipeline.Reason) {
	if len(l4) < 8 { // type, code, checksum, 4 bytes of rest-of-header
		return 0, reasonTruncatedL4
	}
	switch icmpKind(f.Family, l4[0]) {
	case icmpEcho:
		id := be16(l4[4:])
		f.SrcPort, f.DstPort = id, id
	case icmpError:
		return parseICMPError(f, l4[8:])
	}
	return classICMP, 0
}

// parseICMPError replaces f's addresses, ports and protocol with those of
// the packet quoted in an ICMP error (q, from the quoted IP header to the
// end of the message), reversed: the quote is a packet that went from the
// VIP towards a client, and the error must follow the client's flow.
//
// The quote is truncated by design (RFC 792 keeps the IP header and 8 bytes
// of payload), so its total length is not checked; what is read must be
// there. A quoted non-first fragment has no ports and is keyed on the
// 3-tuple like the fragment itself; a quoted first fragment is keyed on its
// ports, like the unfragmented client packets it answers.
func parseICMPError(f *pipeline.Flow, q []byte) (int, pipeline.Reason) {
	var (
		proto    uint8
		src, dst [16]byte
		l4       []byte
		frag     bool
	)
	// The quoted packet must be of the error's own family.
	if f.Family == 4 {
		if len(q) < 20 || q[0]>>4 != 4 {
			return 0, reasonBadICMPInner
		}
		ihl := int(q[0]&0x0f) << 2
		if ihl < 20 || len(q) < ihl {
			return 0, reasonBadICMPInner
		}
		proto = q[9]
		setMapped(&src, q[12:16])
		setMapped(&dst, q[16:20])
		frag = be16(q[6:])&0x1fff != 0
		l4 = q[ihl:]
	} else {
		if len(q) < 40 || q[0]>>4 != 6 {
			return 0, reasonBadICMPInner
		}
		p, off, fk, _, r := walkIPv6(q, q[6], 40)
		if r != pipeline.ReasonNone {
			return 0, reasonBadICMPInner
		}
		proto = p
		copy(src[:], q[8:24])
		copy(dst[:], q[24:40])
		frag = fk == laterFragment
		l4 = q[off:]
	}

	// The quote must be a packet the error's destination sent: otherwise
	// a client could quote another VIP's reply and steer the error into
	// that VIP's pool. After the reversal below the flow's destination is
	// the quote's source, so MaglevSelect and ConnTrack then find only the
	// addressed VIP's flows.
	if src != f.Dst {
		return 0, reasonICMPForeign
	}
	var sport, dport uint16
	if !frag {
		switch proto {
		case protoTCP, protoUDP, protoSCTP:
			if len(l4) < 4 {
				return 0, reasonBadICMPInner
			}
			sport, dport = be16(l4), be16(l4[2:])
		case protoICMP, protoICMPv6:
			// A quoted echo is keyed like parseICMP keys it; errors
			// about ICMP errors are not sent (RFC 1122 §3.2.2).
			if proto == icmpProto(f.Family) && len(l4) >= 8 && icmpKind(f.Family, l4[0]) == icmpEcho {
				sport = be16(l4[4:])
				dport = sport
			}
		}
	}
	f.Src, f.Dst = dst, src
	f.SrcPort, f.DstPort = dport, sport
	f.Proto = proto
	f.Flags = pipeline.FlowICMPError
	if frag {
		f.Flags |= pipeline.FlowFragment
	}
	return classICMPError, 0
}

var (
	_ pipeline.Pusher        = (*Parse5Tuple)(nil)
	_ pipeline.BatchPusher   = (*Parse5Tuple)(nil)
	_ pipeline.Prefetcher    = (*Parse5Tuple)(nil)
	_ pipeline.FlowHasher    = (*Parse5Tuple)(nil)
	_ pipeline.Provisioner   = (*Parse5Tuple)(nil)
	_ pipeline.BatchStarter  = (*Parse5Tuple)(nil)
	_ pipeline.BatchEnder    = (*Parse5Tuple)(nil)
	_ pipeline.StatsReporter = (*Parse5Tuple)(nil)
	_ pipeline.Validator     = (*Parse5Tuple)(nil)
	_ pipeline.Cleaner       = (*Parse5Tuple)(nil)
)
