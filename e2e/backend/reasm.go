package backend

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// Reassembler puts fragmented outer packets back together, as a Linux
// backend's kernel does before its GRE or IPIP device sees them: IPv4
// fragments (RFC 791) and IPv6 ones whose Fragment header follows the
// fixed header (RFC 8200 section 4.5; xlb writes no other extension
// header). The AF_PACKET socket sees packets before the kernel's
// reassembly, so the lab's user-space backend needs its own.
//
// It is bounded: at most max datagrams in progress (a fragment of a new
// one beyond that is refused), each at most 65535 bytes, each dropped
// timeout after its first fragment came; overlapping fragments drop their
// datagram (RFC 5722 for IPv6, and the safe choice for IPv4).
type Reassembler struct {
	max     int
	timeout time.Duration
	pending map[fragKey]*datagram
}

type fragKey struct {
	src, dst netip.Addr
	proto    byte
	id       uint32
}

type datagram struct {
	hdr   []byte // the first fragment's IP header (without Fragment header)
	data  []byte
	have  [][2]int // received [start, end) byte ranges
	got   int      // bytes received
	total int      // payload length, once the last fragment came; -1 before
	first time.Time
}

// FragResult says what Add did with a packet.
type FragResult int

const (
	// FragWhole: not a fragment; the packet is returned as it is.
	FragWhole FragResult = iota
	// FragHeld: a fragment, kept until its datagram is complete.
	FragHeld
	// FragDone: the fragment completed its datagram, returned whole.
	FragDone
	// FragDropped: a fragment refused (malformed, overlapping, too
	// large, or no room for another datagram).
	FragDropped
)

// NewReassembler returns a reassembler of at most max datagrams at once,
// each given timeout to complete.
func NewReassembler(max int, timeout time.Duration) *Reassembler {
	return &Reassembler{max: max, timeout: timeout, pending: map[fragKey]*datagram{}}
}

// Pending is the number of datagrams in progress.
func (r *Reassembler) Pending() int { return len(r.pending) }

// Add takes pkt, an IP packet starting at its IP header, received at now.
// For FragWhole and FragDone it returns the packet to decapsulate; a
// reassembled one is a new slice, with lengths and (IPv4) the header
// checksum fixed and no fragment fields.
func (r *Reassembler) Add(pkt []byte, now time.Time) ([]byte, FragResult) {
	r.expire(now)
	if len(pkt) < 1 {
		return pkt, FragWhole
	}
	var (
		k       fragKey
		hdr     []byte
		payload []byte
		off     int
		more    bool
	)
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return pkt, FragWhole
		}
		fo := binary.BigEndian.Uint16(pkt[6:8])
		if fo&0x3fff == 0 {
			return pkt, FragWhole
		}
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if ihl < 20 || total < ihl || total > len(pkt) || Checksum(pkt[:ihl]) != 0 {
			return nil, FragDropped
		}
		k = fragKey{src: netip.AddrFrom4([4]byte(pkt[12:16])), dst: netip.AddrFrom4([4]byte(pkt[16:20])),
			proto: pkt[9], id: uint32(binary.BigEndian.Uint16(pkt[4:6]))}
		hdr, payload = pkt[:ihl], pkt[ihl:total]
		off, more = int(fo&0x1fff)*8, fo&0x2000 != 0
	case 6:
		if len(pkt) < 48 || pkt[6] != 44 {
			return pkt, FragWhole
		}
		end := 40 + int(binary.BigEndian.Uint16(pkt[4:6]))
		if end < 48 || end > len(pkt) {
			return nil, FragDropped
		}
		fh := pkt[40:48]
		k = fragKey{src: netip.AddrFrom16([16]byte(pkt[8:24])), dst: netip.AddrFrom16([16]byte(pkt[24:40])),
			proto: fh[0], id: binary.BigEndian.Uint32(fh[4:8])}
		hdr, payload = pkt[:40], pkt[48:end]
		fo := binary.BigEndian.Uint16(fh[2:4])
		off, more = int(fo&^7), fo&1 != 0
	default:
		return pkt, FragWhole
	}
	// Every fragment but the last carries a multiple of 8 bytes.
	if (more && len(payload)%8 != 0) || off+len(payload) > 65535 {
		r.drop(k)
		return nil, FragDropped
	}
	d := r.pending[k]
	if d == nil {
		if len(r.pending) >= r.max {
			return nil, FragDropped
		}
		d = &datagram{total: -1, first: now}
		r.pending[k] = d
	}
	end := off + len(payload)
	for _, h := range d.have {
		if off < h[1] && h[0] < end {
			r.drop(k)
			return nil, FragDropped
		}
	}
	if !more {
		if d.total >= 0 || end < d.maxEnd() {
			r.drop(k)
			return nil, FragDropped
		}
		d.total = end
	} else if d.total >= 0 && end > d.total {
		r.drop(k)
		return nil, FragDropped
	}
	if off == 0 {
		d.hdr = append([]byte(nil), hdr...)
	}
	if len(d.data) < end {
		d.data = append(d.data, make([]byte, end-len(d.data))...)
	}
	copy(d.data[off:end], payload)
	d.have = append(d.have, [2]int{off, end})
	d.got += len(payload)
	if d.total < 0 || d.got != d.total || d.hdr == nil {
		return nil, FragHeld
	}
	delete(r.pending, k)
	return d.whole(k.proto), FragDone
}

func (d *datagram) maxEnd() int {
	m := 0
	for _, h := range d.have {
		m = max(m, h[1])
	}
	return m
}

// whole is the reassembled packet: the first fragment's header, fixed,
// then the payload.
func (d *datagram) whole(proto byte) []byte {
	p := append(d.hdr, d.data[:d.total]...)
	if p[0]>>4 == 4 {
		ihl := len(d.hdr)
		binary.BigEndian.PutUint16(p[2:4], uint16(ihl+d.total))
		binary.BigEndian.PutUint16(p[6:8], 0)
		binary.BigEndian.PutUint16(p[10:12], 0)
		binary.BigEndian.PutUint16(p[10:12], Checksum(p[:ihl]))
		return p
	}
	binary.BigEndian.PutUint16(p[4:6], uint16(d.total))
	p[6] = proto
	return p
}

func (r *Reassembler) drop(k fragKey) { delete(r.pending, k) }

// expire drops the datagrams older than the timeout.
func (r *Reassembler) expire(now time.Time) {
	for k, d := range r.pending {
		if now.Sub(d.first) > r.timeout {
			delete(r.pending, k)
		}
	}
}
