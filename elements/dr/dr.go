// Package dr implements DirectRoute, the forwarding of LVS's direct routing
// (LVS/DR, "VS/DR" in Zhang's "Linux Virtual Server for Scalable Network
// Services", Ottawa Linux Symposium 2000): the load balancer and the
// backends share a link, and a packet reaches its backend with its IP
// header untouched, only its Ethernet destination changed to the backend's
// MAC address. The backend holds the VIP on a local interface (loopback,
// ARP for it suppressed with arp_ignore=1 and arp_announce=2) and answers
// the client directly, as a backend behind GREEncap does; nothing is
// prepended, so there is no MTU cost and no ICMP to send.
//
// DirectRoute takes GREEncap's place in the default graph by its type word:
// the same ports (icmp stays empty) and the same attributes (source4 and
// source6 are accepted and unused, DirectRoute writing no IP header). Like
// LVS, and unlike GREEncap, it is not a router hop: the TTL is kept.
//
// A backend's MAC address is followed in the kernel's neighbour table
// through the pipeline.Neighbors the interface's RxXDP publishes (the same
// follower TxXDP uses for its gateway), or given statically in macs.
package dr

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// Output ports: GREEncap's, so that one replaces the other in a graph.
const (
	portOut = 0
	portBad = 1
)

const ethHdrLen = 14

var (
	reasonNoBackend = pipeline.NewReason("dr.nobackend")
	// The backend's MAC address is not known (yet): its resolution is
	// under way, asked of the kernel by the neighbour follower.
	reasonUnresolved = pipeline.NewReason("dr.unresolved")
	// The backend is not on a directly connected segment of the interface:
	// no MAC address of it can be reached over the link.
	reasonNotConnected = pipeline.NewReason("dr.not_connected")
	reasonRunt         = pipeline.NewReason("dr.runt")
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "DirectRoute",
		Doc:     "Sends each packet unchanged to its chosen backend on the link (LVS direct routing): the destination MAC address becomes the backend's, followed in the neighbour table.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "bad", "icmp"},
		New:     func() pipeline.Element { return &DirectRoute{} },
	})
}

// DirectRoute is the element. The exported fields are its configuration.
type DirectRoute struct {
	Interface string            `hcl:"interface,optional" doc:"the interface shared with the backends (that of an RxXDP): its MAC address is the source, its connected prefixes bound the backends, and the backends' MAC addresses are followed on it; needed unless macs has every backend"`
	MACs      map[string]string `hcl:"macs,optional" doc:"static MAC addresses by backend address, used instead of the neighbour table's"`
	Source4   string            `hcl:"source4,optional" doc:"unused (no IP header is written); accepted so that a GREEncap block becomes a DirectRoute block by its type word"`
	Source6   string            `hcl:"source6,optional" doc:"unused, as source4"`

	static map[netip.Addr][6]byte
	src    [6]byte
	hasSrc bool
	conn   []netip.Prefix // the interface's connected prefixes; nil without interface
	view   *snapshot.View
	shared *followers // nil without interface
	log    *slog.Logger

	// Owned by the worker goroutine.
	snap    *snapshot.Snapshot
	targets []*target // by real ID, from the last snapshot adopted
	warned  string
	local   counts

	pub struct{ pkts, bytes atomic.Uint64 }
}

type counts struct{ pkts, bytes uint64 }

// target is one backend address as the workers send to it.
type target struct {
	mac       [6]byte // static
	static    bool
	connected bool
	// nb is set once the follower has started (Follow waits for a first
	// resolution, so it runs off the worker's goroutine).
	nb atomic.Pointer[pipeline.Neighbor]
}

// followers holds the targets of one DirectRoute instance, shared by its
// workers, so that each backend address is followed once.
type followers struct {
	mu      sync.Mutex
	nbs     pipeline.Neighbors
	log     *slog.Logger
	m       map[netip.Addr]*target
	users   int
	closed  bool
	pending sync.WaitGroup
}

type followersKey struct{ name string }

// Validate checks the static addresses.
func (e *DirectRoute) Validate() error {
	_, err := e.parse()
	return err
}

func (e *DirectRoute) parse() (map[netip.Addr][6]byte, error) {
	m := make(map[netip.Addr][6]byte, len(e.MACs))
	for a, mac := range e.MACs {
		addr, err := netip.ParseAddr(a)
		if err != nil || addr.Zone() != "" {
			return nil, &pipeline.AttrError{Attr: "macs", Msg: fmt.Sprintf("must be keyed by backend IP addresses such as \"10.0.0.21\", not %q", a)}
		}
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 {
			return nil, &pipeline.AttrError{Attr: "macs", Msg: fmt.Sprintf("must give %s an Ethernet address such as \"02:00:00:00:00:01\", not %q", a, mac)}
		}
		m[addr.Unmap()] = [6]byte(hw)
	}
	for _, a := range []struct{ attr, v string }{{"source4", e.Source4}, {"source6", e.Source6}} {
		if _, err := netip.ParseAddr(a.v); a.v != "" && err != nil {
			return nil, &pipeline.AttrError{Attr: a.attr, Msg: "must be an IP address (it is unused by DirectRoute)"}
		}
	}
	return m, nil
}

