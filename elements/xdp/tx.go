package xdp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/xlbproject/xlb/elements/xdp/internal/xsk"
	"github.com/xlbproject/xlb/pipeline"
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:   "TxXDP",
		Doc:    "Transmits packets to the next hop through the AF_XDP socket of the worker's RxXDP on the same interface, in place.",
		Inputs: []string{"in"},
		New:    func() pipeline.Element { return &TxXDP{} },
	})
}

// Drop reasons. TxXDP is a sink: Push returns pipeline.Drop for a packet
// it cannot send, and the engine counts it. Packets it queued and then
// lost (the TX ring full, a frame refused) are counted through its
// pipeline.DropCounter.
var (
	reasonNoNeighbor = pipeline.NewReason("xdp.no_neighbor")
	reasonRingFull   = pipeline.NewReason("xdp.tx_ring_full")
	reasonRunt       = pipeline.NewReason("xdp.runt")
	reasonNoFrame    = pipeline.NewReason("xdp.no_frame")
	reasonTooBig     = pipeline.NewReason("xdp.too_big")
	reasonBadFrame   = pipeline.NewReason("xdp.bad_frame")
)

// TxXDP is the AF_XDP sink of one worker. Exported fields are its HCL
// configuration.
type TxXDP struct {
	Interface string `hcl:"interface" doc:"the interface to send on: that of an RxXDP in the same pipeline, whose frames are sent in place"`
	Gateway   string `hcl:"gateway,optional" doc:"the IPv4 next hop of packets whose outer header is IPv4, whose MAC address is resolved from the kernel's neighbor table; alone, it takes IPv6 packets too; with neither gateway, the destination MAC address already in the frame is kept (written by FragRedirect); a frame DirectRoute sent to a backend on the link keeps its destination in any case"`
	Gateway6  string `hcl:"gateway6,optional" doc:"the IPv6 next hop of packets whose outer header is IPv6, where it is another router than gateway's; alone, it takes IPv4 packets too"`

	// Owned by the worker; valid after Provision.
	ifc   *iface
	gw    netip.Addr
	res   *resolver
	rx    *RxXDP
	sock  *xsk.Socket
	owner pipeline.FrameOwner // the RxXDP whose frames are sent in place
	src   [6]byte
	dst   [6]byte // loaded in StartBatch
	dstOK bool
	drops *pipeline.DropCounter

	// With gateway6 beside gateway, res6 follows gw6, the next hop of
	// IPv6 packets; otherwise res (gw) takes every packet.
	gw6    netip.Addr
	res6   *resolver
	dst6   [6]byte
	dst6OK bool

	local struct {
		sent, copied, badFrames uint64
	}
	pub struct {
		sent, copied, ringFullEvents atomic.Uint64
	}
}

// Validate checks the configuration.
func (t *TxXDP) Validate() error {
	if t.Interface == "" {
		return &pipeline.AttrError{Attr: "interface", Msg: "must name the interface of an RxXDP"}
	}
	if a, err := netip.ParseAddr(t.Gateway); t.Gateway != "" && (err != nil || !a.Unmap().Is4()) {
		msg := "must be the IPv4 next hop's address, such as \"10.0.0.1\""
		if err == nil {
			msg += "; an IPv6 next hop goes in gateway6"
		}
		return &pipeline.AttrError{Attr: "gateway", Msg: msg}
	}
	if a, err := netip.ParseAddr(t.Gateway6); t.Gateway6 != "" && (err != nil || !a.Is6() || a.Is4In6()) {
		msg := "must be the IPv6 next hop's address, such as \"2001:db8::1\""
		if err == nil {
			msg += "; an IPv4 next hop goes in gateway"
		}
		return &pipeline.AttrError{Attr: "gateway6", Msg: msg}
	}
	return nil
}

