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

// translator is what NAT and FullNAT share: the flow table their replies
// are tracked in, the interface's reply steering, the backends' ports, the
// snapshot and the counters. Its configuration is passed to provision,
// not decoded into it: each element declares its own attributes.
type translator struct {
	view   *snapshot.View
	ct     pipeline.ReplyTracker
	steer  pipeline.ReplySteering // worker 0's, nil without interface
	name   string
	log    *slog.Logger
	metric string // the counters' name prefix: xlb_nat, xlb_fullnat
	pooled bool   // a source pool steered (FullNAT)
	cfg    map[string]int
	// workers is the graph's; multi lets it be more than one (NAT,
	// whose replies are translated statelessly on any worker).
	workers int
	multi   bool
	// adopted, when set, derives the element's own state from a new
	// snapshot, after the ports.
	adopted func(*snapshot.Snapshot)

	// Owned by the worker goroutine.
	snap   *snapshot.Snapshot
	key    flowhash.Key
	ports  []uint16 // by real ID: the backend's port, 0 to keep the VIP's
	warned string
	local  [2]counts // forward, reply
	// reply is the reply flow handed to the tracker: an interface call's
	// argument would escape, and allocate, if it were on the stack.
	reply pipeline.Flow
	// hashes are a batch's reply hashes, for Prefetch.
	hashes [pipeline.MaxBatch]uint64

	pub [2]struct{ pkts, bytes atomic.Uint64 }
}

type counts struct{ pkts, bytes uint64 }

// validatePorts checks a port mapping and the ConnTrack's name.
func validatePorts(ports map[string]int, ct string, kind string) error {
	for b, p := range ports {
		if p < 1 || p > 65535 {
			return &pipeline.AttrError{Attr: "ports", Msg: fmt.Sprintf("must give backend %q a port from 1 to 65535, not %d", b, p)}
		}
	}
	if ct == "" {
		return &pipeline.AttrError{Attr: "conntrack", Msg: "must name the ConnTrack element before " + kind}
	}
	return nil
}

// oneWorker is the error of a translator that runs one worker only (not
// multi) in a graph of workers, 0 when the daemon picks them.
func oneWorker(kind string, workers int) error {
	graph := "xlbd picks one per RX queue when workers is 0"
	if workers > 0 {
		graph = fmt.Sprintf("this graph has %d", workers)
	}
	return fmt.Errorf("%s runs with one worker (%s): a reply arrives on the RX queue of its own hash, whose worker's ConnTrack does not hold its flow; set workers = 1 (and the interface's combined queues to 1, ethtool -L)", kind, graph)
}

// provision finds the worker's ConnTrack, which must be provisioned before
// (declared before the element), and worker 0 the interface's reply
// steering.
func (t *translator) provision(ctx *pipeline.Context, kind, metric string, ports map[string]int, ctName, ifname string) error {
	// A reply is received on the RX queue the NIC's hash of its own
	// 5-tuple picks, not its flow's, and each worker's ConnTrack is its
	// own: with several workers most replies would miss their flow's
	// entry. NAT translates those from their backend endpoint alone
	// (multi); FullNAT's need their flow's entry, which holds the client.
	if ctx.Workers > 1 && !t.multi {
		return oneWorker(kind, ctx.Workers)
	}
	v, err := snapshot.ViewFromContext(ctx)
	if err != nil {
		return err
	}
	t.view, t.name, t.metric, t.cfg, t.workers = v, ctx.Name, metric, ports, ctx.Workers
	slot := ctx.Local(pipeline.ReplyTrackerKey{Name: ctName}, func() any { return &pipeline.ReplyTrackerSlot{} }).(*pipeline.ReplyTrackerSlot)
	if slot.Tracker == nil {
		return &pipeline.AttrError{Attr: "conntrack", Msg: fmt.Sprintf("names no ConnTrack declared before this element (%q): %s records each flow's reply in its table; declare the ConnTrack first", ctName, kind)}
	}
	t.ct = slot.Tracker
	t.ct.ExpectReplies()
	if ctx.Worker == 0 {
		t.log = ctx.Logger
		if ifname != "" {
			st, _ := ctx.Shared(pipeline.ReplySteerKey{Interface: ifname}, func() any { return nil }).(pipeline.ReplySteering)
			if st == nil {
				return &pipeline.AttrError{Attr: "interface", Msg: fmt.Sprintf("has no RxXDP (%s): %s has the interface's XDP program hand the graph the backends' replies; declare an RxXDP on it", ifname, kind)}
			}
			t.steer = st
		}
	}
	if st, err := snapshot.FromContext(ctx); err == nil {
		if s := st.Load(); s != nil {
			t.adopt(s)
		}
	}
	return nil
}

// Cleanup withdraws the steered endpoints (and pool); it works after a
// partial Provision.
func (t *translator) Cleanup() error {
	if t.steer != nil {
		t.steer.SteerReplies(t.name, nil)
		if ps, ok := t.steer.(pipeline.PoolSteering); ok && t.pooled {
			ps.SteerPool(t.name, nil)
		}
		t.steer = nil
	}
	return nil
}

