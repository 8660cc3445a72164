package parse

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/internal/flowhash"
	"github.com/xlbproject/xlb/pipeline"
)

// FragRedirect is the Maglev paper's answer to fragments in a cluster
// (Eisenbud et al., NSDI 2016, §3.3.3 "Fragment handling"): the router's
// ECMP hashes a later fragment, which has no ports, on its 3-tuple, so a
// datagram's fragments reach other nodes than its flow's packets or its
// first fragment, whose fragment tables do not know it. Every node
// therefore sends every fragment, first included, to one node chosen by
// the datagram's (src, dst, protocol) over the cluster's node list: all of
// a datagram's fragments meet in that node's fragment table, and the node
// steers them, by the Maglev table every node shares, to the flow's
// backend.
//
// It runs before Parse5Tuple, whose fragment table must see a datagram's
// fragments only on the chosen node: after it, a later fragment that came
// here without its first would already be dropped. It reads the headers
// with Parse5Tuple's own parser (which Parse5Tuple redoes: the metadata it
// writes is not kept) and hands every packet that is not a fragment, or
// that does not parse, on unchanged for Parse5Tuple to count.
//
// A redirected frame is sent unchanged but for its Ethernet addresses,
// over the link, to the chosen node's MAC address (followed in the kernel's
// neighbour table, as TxXDP follows its gateway): its destination is still
// the VIP, so that node's XDP program takes it like any packet of the VIP.
// The chosen node picks itself (same list, same hash). Where the lists
// differ (a reload half done), a fragment that arrives from a peer's MAC
// address is kept even if this node would choose another: it never makes
// a second hop, so nothing loops; it is counted as looped.

// Ports of FragRedirect.
const (
	redirectOut  = 0
	redirectPeer = 1
)

var reasonPeerUnresolved = pipeline.NewReason("fragredirect.unresolved")

// maxFragNodes bounds the node list: the choice scans it per fragment.
const maxFragNodes = 64

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "FragRedirect",
		Doc:     "Sends every IP fragment to the cluster node chosen by its (src, dst, protocol) over the node list, so a datagram's fragments meet in one node's fragment table; goes before Parse5Tuple.",
		Inputs:  []string{"in"},
		Outputs: []string{"out", "redirect"},
		New:     func() pipeline.Element { return &FragRedirect{} },
	})
}

// FragNode is one node of the cluster in FragRedirect's list.
type FragNode struct {
	Name    string `cty:"name"`
	Address string `cty:"address"`
}

// FragRedirect is the element. Exported fields are its HCL configuration.
type FragRedirect struct {
	Interface string            `hcl:"interface,optional" doc:"the interface the nodes share (that of an RxXDP), on which their MAC addresses are followed in the neighbour table; needed unless macs has every other node"`
	Self      string            `hcl:"self" doc:"this node's name in nodes"`
	Nodes     []FragNode        `hcl:"nodes" doc:"the cluster's nodes, the same list on every node: objects { name, address }, address on the nodes' link"`
	MACs      map[string]string `hcl:"macs,optional" doc:"static MAC addresses by node name, used instead of the neighbour table's"`

	view  *snapshot.View
	key   hashKey
	self  int
	peers []fragPeer // sorted by name

	local redirectCounters
	pub   struct {
		redirected, kept, unresolved, looped atomic.Uint64
	}
}

type redirectCounters struct{ redirected, kept, unresolved, looped uint64 }

// fragPeer is one node of the list as the worker uses it.
type fragPeer struct {
	name  string
	seed  uint64 // the node's rendezvous seed, from its name
	nb    pipeline.Neighbor
	mac   [6]byte // static, or loaded in StartBatch
	macOK bool
}

// Validate checks the node list.
func (e *FragRedirect) Validate() error {
	_, err := e.sorted()
	return err
}