// Provision reads the interface's MAC address and connected prefixes and
// joins the instance's shared followers (sources are provisioned first, so
// the interface's RxXDP has published its neighbour table).
func (e *DirectRoute) Provision(ctx *pipeline.Context) error {
	m, err := e.parse()
	if err != nil {
		return err
	}
	e.static = m
	if e.view, err = snapshot.ViewFromContext(ctx); err != nil {
		return err
	}
	if ctx.Worker == 0 {
		e.log = ctx.Logger
	}
	if e.Interface == "" {
		return nil
	}
	ifi, conn, err := e.readInterface()
	if err != nil {
		return err
	}
	if len(ifi.HardwareAddr) == 6 {
		e.src, e.hasSrc = [6]byte(ifi.HardwareAddr), true
	}
	e.conn = conn
	nbs, _ := ctx.Shared(pipeline.NeighborKey{Interface: e.Interface}, func() any { return nil }).(pipeline.Neighbors)
	if nbs == nil {
		return fmt.Errorf("no RxXDP on %s: DirectRoute follows the backends' MAC addresses on the interface of an RxXDP; declare one, or give every backend's MAC address in macs", e.Interface)
	}
	f := ctx.Shared(followersKey{ctx.Name}, func() any {
		return &followers{nbs: nbs, log: ctx.Logger, m: map[netip.Addr]*target{}}
	}).(*followers)
	f.mu.Lock()
	f.users++
	f.mu.Unlock()
	e.shared = f
	// The snapshot already published is adopted now, so that a backend
	// off the segment is named at load and the backends' resolution
	// starts before the first packet; StartBatch adopts it again, cheaply.
	if st, err := snapshot.FromContext(ctx); err == nil {
		if s := st.Load(); s != nil {
			e.adopt(s)
		}
	}
	return nil
}

// readInterface reads the interface and its connected prefixes.
func (e *DirectRoute) readInterface() (*net.Interface, []netip.Prefix, error) {
	ifi, err := net.InterfaceByName(e.Interface)
	if err != nil {
		return nil, nil, &pipeline.AttrError{Attr: "interface", Msg: fmt.Sprintf("cannot be read (%v); name the interface the backends are on", err)}
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil, &pipeline.AttrError{Attr: "interface", Msg: fmt.Sprintf("addresses cannot be read: %v", err)}
	}
	return ifi, connected(addrs), nil
}

// BackendCheck refuses a backend off the interface's connected segments
// whose MAC address macs does not give, as adopt does with a snapshot, so
// that a load (xlbd validate, run, a reload) names it at its address.
// Without interface, or without an interface of that name on this host
// (Provision reports it), there is nothing to check.
func (e *DirectRoute) BackendCheck() func(netip.Addr) error {
	static, err := e.parse()
	if err != nil || e.Interface == "" {
		return nil
	}
	_, conn, err := e.readInterface()
	if err != nil {
		return nil
	}
	return func(a netip.Addr) error {
		a = a.Unmap()
		if _, ok := static[a]; ok || onLink(conn, a) {
			return nil
		}
		segs := make([]string, len(conn))
		for i, p := range conn {
			segs[i] = p.String()
		}
		return fmt.Errorf("is not on a directly connected segment of %s (%s): direct routing reaches only hosts on the link; put the backend on the segment, give its MAC address in macs, or reach it through GREEncap",
			e.Interface, cmp.Or(strings.Join(segs, ", "), "none"))
	}
}

// onLink reports whether a is on one of the segments conn.
func onLink(conn []netip.Prefix, a netip.Addr) bool {
	return slices.ContainsFunc(conn, func(p netip.Prefix) bool { return p.Contains(a) })
}

// connected returns the prefixes of an interface's addresses, those of its
// directly connected segments (a /32 or /128 has no one else on it).
func connected(addrs []net.Addr) []netip.Prefix {
	var ps []netip.Prefix
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		ones, bits := n.Mask.Size()
		if !ok || ones == bits {
			continue
		}
		if ip.Unmap().Is4() {
			ones -= bits - 32
		}
		ps = append(ps, netip.PrefixFrom(ip.Unmap(), ones).Masked())
	}
	return ps
}

// Cleanup stops following the backends after the instance's last worker;
// it works after a partial Provision.
func (e *DirectRoute) Cleanup() error {
	f := e.shared
	if f == nil {
		return nil
	}
	e.shared = nil
	f.mu.Lock()
	f.users--
	last := f.users == 0
	if last {
		f.closed = true
	}
	f.mu.Unlock()
	if !last {
		return nil
	}
	f.pending.Wait()
	for _, t := range f.m {
		if nb := t.nb.Load(); nb != nil {
			(*nb).Release()
		}
	}
	return nil
}

