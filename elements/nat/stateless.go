package nat

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// Stateless reply translation (docs/modes.md, "NAT in a cluster"): NAT
// rewrites only the destination, so a reply's translation depends on its
// flow only through its source endpoint (backend address, port and
// protocol), which serves one VIP endpoint (VIP, VIP port) unless the
// configuration gives it two. Every worker of every node derives that map
// from the same snapshot, so a reply that reaches a worker or a node
// without its flow's reply entry is translated all the same; the reply
// entries remain the way of the flow's own worker, and the only one for
// an ambiguous endpoint.

// endpoint is a reply's source as Parse5Tuple keys it: a backend's
// address (16 bytes, IPv4-mapped), service port and protocol.
type endpoint struct {
	addr  [16]byte
	port  uint16
	proto uint8
}

// statelessReply is what a reply from an endpoint is translated with,
// what a reply entry would give it; ambiguous marks an endpoint that
// serves two VIP endpoints, which has none.
type statelessReply struct {
	vip, real, epoch uint32
	vport            uint16
	ambiguous        bool
}

// statelessState is NAT's part of the translator's worker-owned state.
type statelessState struct {
	replies map[endpoint]statelessReply
	// ambiguous describes the ambiguous endpoints, sorted; warned is the
	// last list worker 0 logged.
	ambiguous []string
	warned    string
	local     uint64 // the batch's stateless translations
	pub       atomic.Uint64
}

// adoptReplies derives the stateless map from s (statelessMap, each
// real's backend port from ports). It allocates only when the snapshot
// changed, never per packet.
func (e *NAT) adoptReplies(s *snapshot.Snapshot) {
	m, amb := statelessMap(s, func(r *snapshot.Real) uint16 { return e.ports[r.ID] })
	st := &e.stateless
	st.replies, st.ambiguous = m, amb
	// Worker 0 logs; at Provision (no batch's snapshot yet) ambiguity
	// refuses the graph instead (ambiguity).
	if e.log == nil || e.snap == nil {
		return
	}
	list := strings.Join(amb, "; ")
	if len(amb) > 0 && list != st.warned && e.workers > 1 {
		e.log.Error("backend endpoints that serve two VIP endpoints have no stateless reply translation: with several workers, their replies that reach another worker than their flow's are dropped as conntrack.reply_unknown; give the backends another port for each VIP (ports), or run one worker", "ambiguous", list)
	}
	st.warned = list
}

// statelessMap maps the backend endpoints of s to the VIP endpoints they
// serve: every real of s, its state whatever it is (a draining, down or
// weight 0 real still has flows, whose replies still come), of its VIP's
// family, for each port and protocol of its VIP with ports (TCP, UDP,
// SCTP; a VIP of every port has no endpoint to key by). A real's backend
// port (portOf, 0 for none) replaces the VIP port for TCP and UDP, whose
// ports NAT maps. It also describes the ambiguous endpoints, sorted.
func statelessMap(s *snapshot.Snapshot, portOf func(*snapshot.Real) uint16) (map[endpoint]statelessReply, []string) {
	m := make(map[endpoint]statelessReply, s.Reals.Len())
	var amb []string
	for _, r := range s.Reals.All() {
		if r.Epoch == 0 {
			continue
		}
		v := &s.VIPs[r.VIP]
		if r.Family != family(v.Addr) {
			continue // dropped as nat.family: no flow, no reply
		}
		for _, pr := range []uint8{protoTCP, protoUDP, protoSCTP} {
			if v.Proto != pr && (v.Proto != 0 || pr == protoSCTP) {
				continue
			}
			for _, vp := range v.Ports {
				bp := vp
				if mp := portOf(r); mp != 0 && pr != protoSCTP {
					bp = mp
				}
				ep := endpoint{r.Addr16, bp, pr}
				old, ok := m[ep]
				switch {
				case !ok:
					m[ep] = statelessReply{vip: r.VIP, real: r.ID, epoch: r.Epoch, vport: vp}
				case old.ambiguous || old.vip == r.VIP && old.vport == vp:
				default:
					amb = append(amb, fmt.Sprintf("%s serves %s and %s",
						endpointString(r.Addr, bp, pr), vipEndpoint(s, old.vip, old.vport), vipEndpoint(s, r.VIP, vp)))
					m[ep] = statelessReply{ambiguous: true}
				}
			}
		}
	}
	slices.Sort(amb)
	return m, amb
}