// sorted checks the node list and returns it sorted by name.
func (e *FragRedirect) sorted() ([]FragNode, error) {
	if len(e.Nodes) == 0 || len(e.Nodes) > maxFragNodes {
		return nil, &pipeline.AttrError{Attr: "nodes", Msg: fmt.Sprintf("must list 1 to %d nodes", maxFragNodes)}
	}
	nodes := slices.Clone(e.Nodes)
	slices.SortFunc(nodes, func(a, b FragNode) int { return strings.Compare(a.Name, b.Name) })
	self, static := false, true
	for i, n := range nodes {
		if n.Name == "" {
			return nil, &pipeline.AttrError{Attr: "nodes", Msg: "must give every node a name"}
		}
		if i > 0 && nodes[i-1].Name == n.Name {
			return nil, &pipeline.AttrError{Attr: "nodes", Msg: fmt.Sprintf("must name each node once; %q is there twice", n.Name)}
		}
		if _, err := netip.ParseAddr(n.Address); err != nil {
			return nil, &pipeline.AttrError{Attr: "nodes", Msg: fmt.Sprintf("must give node %q an IP address on the nodes' link, such as \"10.0.0.11\", not %q", n.Name, n.Address)}
		}
		if _, ok := e.MACs[n.Name]; !ok && n.Name != e.Self {
			static = false
		}
		self = self || n.Name == e.Self
	}
	for name, mac := range e.MACs {
		if !slices.ContainsFunc(nodes, func(n FragNode) bool { return n.Name == name }) {
			return nil, &pipeline.AttrError{Attr: "macs", Msg: fmt.Sprintf("must name nodes of nodes; %q is not one", name)}
		}
		if hw, err := net.ParseMAC(mac); err != nil || len(hw) != 6 {
			return nil, &pipeline.AttrError{Attr: "macs", Msg: fmt.Sprintf("must give node %q an Ethernet address such as \"02:00:00:00:00:01\", not %q", name, mac)}
		}
	}
	if !self {
		return nil, &pipeline.AttrError{Attr: "self", Msg: fmt.Sprintf("must name a node of nodes, not %q", e.Self)}
	}
	if !static && e.Interface == "" {
		return nil, &pipeline.AttrError{Attr: "interface", Msg: "must name the nodes' interface (that of an RxXDP) to follow the MAC addresses of nodes not in macs"}
	}
	return nodes, nil
}

