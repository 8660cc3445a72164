// Package pipeline is xlb's packet engine: packets, batches, the element
// contract, the registry of element types, graph building and checking, and
// the per-worker run loop.
//
// The model is Click's (Kohler et al., "The Click modular router", TOCS 2000)
// with FastClick's batching: an element declares named input and output
// ports, a graph connects them, and the engine checks every connection before
// anything runs. An element handles one packet at a time in Push and returns
// the output port the packet leaves by; the engine owns the batch loop, so
// per-packet logic lives in exactly one function per element.
//
// The package knows nothing about protocols: a Packet is bytes plus metadata
// slots that elements fill in (offsets, flow, hash, VIP, backend).
package pipeline

// MaxBatch is the largest number of packets a source hands the engine at once.
const MaxBatch = 64

// Headroom is the space sources leave in front of received data, so that
// encapsulation can prepend outer headers in place. It matches the kernel's
// XDP headroom (XDP_PACKET_HEADROOM).
const Headroom = 256

// Flow flags.
const (
	// FlowFragment marks a flow keyed on (src, dst, proto) only, ports
	// zero: an ICMP error quoting a non-first fragment. Fragments that
	// reach the graph have their datagram's 5-tuple (FlowLaterFragment).
	FlowFragment uint8 = 1 << iota
	// FlowICMPError marks an ICMP error whose flow was taken from the
	// embedded (quoted) packet, reversed, so it follows the original flow.
	FlowICMPError
	// FlowLaterFragment marks a non-first fragment whose flow and hash are
	// its first fragment's: L4 is the start of its fragment payload, not
	// a transport header.
	FlowLaterFragment
	// FlowReply marks a packet of a flow's reverse direction, from the
	// backend to the client, that a flow table recognised (ConnTrack, for
	// a NAT's reply): VIP, Backend and Epoch are the flow's, VIPPort the
	// port the client sent to.
	FlowReply
)

// Flow is the 5-tuple of a packet. IPv4 addresses are stored IPv4-mapped
// (::ffff:a.b.c.d) so that both families share one key layout.
type Flow struct {
	Src, Dst [16]byte
	SrcPort  uint16
	DstPort  uint16
	Proto    uint8
	Family   uint8 // 4 or 6
	Flags    uint8
}

// FrameOwner gets frames back when the packet that views them leaves the
// graph without being handed to another owner (dropped, or written to a
// file). An AF_XDP source returns the frame to its fill ring; a source that
// reuses its buffers per batch may ignore the call.
type FrameOwner interface {
	Recycle(p *Packet)
}

// Packet is a view over one frame plus metadata written by elements. Packets
// are preallocated by sources and reused; nothing on the per-packet path
// allocates one.
type Packet struct {
	buf   []byte // the whole frame, headroom included
	start int    // first byte of packet data in buf
	end   int    // one past the last byte of packet data

	// Owner and Handle identify the frame for its owner (for AF_XDP, the
	// UMEM address). Set by the source.
	Owner  FrameOwner
	Handle uint64

	// Time is the receive time in nanoseconds (Unix epoch for captures,
	// monotonic for live sources). Set by the source.
	Time int64

	// The fields below are valid only after the element that writes them.

	// L3 and L4 are offsets from Data()[0] of the network and transport
	// headers. Written by Parse5Tuple.
	L3, L4 uint16
	// Flow and Hash are written by Parse5Tuple; Hash is seeded from config
	// so every node computes the same value for the same flow.
	Flow Flow
	Hash uint64
	// VIP is the index of the packet's VIP in the current snapshot, and
	// Backend/Epoch identify the chosen real (see control/snapshot).
	// Written by ConnTrack on a hit and by MaglevSelect on a miss.
	VIP     uint32
	Backend uint32
	Epoch   uint32
	// VIPPort is the VIP port of the flow a reply answers (FlowReply),
	// written by ConnTrack with the flag.
	VIPPort uint16
	// PeerPort and Peer are the client's port and address of the flow a
	// full-NAT reply answers (FlowReply of an entry TrackSource made),
	// written by ConnTrack with the flag: the reply's own destination is
	// the node's source address.
	PeerPort uint16
	Peer     [16]byte
	// Reason says why a packet leaves by a drop port; Discard counts it.
	Reason Reason
	// OnLink marks a frame whose destination MAC address an element has
	// set to a host on the sink's link (DirectRoute's backend): the sink
	// keeps it instead of writing its gateway's.
	OnLink bool
}

