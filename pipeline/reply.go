package pipeline

import "net/netip"

// A translating element (NAT) makes packets whose replies come back
// through the balancer, addressed to the client rather than to a VIP. Two
// things must then happen that no other element does: the flow table must
// recognise a reply as its flow's (ReplyTracker), and the interface's
// source must hand the graph the replies at all (ReplySteering), where it
// would pass them to the kernel. Both are found by key, so that the
// translator imports neither ConnTrack's package nor RxXDP's.

// ReplyTrackerKey is the Context.Local key under which a flow table
// (ConnTrack) named Name publishes itself for the worker's translators, in
// a ReplyTrackerSlot: whichever of the two is provisioned first creates
// the slot.
type ReplyTrackerKey struct{ Name string }

// ReplyTrackerSlot holds the worker's flow table of a name, set by its
// Provision, and the stateless translation of replies it has no entry
// for, set by a translator that has one (NAT) in its own Provision.
type ReplyTrackerSlot struct {
	Tracker   ReplyTracker
	Stateless StatelessReplies
}

// StatelessReplies translates a reply without its flow's state: for a
// translator that rewrites only the destination (NAT), a reply's
// translation depends on nothing but its source endpoint (backend
// address, port, protocol), which serves one VIP endpoint. The flow table
// asks it for a packet for no VIP that missed the table, so that a reply
// of a flow another worker or node holds is translated all the same.
type StatelessReplies interface {
	// ReplyOf gives p, a packet for no VIP that missed the table, the
	// VIP, real, epoch and VIP port of its source endpoint, as a reply
	// entry would, and reports whether there is exactly one; the table
	// then marks p FlowReply. It is called from Push, on the worker's
	// goroutine, and must not allocate.
	ReplyOf(p *Packet) bool
}

// ReplyTracker is a flow table that also holds the reverse of flows, so
// that a reply is a hit like its flow's packets: its lookup marks such a
// packet FlowReply and gives it the flow's VIP, real and VIP port.
type ReplyTracker interface {
	// TrackReply records, or refreshes, the reverse of p's flow: replies
	// of flow reply (whose flow hash is hash) belong to p's VIP, real and
	// destination port. p is a packet of the flow, after the table's
	// lookup; it is called from Push, on the worker's goroutine, and must
	// not allocate.
	TrackReply(p *Packet, reply *Flow, hash uint64)
	// PrefetchReplies touches the table where the TrackReply calls of a
	// batch, with these hashes, will look (see Prefetcher); it must not
	// allocate.
	PrefetchReplies(hashes []uint64)
	// ExpectReplies tells the table, from the translator's Provision,
	// that packets for no VIP are replies from now on: one that matches
	// no flow is an unknown reply, dropped by the table with a reason.
	ExpectReplies()
	// TrackSource is TrackReply for a translator that rewrites the
	// source too (FullNAT): reply's destination is the node's source
	// address of index pool and a port it allocated. It records the reply
	// entry, which refers to p's flow (whose table entry holds the
	// client), and the allocation on p's flow entry (see Source), and
	// reports what it did (SourceResult). It must not allocate.
	TrackSource(p *Packet, reply *Flow, hash uint64, pool uint8) SourceResult
	// Source returns the source port and pool index TrackSource recorded
	// on the entry of p's flow, p after the table's lookup; ok is false
	// when there is none (a new flow, or an untracked one).
	Source(p *Packet) (port uint16, pool uint8, ok bool)
}

// SourceResult is what ReplyTracker.TrackSource did.
type SourceResult uint8

const (
	// SourceTracked: the reply entry and the flow's source are recorded.
	SourceTracked SourceResult = iota
	// SourceTaken: another live entry holds the reply's 5-tuple (the
	// port is taken); nothing is recorded.
	SourceTaken
	// SourceUntracked: the table holds no entry of p's flow, or has no
	// room for its reply entry (a bucket full of established flows):
	// the flow's replies could not be translated back, so the translator
	// must not send it.
	SourceUntracked
)

// ReplySteerKey is the Context.Shared key under which the source element
// of an interface (RxXDP) publishes its ReplySteering.
type ReplySteerKey struct{ Interface string }

// ServiceEndpoint is a transport endpoint: an address, a port and an IP protocol.
type ServiceEndpoint struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8
}

// ReplySteering makes an interface hand the graph the packets that come
// from some endpoints (backends' services) and are addressed to no
// address of the node's own: replies to clients, which the kernel would
// otherwise forward untranslated. Packets from those endpoints to the
// node itself (health checks' replies) still go to the kernel.
type ReplySteering interface {
	// SteerReplies replaces the endpoints owner steered before with eps.
	// It may be called from any goroutine and does not wait for the
	// interface to apply them; it copies eps.
	SteerReplies(owner string, eps []ServiceEndpoint)
}

// PoolSteering is implemented by a ReplySteering that can also hand the
// graph the steered endpoints' packets to some of the node's own
// addresses: a full-NAT translator's source pool, to which its backends
// reply. The node's other addresses (health checks' replies) stay the
// kernel's.
type PoolSteering interface {
	// SteerPool replaces the pool addresses owner steered before with
	// addrs, as SteerReplies does the endpoints.
	SteerPool(owner string, addrs []netip.Addr)
}