// Provision sorts the nodes and starts following the MAC address of every
// other node without a static one (sources are provisioned first, so the
// interface's RxXDP has published its neighbour table).
func (e *FragRedirect) Provision(ctx *pipeline.Context) error {
	nodes, err := e.sorted()
	if err != nil {
		return err
	}
	if e.view, err = snapshot.ViewFromContext(ctx); err != nil {
		return err
	}
	var nbs pipeline.Neighbors
	if e.Interface != "" {
		nbs, _ = ctx.Shared(pipeline.NeighborKey{Interface: e.Interface}, func() any { return nil }).(pipeline.Neighbors)
	}
	e.peers = make([]fragPeer, len(nodes))
	for i, n := range nodes {
		pr := &e.peers[i]
		pr.name, pr.seed = n.Name, nodeSeed(n.Name)
		switch {
		case n.Name == e.Self:
			e.self = i
		case e.MACs[n.Name] != "":
			hw, _ := net.ParseMAC(e.MACs[n.Name])
			copy(pr.mac[:], hw)
			pr.macOK = true
		case nbs == nil:
			return fmt.Errorf("no RxXDP on %s: FragRedirect follows the nodes' MAC addresses on the interface of an RxXDP; declare one, or give every other node's MAC address in macs", e.Interface)
		default:
			if pr.nb, err = nbs.Follow(netip.MustParseAddr(n.Address), ctx); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// nodeSeed is a node's rendezvous seed: FNV-1a of its name, so that a
// node's place in the choice depends on its name only, like Maglev's
// backends.
func nodeSeed(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * 1099511628211
	}
	return h
}

// StartBatch takes the batch's hash seed and the peers' MAC addresses.
func (e *FragRedirect) StartBatch(int64) {
	e.key = newHashKey(e.view.Snapshot().HashSeed)
	for i := range e.peers {
		if pr := &e.peers[i]; pr.nb != nil {
			pr.mac, pr.macOK = pr.nb.MAC()
		}
	}
}

// Push keeps a packet that is not a fragment, or whose chosen node is this
// one, on out; it sends a fragment chosen for another node by redirect,
// with that node's MAC address as its destination.
func (e *FragRedirect) Push(_ int, p *pipeline.Packet) int {
	if !mayBeFragment(p.Data()) {
		return redirectOut
	}
	var fr fragment
	if _, r := parseFrame(p, &fr, &noVIPs); r != pipeline.ReasonNone || fr.kind == notFragment {
		return redirectOut
	}
	to := e.choose(&fr.key)
	if to == e.self {
		e.local.kept++
		return redirectOut
	}
	d := p.Data()
	if e.fromPeer(d[6:12]) {
		e.local.looped++
		return redirectOut
	}
	pr := &e.peers[to]
	if !pr.macOK {
		e.local.unresolved++
		p.Reason = reasonPeerUnresolved
		return pipeline.Drop
	}
	copy(d[0:6], pr.mac[:])
	e.local.redirected++
	return redirectPeer
}

// mayBeFragment is a quick test that spares most packets, which are not
// fragments, a second parse: false for an untagged IPv4 packet with
// neither MF nor an offset and for an untagged IPv6 packet whose first
// header is not an extension header. Anything else is parsed, and what
// does not parse goes on to Parse5Tuple, which drops it.
func mayBeFragment(d []byte) bool {
	if len(d) < ethHeaderLen+20 {
		return true
	}
	switch be16(d[12:]) {
	case etherTypeIPv4:
		return be16(d[ethHeaderLen+6:])&0x3fff != 0
	case etherTypeIPv6:
		switch d[ethHeaderLen+6] {
		case protoHopByHop, protoRouting, protoDestOpts, protoFragment, protoAH:
			return true
		}
		return false
	}
	return true
}

// choose returns the index of the node with the highest rendezvous score
// for the datagram key's (src, dst, protocol): the same on every node with
// the same list and hash seed, whatever the list's order.
func (e *FragRedirect) choose(key *pipeline.Flow) int {
	f := pipeline.Flow{Src: key.Src, Dst: key.Dst, Proto: key.Proto}
	h := e.key.Hash(&f)
	best, top := 0, uint64(0)
	for i := range e.peers {
		if s := flowhash.Score(h, e.peers[i].seed); s > top || i == 0 {
			best, top = i, s
		}
	}
	return best
}

// fromPeer reports whether src is the MAC address of another node.
func (e *FragRedirect) fromPeer(src []byte) bool {
	a := uint64(binary.BigEndian.Uint16(src))<<32 | uint64(binary.BigEndian.Uint32(src[2:]))
	for i := range e.peers {
		pr := &e.peers[i]
		m := uint64(binary.BigEndian.Uint16(pr.mac[:]))<<32 | uint64(binary.BigEndian.Uint32(pr.mac[2:]))
		if i != e.self && pr.macOK && m == a {
			return true
		}
	}
	return false
}

// EndBatch publishes the batch's counts.
func (e *FragRedirect) EndBatch() {
	if l := &e.local; *l != (redirectCounters{}) {
		e.pub.redirected.Add(l.redirected)
		e.pub.kept.Add(l.kept)
		e.pub.unresolved.Add(l.unresolved)
		e.pub.looped.Add(l.looped)
		*l = redirectCounters{}
	}
}

// Stats reports the fragments by outcome and which peers are resolved.
func (e *FragRedirect) Stats(emit func(pipeline.Metric)) {
	for _, m := range []struct {
		event, help string
		v           *atomic.Uint64
	}{
		{"redirected", "Fragments sent to the node chosen for their datagram.", &e.pub.redirected},
		{"kept", "Fragments whose chosen node is this one.", &e.pub.kept},
		{"unresolved", "Fragments dropped because the chosen node's MAC address is unknown (fragredirect.unresolved).", &e.pub.unresolved},
		{"looped", "Fragments from another node that this node would send elsewhere (the node lists differ), kept here.", &e.pub.looped},
	} {
		emit(pipeline.Metric{Name: "xlb_fragredirect_" + m.event + "_total", Help: m.help, Value: m.v.Load()})
	}
	for i := range e.peers {
		pr := &e.peers[i]
		if pr.nb == nil {
			continue
		}
		v := uint64(0)
		if _, ok := pr.nb.MAC(); ok {
			v = 1
		}
		emit(pipeline.Metric{Name: "xlb_fragredirect_node_resolved", Help: "1 while the node's MAC address is known.",
			Labels: []pipeline.Label{{Name: "node", Value: pr.name}}, Gauge: true, Value: v})
	}
}

// Cleanup stops following the nodes; it works after a partial Provision.
// The peers keep their Neighbor, which Stats may still read.
func (e *FragRedirect) Cleanup() error {
	for i := range e.peers {
		if pr := &e.peers[i]; pr.nb != nil {
			pr.nb.Release()
		}
	}
	return nil
}

var (
	_ pipeline.Pusher        = (*FragRedirect)(nil)
	_ pipeline.Validator     = (*FragRedirect)(nil)
	_ pipeline.Provisioner   = (*FragRedirect)(nil)
	_ pipeline.Cleaner       = (*FragRedirect)(nil)
	_ pipeline.BatchStarter  = (*FragRedirect)(nil)
	_ pipeline.BatchEnder    = (*FragRedirect)(nil)
	_ pipeline.StatsReporter = (*FragRedirect)(nil)
)