// SetFrame points the packet at buf, with data in buf[start:end], and clears
// all metadata. Sources call it for every received packet.
func (p *Packet) SetFrame(buf []byte, start, end int) {
	owner, handle := p.Owner, p.Handle
	*p = Packet{buf: buf, start: start, end: end, Owner: owner, Handle: handle}
}

// Data returns the packet's bytes. The slice aliases the frame.
func (p *Packet) Data() []byte { return p.buf[p.start:p.end] }

// Len is the length of the packet's data.
func (p *Packet) Len() int { return p.end - p.start }

// Headroom is how many bytes Prepend can add in front of the data.
func (p *Packet) Headroom() int { return p.start }

// Tailroom is how many bytes Extend can add after the data.
func (p *Packet) Tailroom() int { return len(p.buf) - p.end }

// Frame returns the whole frame and the data's bounds in it.
func (p *Packet) Frame() (buf []byte, start, end int) { return p.buf, p.start, p.end }

// Prepend grows the data by n bytes at the front and returns the new data,
// or nil when there is not enough headroom. Offsets L3 and L4 are not
// adjusted: elements that prepend own the meaning of the new layout.
func (p *Packet) Prepend(n int) []byte {
	if n < 0 || n > p.start {
		return nil
	}
	p.start -= n
	return p.buf[p.start:p.end]
}

// Pull removes n bytes from the front of the data and returns the rest, or
// nil when the packet is shorter than n.
func (p *Packet) Pull(n int) []byte {
	if n < 0 || n > p.end-p.start {
		return nil
	}
	p.start += n
	return p.buf[p.start:p.end]
}

// Extend grows the data by n bytes at the end, or returns nil when there is
// not enough tailroom.
func (p *Packet) Extend(n int) []byte {
	if n < 0 || n > len(p.buf)-p.end {
		return nil
	}
	p.end += n
	return p.buf[p.start:p.end]
}

// Truncate shortens the data to n bytes; it is a no-op when n >= Len().
func (p *Packet) Truncate(n int) {
	if n >= 0 && n < p.end-p.start {
		p.end = p.start + n
	}
}

// Recycle hands the frame back to its owner. Sinks call it for packets
// that leave the graph without being transmitted.
func (p *Packet) Recycle() {
	if p.Owner != nil {
		p.Owner.Recycle(p)
	}
}

// Batch is up to MaxBatch packets on their way through the graph, with the
// output port each one leaves a source by.
type Batch struct {
	Pkts  [MaxBatch]*Packet
	Ports [MaxBatch]uint8
	N     int
	// Now is the source's clock for this batch, in nanoseconds: elements
	// with timers (ConnTrack) use it instead of reading a clock per packet,
	// and captures replay with their own timestamps.
	Now int64
}

// Reset empties the batch.
func (b *Batch) Reset() { b.N = 0 }

// Add appends p leaving by port; it reports false when the batch is full.
func (b *Batch) Add(p *Packet, port int) bool {
	if b.N == MaxBatch {
		return false
	}
	b.Pkts[b.N] = p
	b.Ports[b.N] = uint8(port)
	b.N++
	return true
}

// SparePool lends up to MaxBatch spare packets per batch over frames it
// allocates once, for a source whose buffers live for one batch (a capture
// reader, a test source): its Spare implements FrameSupplier, and the
// source calls Reset at every Pull. Spares have no Owner: recycling one is
// a no-op, and the pool takes it back at the next Reset.
type SparePool struct {
	pkts   [MaxBatch]Packet
	frames []byte
	size   int
	lent   int
}

// NewSparePool returns a pool of frames of frameSize bytes, Headroom of
// them in front of the data.
func NewSparePool(frameSize int) *SparePool {
	return &SparePool{frames: make([]byte, MaxBatch*frameSize), size: frameSize}
}

// Reset takes every spare back: the batch that used them is over.
func (s *SparePool) Reset() { s.lent = 0 }

// Spare lends the next packet, empty with Headroom bytes of headroom, or
// returns nil when all MaxBatch are lent.
func (s *SparePool) Spare() *Packet {
	if s == nil || s.lent == MaxBatch {
		return nil
	}
	i := s.lent
	s.lent++
	p := &s.pkts[i]
	p.SetFrame(s.frames[i*s.size:(i+1)*s.size:(i+1)*s.size], Headroom, Headroom)
	return p
}