// get returns addr's target, starting to follow it on first use.
func (f *followers) get(addr netip.Addr) *target {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.m[addr]; t != nil {
		return t
	}
	t := &target{connected: true}
	f.m[addr] = t
	if f.closed {
		return t
	}
	f.pending.Add(1)
	go func() {
		defer f.pending.Done()
		nb, err := f.nbs.Follow(addr, &pipeline.Context{Logger: f.log})
		if err != nil {
			f.log.Error("following a backend's MAC address; its packets are dropped as dr.unresolved", "backend", addr, "err", err)
			return
		}
		t.nb.Store(&nb)
	}()
	return t
}

// StartBatch takes the batch's snapshot and, when it is a new one, adopts
// its reals.
func (e *DirectRoute) StartBatch(int64) {
	e.snap = e.view.Snapshot()
	if e.view.Changed() {
		e.adopt(e.snap)
	}
}

// adopt maps each real ID of s to its target, refusing (and naming, in
// worker 0's log) the backends off the interface's connected segments. It
// allocates only when the snapshot changed, never per packet.
func (e *DirectRoute) adopt(s *snapshot.Snapshot) {
	targets := make([]*target, s.Reals.Len())
	var refused []string
	for _, r := range s.Reals.All() {
		if r.Epoch == 0 {
			continue
		}
		targets[r.ID] = e.target(r.Addr.Unmap())
		if !targets[r.ID].connected {
			refused = append(refused, r.Backend+" "+r.Addr.String())
		}
	}
	e.targets = targets
	if e.log == nil {
		return
	}
	slices.Sort(refused)
	list := strings.Join(slices.Compact(refused), ", ")
	if list != e.warned && list != "" {
		e.log.Error("backends not on a directly connected segment of the interface are refused: direct routing reaches only hosts on the link; their packets are dropped as dr.not_connected", "interface", e.Interface, "connected", e.conn, "backends", list)
	}
	e.warned = list
}

func (e *DirectRoute) target(a netip.Addr) *target {
	if mac, ok := e.static[a]; ok {
		return &target{mac: mac, static: true, connected: true}
	}
	if e.shared == nil {
		return &target{connected: true} // unresolved for ever: no interface to follow it on
	}
	if !onLink(e.conn, a) {
		return &target{}
	}
	return e.shared.get(a)
}

// EndBatch publishes the batch's counters and lets go of its snapshot.
func (e *DirectRoute) EndBatch() {
	if e.local.pkts != 0 {
		e.pub.pkts.Add(e.local.pkts)
		e.pub.bytes.Add(e.local.bytes)
		e.local = counts{}
	}
	e.snap = nil
}

// Stats reports the packets sent. Drops are counted where they are
// discarded, by reason.
func (e *DirectRoute) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_dr_packets_total", Help: "Packets sent to their backend by direct routing.", Value: e.pub.pkts.Load()})
	emit(pipeline.Metric{Name: "xlb_dr_bytes_total", Help: "Bytes of frames sent to their backend by direct routing.", Value: e.pub.bytes.Load()})
}

// Push sets p's Ethernet addresses for its backend and marks it OnLink, so
// that the sink keeps the destination. Input: an Ethernet frame and
// p.Backend/p.Epoch naming a real. On bad, the packet is unchanged but for
// p.Reason.
func (e *DirectRoute) Push(_ int, p *pipeline.Packet) int {
	r := e.snap.Real(p.Backend, p.Epoch)
	if r == nil {
		p.Reason = reasonNoBackend
		return portBad
	}
	d := p.Data()
	if len(d) < ethHdrLen {
		p.Reason = reasonRunt
		return portBad
	}
	// Real found p.Backend < Reals.Len() == len(targets).
	t := e.targets[p.Backend]
	mac, ok := t.mac, t.static
	if !ok {
		if !t.connected {
			p.Reason = reasonNotConnected
			return portBad
		}
		if nb := t.nb.Load(); nb != nil {
			mac, ok = (*nb).MAC()
		}
		if !ok {
			p.Reason = reasonUnresolved
			return portBad
		}
	}
	copy(d[0:6], mac[:])
	if e.hasSrc {
		copy(d[6:12], e.src[:])
	}
	p.OnLink = true
	e.local.pkts++
	e.local.bytes += uint64(len(d))
	return portOut
}

var (
	_ pipeline.Pusher         = (*DirectRoute)(nil)
	_ pipeline.Validator      = (*DirectRoute)(nil)
	_ pipeline.BackendChecker = (*DirectRoute)(nil)
	_ pipeline.Provisioner    = (*DirectRoute)(nil)
	_ pipeline.Cleaner        = (*DirectRoute)(nil)
	_ pipeline.BatchStarter   = (*DirectRoute)(nil)
	_ pipeline.BatchEnder     = (*DirectRoute)(nil)
	_ pipeline.StatsReporter  = (*DirectRoute)(nil)
)
