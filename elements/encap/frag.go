package encap

import (
	"encoding/binary"

	"github.com/xlbproject/xlb/elements/internal/csum"
	"github.com/xlbproject/xlb/pipeline"
)

// Outer fragmentation: an IPv4 packet without DF that the tunnel would
// make larger than the MTU is tunnelled as a router forwards it, cut into
// fragments (RFC 791) — of the outer packet, so the backend reassembles
// the tunnel packet and decapsulates the inner one whole, as RFC 2003
// section 5.1 has a tunnel entry point do. An IPv6 outer (an IPv6 backend)
// is fragmented by its source, xlb, with a Fragment header (RFC 8200
// section 4.5). Every fragment but the last is built in a spare packet of
// the batch's source (pipeline.Emitter) and emitted ahead of the packet,
// which keeps the last: the fragments leave in order.

// maxFragments bounds the fragments of one packet: a 9000-byte jumbo frame
// under a 1500-byte MTU takes 7. More is dropped as encap.too_big.
const maxFragments = 8

const fragHdrLen = 8 // IPv6 Fragment header

// fragmentPolicy values, the too_big_no_df attribute.
const (
	policyFragment = "fragment"
	policyDrop     = "drop"
)

// fragPlan is how an outer packet is cut: k fragments of chunk bytes of
// fragmentable payload each (a multiple of 8), the last one the rest.
type fragPlan struct {
	k, chunk int
}

// planFragments cuts an outer packet of total bytes (outer IP header of
// ipLen included) for e.mtu, or reports false when it takes more than
// maxFragments. The fewest fragments the MTU allows, of even size rather
// than full ones and a runt: a last fragment of a few bytes is what tiny
// fragment attacks send (RFC 1858), and filters (gopacket's ip4defrag
// among them) drop it.
func (e *Encap) planFragments(ipLen, total int) (fragPlan, bool) {
	hdr := ipLen
	if ipLen == ipv6HdrLen {
		hdr += fragHdrLen
	}
	most := (e.mtu - hdr) &^ 7
	payload := total - ipLen
	if most < 8 {
		return fragPlan{}, false
	}
	k := (payload + most - 1) / most
	chunk := ((payload+k-1)/k + 7) &^ 7
	if (k-1)*chunk >= payload {
		// Rounding up to 8 left nothing for the last: full fragments
		// then (only an MTU of a few dozen bytes gets here).
		chunk = most
	}
	return fragPlan{k: k, chunk: chunk}, k >= 2 && k <= maxFragments
}

// takeSpares borrows the plan's k-1 spare packets, each with room for l3
// bytes of L2, the outer headers and a chunk, into e.spares; on false it
// has handed back what it took.
func (e *Encap) takeSpares(pl fragPlan, l3, ipLen int) bool {
	need := l3 + ipLen + fragHdrLen + pl.chunk
	for i := range pl.k - 1 {
		s := e.emit.Spare()
		if s == nil || s.Tailroom() < need {
			if s != nil {
				s.Recycle()
			}
			for _, t := range e.spares[:i] {
				t.Recycle()
			}
			return false
		}
		e.spares[i] = s
	}
	return true
}

// fragment cuts the encapsulated packet p (L2 of l3 bytes, then the outer
// IP header of ipLen bytes) as planned: fragments 0..k-2 into e.spares,
// emitted on out, and the last in p's own frame, whose headers move
// forward to its chunk. It returns the bytes of every fragment's frame.
func (e *Encap) fragment(p *pipeline.Packet, pl fragPlan, l3, ipLen int) int {
	d := p.Data()
	payload := len(d) - l3 - ipLen
	hl := l3 + ipLen // headers copied into every fragment
	if ipLen == ipv6HdrLen {
		hl += fragHdrLen
	}
	var id uint32
	var next byte
	if ipLen == ipv6HdrLen {
		id = e.fragID
		e.fragID += uint32(e.idStep)
		next = d[l3+6]
	}
	bytes := 0
	for i := range pl.k - 1 {
		s := e.spares[i]
		e.spares[i] = nil
		f := s.Extend(hl + pl.chunk)
		copy(f[:l3+ipLen], d[:l3+ipLen])
		off := i * pl.chunk
		copy(f[hl:], d[l3+ipLen+off:l3+ipLen+off+pl.chunk])
		writeFragHeader(f[l3:], ipLen, pl.chunk, off, true, next, id)
		s.Time, s.L3, s.Flow, s.Hash = p.Time, p.L3, p.Flow, p.Hash
		s.VIP, s.Backend, s.Epoch = p.VIP, p.Backend, p.Epoch
		// L4: the tunnel payload in the first fragment (after a Fragment
		// header for IPv6), the start of the fragment payload in others.
		s.L4 = uint16(hl)
		if i == 0 {
			s.L4 = p.L4 + uint16(hl-l3-ipLen)
		}
		e.emit.Emit(portOut, s)
		bytes += len(f)
	}
	// The last fragment: its chunk stays where it is and the headers move
	// up to just before it (copy moves overlapping bytes correctly). Its
	// L4 is the start of its fragment payload, as for any later fragment.
	off := (pl.k - 1) * pl.chunk
	start := l3 + ipLen + off - hl
	copy(d[start:start+l3+ipLen], d[:l3+ipLen])
	f := p.Pull(start)
	writeFragHeader(f[l3:], ipLen, payload-off, off, false, next, id)
	p.L4 = uint16(hl)
	return bytes + len(f)
}

// writeFragHeader turns the outer header at h (copied from the whole
// packet's) into a fragment's, of n payload bytes at offset off: for IPv4
// the total length, MF and offset and the checksum, the identification
// kept; for IPv6 the payload length and a Fragment header with next and
// id after the fixed header.
func writeFragHeader(h []byte, ipLen, n, off int, more bool, next byte, id uint32) {
	mf := uint16(0)
	if more {
		mf = 1
	}
	if ipLen == ipv4HdrLen {
		put16(h[2:], uint16(ipv4HdrLen+n))
		put16(h[6:], mf<<13|uint16(off/8)) // DF clear: the inner had none
		put16(h[10:], 0)
		put16(h[10:], csum.Checksum(0, h[:ipv4HdrLen]))
		return
	}
	put16(h[4:], uint16(fragHdrLen+n))
	h[6] = 44 // Fragment header
	fh := h[ipv6HdrLen : ipv6HdrLen+fragHdrLen]
	fh[0], fh[1] = next, 0
	put16(fh[2:], uint16(off)|mf) // offset in 8-byte units, in place
	binary.BigEndian.PutUint32(fh[4:], id)
}