// Provision finds this worker's RxXDP on the interface (the engine
// provisions sources first) and starts following the gateway's MAC address.
func (t *TxXDP) Provision(ctx *pipeline.Context) error {
	if err := t.Validate(); err != nil {
		return err
	}
	// One gateway takes both families, as one router does; two split
	// them by the outer header's family.
	switch {
	case t.Gateway != "":
		t.gw = netip.MustParseAddr(t.Gateway).Unmap()
		if t.Gateway6 != "" {
			t.gw6 = netip.MustParseAddr(t.Gateway6)
		}
	case t.Gateway6 != "":
		t.gw = netip.MustParseAddr(t.Gateway6)
	}
	v, _ := ctx.Shared(ifaceKey{t.Interface}, func() any { return &iface{name: t.Interface} }).(*iface)
	v.mu.Lock()
	rx := v.rx[ctx.Worker]
	v.mu.Unlock()
	if rx == nil {
		return fmt.Errorf("no RxXDP on %s: TxXDP sends through the socket of an RxXDP on the same interface; declare one", t.Interface)
	}
	t.ifc, t.rx, t.sock, t.owner = v, rx, rx.sock, rx.owner
	t.drops = ctx.DropCounter()
	copy(t.src[:], v.mac)
	if t.gw.IsValid() {
		var err error
		if t.res, err = v.follow(t.gw, ctx.Logger); err != nil {
			return fmt.Errorf("gateway %s: %w", t.gw, err)
		}
	}
	if t.gw6.IsValid() {
		var err error
		if t.res6, err = v.follow(t.gw6, ctx.Logger); err != nil {
			return fmt.Errorf("gateway6 %s: %w", t.gw6, err)
		}
	}
	return nil
}

// StartBatch loads the next hop's MAC address for the batch.
func (t *TxXDP) StartBatch(int64) {
	if t.res != nil {
		t.dst, t.dstOK = t.res.load()
	}
	if t.res6 != nil {
		t.dst6, t.dst6OK = t.res6.load()
	}
}

// outer6 reports whether the frame d (at least an Ethernet header) carries
// IPv6, under up to two VLAN tags: the outer header, after encapsulation.
func outer6(d []byte) bool {
	et := binary.BigEndian.Uint16(d[12:])
	for off := 14; (et == 0x8100 || et == 0x88a8) && off+4 <= len(d) && off < 22; off += 4 {
		et = binary.BigEndian.Uint16(d[off+2:])
	}
	return et == 0x86dd
}

// Push rewrites the Ethernet addresses (the source only, without a
// gateway or for a frame marked OnLink) and queues the packet: in place
// when its frame is in this worker's UMEM, else copied into a free frame.
func (t *TxXDP) Push(in int, p *pipeline.Packet) int {
	if t.PushBatch(in, []*pipeline.Packet{p}, nil) == 1 {
		return pipeline.Consumed
	}
	data := p.Data()
	if len(data) < 14 {
		p.Reason = reasonRunt
		return pipeline.Drop
	}
	dst, ok := t.next(p, data)
	if !ok {
		p.Reason = reasonNoNeighbor
		return pipeline.Drop
	}
	t.rewrite(data, dst)
	if xsk.Headroom+len(data) > t.sock.FrameSize() {
		p.Reason = reasonTooBig
		return pipeline.Drop
	}
	base, ok := t.sock.Alloc()
	if !ok {
		p.Reason = reasonNoFrame
		return pipeline.Drop
	}
	n := copy(t.sock.Frame(base)[xsk.Headroom:], data)
	p.Recycle()
	t.sock.Queue(base+xsk.Headroom, n)
	t.local.sent++
	t.local.copied++
	return pipeline.Consumed
}

// PushBatch is Push for the common case, a frame of this worker's UMEM
// with its next hop known: it rewrites the Ethernet addresses and queues
// the frame in place, and stops at anything else (a runt, no neighbour,
// a frame to copy), which Push decides.
func (t *TxXDP) PushBatch(_ int, pkts []*pipeline.Packet, _ []uint8) int {
	owner := t.owner
	for i, p := range pkts {
		data := p.Data()
		if len(data) < 14 || p.Owner != owner {
			return i
		}
		dst, ok := t.next(p, data)
		if !ok {
			return i
		}
		t.rewrite(data, dst)
		_, start, end := p.Frame()
		// The descriptor is the frame's base plus where the data now
		// starts: an encapsulation moved it back into the headroom.
		if !t.sock.Queue(p.Handle+uint64(start), end-start) {
			// Queue recycled the frame (or it was never ours): the
			// packet is consumed and then lost, counted in EndBatch.
			t.local.badFrames++
			continue
		}
		t.local.sent++
	}
	return len(pkts)
}