// ambiguity is the error of a graph of several workers whose snapshot has
// ambiguous endpoints, nil when it has none.
func (e *NAT) ambiguity() error {
	if e.workers <= 1 || len(e.stateless.ambiguous) == 0 {
		return nil
	}
	return fmt.Errorf("NAT runs %d workers: %w", e.workers, ambiguityError(e.stateless.ambiguous))
}

// ambiguityError says why ambiguous endpoints forbid several workers.
func ambiguityError(amb []string) error {
	return fmt.Errorf("with several workers a reply may reach another worker than its flow's and is translated from its backend endpoint alone, but %s: the reply could belong to either; give the backend another port for one VIP (ports), or set workers = 1",
		strings.Join(amb, "; "))
}

// CheckSnapshot is ambiguity for a file being checked (snapshot.Checker):
// the file's snapshot s, the ports by backend name, workers from the
// file, 0 when the daemon picks them.
func (e *NAT) CheckSnapshot(s *snapshot.Snapshot, workers int) error {
	if workers == 1 {
		return nil
	}
	_, amb := statelessMap(s, func(r *snapshot.Real) uint16 { return uint16(e.Ports[r.Backend]) })
	if len(amb) == 0 {
		return nil
	}
	return ambiguityError(amb)
}

// ReplyOf gives p, a packet for no VIP that missed ConnTrack's table, the
// translation of its source endpoint (pipeline.StatelessReplies), and
// counts it.
func (e *NAT) ReplyOf(p *pipeline.Packet) bool {
	f := &p.Flow
	r, ok := e.stateless.replies[endpoint{f.Src, f.SrcPort, f.Proto}]
	if !ok || r.ambiguous {
		return false
	}
	p.VIP, p.Backend, p.Epoch, p.VIPPort = r.vip, r.real, r.epoch, r.vport
	e.stateless.local++
	return true
}

// EndBatch publishes the batch's stateless translations, then the
// translator's counters.
func (e *NAT) EndBatch() {
	if st := &e.stateless; st.local != 0 {
		st.pub.Add(st.local)
		st.local = 0
	}
	e.translator.EndBatch()
}

// Stats reports the translator's counters and the stateless translations.
func (e *NAT) Stats(emit func(pipeline.Metric)) {
	e.translator.Stats(emit)
	emit(pipeline.Metric{Name: "xlb_nat_reply_stateless_total", Help: "Replies that missed ConnTrack's table (their flow on another worker or node) translated from their backend endpoint alone; also counted in xlb_nat_packets_total.", Value: e.stateless.pub.Load()})
}

// family is a's IP family, 4 or 6, as snapshot.Real's.
func family(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

// endpointString is an endpoint as an operator writes it: 10.0.0.1:80/tcp.
func endpointString(a netip.Addr, port uint16, proto uint8) string {
	name := map[uint8]string{protoTCP: "tcp", protoUDP: "udp", protoSCTP: "sctp"}[proto]
	return netip.AddrPortFrom(a.Unmap(), port).String() + "/" + name
}

// vipEndpoint names VIP vip's endpoint of port: web (10.0.0.10:80).
func vipEndpoint(s *snapshot.Snapshot, vip uint32, port uint16) string {
	v := &s.VIPs[vip]
	return v.Name + " (" + netip.AddrPortFrom(v.Addr.Unmap(), port).String() + ")"
}

var _ pipeline.StatelessReplies = (*NAT)(nil)