// StartBatch takes the batch's snapshot and, when it is a new one, adopts
// it.
func (t *translator) StartBatch(int64) {
	t.snap = t.view.Snapshot()
	if t.view.Changed() {
		t.adopt(t.snap)
	}
}

// adopt maps each real ID of s to its backend's port and the hash seed to
// its key; worker 0 also steers the reals' endpoints. It allocates only
// when the snapshot changed, never per packet.
func (t *translator) adopt(s *snapshot.Snapshot) {
	t.key = flowhash.NewKey(s.HashSeed)
	ports := make([]uint16, s.Reals.Len())
	var eps []pipeline.ServiceEndpoint
	var anyPort []string
	for _, r := range s.Reals.All() {
		if r.Epoch == 0 {
			continue
		}
		ports[r.ID] = uint16(t.cfg[r.Backend])
		if t.steer == nil {
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
	t.ports = ports
	if t.adopted != nil {
		t.adopted(s)
	}
	if t.steer == nil {
		return
	}
	t.steer.SteerReplies(t.name, eps)
	slices.Sort(anyPort)
	list := fmt.Sprint(slices.Compact(anyPort))
	if len(anyPort) > 0 && list != t.warned {
		t.log.Error("VIPs of every port: their backends' replies cannot be told from the backends' own traffic, so they are not steered to the graph; give the VIPs ports, or the backends a port in ports", "vips", list)
	}
	t.warned = list
}

// EndBatch publishes the batch's counters and lets go of its snapshot.
func (t *translator) EndBatch() {
	for d := range t.local {
		if l := &t.local[d]; l.pkts != 0 {
			t.pub[d].pkts.Add(l.pkts)
			t.pub[d].bytes.Add(l.bytes)
			*l = counts{}
		}
	}
	t.snap = nil
}

// Stats reports the packets translated, by direction. Drops are counted
// where they are discarded, by reason.
func (t *translator) Stats(emit func(pipeline.Metric)) {
	for d, dir := range [2]string{"forward", "reply"} {
		l := []pipeline.Label{{Name: "direction", Value: dir}}
		emit(pipeline.Metric{Name: t.metric + "_packets_total", Help: "Packets translated: to a backend (forward) or back to the client (reply).", Labels: l, Value: t.pub[d].pkts.Load()})
		emit(pipeline.Metric{Name: t.metric + "_bytes_total", Help: "Bytes of frames translated, by direction.", Labels: l, Value: t.pub[d].bytes.Load()})
	}
}

// count counts a packet translated in direction dir (0 forward, 1 reply).
func (t *translator) count(dir int, n int) {
	t.local[dir].pkts++
	t.local[dir].bytes += uint64(n)
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

// fixTransport applies diff, the change of the addresses and ports its
// checksum covers, to the transport checksum of l4 (TCP, UDP, ICMPv6).
// A checksum that is not in l4 (a first fragment cut before it) is left
// alone, as is protocol 58 over IPv4, which is not ICMPv6: its checksum
// covers no pseudo-header.
func fixTransport(l4 []byte, proto uint8, v4 bool, diff uint32) {
	switch {
	case proto == protoTCP && len(l4) >= 18:
		l4[16], l4[17] = split(csum.Update(join(l4[16:]), diff))
	case proto == protoUDP && len(l4) >= 8:
		// An IPv4 UDP checksum of 0 means none (RFC 768); a computed 0
		// is sent as its other form, 0xffff.
		if c := join(l4[6:]); c != 0 || !v4 {
			c = csum.Update(c, diff)
			if c == 0 {
				c = 0xffff
			}
			l4[6], l4[7] = split(c)
		}
	case proto == protoICMPv6 && !v4 && len(l4) >= 4:
		l4[2], l4[3] = split(csum.Update(join(l4[2:]), diff))
	}
}

// addrOffsets are the offsets of the source and destination addresses in
// an IP header of the family.
func addrOffsets(v4 bool) (src, dst int) {
	if v4 {
		return 12, 16
	}
	return 8, 24
}

// addrBytes is a's 4 or 16 bytes, by v4, of a 16-byte form.
func addrBytes(a *[16]byte, v4 bool) []byte {
	if v4 {
		return a[12:]
	}
	return a[:]
}

func join(b []byte) uint16        { return uint16(b[0])<<8 | uint16(b[1]) }
func split(v uint16) (byte, byte) { return byte(v >> 8), byte(v) }

// sourceAddrs parses a source pool: IP addresses, at most 256 (an index
// is a byte in the flow table).
func sourceAddrs(pool []string) ([]netip.Addr, error) {
	if len(pool) > 256 {
		return nil, &pipeline.AttrError{Attr: "source_pool", Msg: fmt.Sprintf("holds %d addresses, more than 256", len(pool))}
	}
	var out []netip.Addr
	for _, s := range pool {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, &pipeline.AttrError{Attr: "source_pool", Msg: fmt.Sprintf("must hold IP addresses, not %q", s)}
		}
		if slices.Contains(out, a.Unmap()) {
			return nil, &pipeline.AttrError{Attr: "source_pool", Msg: fmt.Sprintf("names %s twice", a)}
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}