// next returns the destination MAC address of the frame data of p, a
// frame of at least an Ethernet header: the next hop's, for its outer
// header's family, or nil with true when the frame keeps its own (no
// gateway, or marked OnLink); false when the next hop is unresolved.
func (t *TxXDP) next(p *pipeline.Packet, data []byte) (*[6]byte, bool) {
	if t.res == nil || p.OnLink {
		return nil, true
	}
	if t.res6 != nil && outer6(data) {
		return &t.dst6, t.dst6OK
	}
	return &t.dst, t.dstOK
}

// rewrite writes the Ethernet addresses of the frame data: dst, unless
// nil (the frame keeps its own), and the interface's.
func (t *TxXDP) rewrite(data []byte, dst *[6]byte) {
	if dst != nil {
		copy(data[0:6], dst[:])
	}
	copy(data[6:12], t.src[:])
}

// EndBatch puts the batch on the TX ring, wakes the kernel and reaps the
// completions; what the ring has no room for is dropped and counted.
func (t *TxXDP) EndBatch() {
	t.sock.Flush()
	// Counted from the socket, which also drops when a Queue has to
	// flush a full queue early, against what the worker's RxXDP holds as
	// counted: two TxXDPs on one socket count each drop once.
	if dropped := t.sock.C.TxRingFull - t.rx.txRingFullCounted; dropped > 0 {
		t.rx.txRingFullCounted = t.sock.C.TxRingFull
		t.local.sent -= min(t.local.sent, dropped)
		t.drops.Add(reasonRingFull, dropped)
		t.pub.ringFullEvents.Add(1)
	}
	if t.local.badFrames > 0 {
		t.drops.Add(reasonBadFrame, t.local.badFrames)
		t.local.badFrames = 0
	}
	if t.local.sent > 0 {
		t.pub.sent.Add(t.local.sent)
		t.local.sent = 0
	}
	if t.local.copied > 0 {
		t.pub.copied.Add(t.local.copied)
		t.local.copied = 0
	}
}

// Stats reports packets sent and the next hop; the engine reports drops.
func (t *TxXDP) Stats(emit func(pipeline.Metric)) {
	l := []pipeline.Label{{Name: "interface", Value: t.Interface}}
	emit(pipeline.Metric{Name: "xlb_xdp_tx_packets_total", Help: "Packets put on the AF_XDP TX ring.", Labels: l, Value: t.pub.sent.Load()})
	emit(pipeline.Metric{Name: "xlb_xdp_tx_copied_total", Help: "Packets from outside the worker's UMEM copied into a frame to be sent.", Labels: l, Value: t.pub.copied.Load()})
	emit(pipeline.Metric{Name: "xlb_xdp_tx_ring_full_total", Help: "Batches that found the TX ring full.", Labels: l, Value: t.pub.ringFullEvents.Load()})
	for _, n := range [...]struct {
		res *resolver
		gw  netip.Addr
	}{{t.res, t.gw}, {t.res6, t.gw6}} {
		if n.res == nil {
			continue
		}
		resolved := uint64(0)
		if n.res.mac.Load()&macValid != 0 {
			resolved = 1
		}
		gl := append(l[:1:1], pipeline.Label{Name: "gateway", Value: n.gw.String()})
		emit(pipeline.Metric{Name: "xlb_xdp_neighbor_resolved", Help: "1 while the next hop's MAC address is known.", Labels: gl, Gauge: true, Value: resolved})
		emit(pipeline.Metric{Name: "xlb_xdp_neighbor_changes_total", Help: "Changes of the next hop's MAC address or state.", Labels: gl, Value: n.res.changes.Load()})
	}
}

// Cleanup stops following the gateway once no worker needs it. The
// socket belongs to the RxXDP.
func (t *TxXDP) Cleanup() error {
	if t.res == nil && t.res6 == nil {
		return nil
	}
	for _, r := range [...]*resolver{t.res, t.res6} {
		if r != nil {
			t.ifc.unfollow(r)
		}
	}
	t.res, t.res6, t.sock = nil, nil, nil
	return nil
}

var (
	_ pipeline.Pusher        = (*TxXDP)(nil)
	_ pipeline.BatchPusher   = (*TxXDP)(nil)
	_ pipeline.Validator     = (*TxXDP)(nil)
	_ pipeline.Provisioner   = (*TxXDP)(nil)
	_ pipeline.Cleaner       = (*TxXDP)(nil)
	_ pipeline.BatchStarter  = (*TxXDP)(nil)
	_ pipeline.BatchEnder    = (*TxXDP)(nil)
	_ pipeline.StatsReporter = (*TxXDP)(nil)
)
