package nat

import (
	"github.com/xlbproject/xlb/elements/internal/csum"
	"github.com/xlbproject/xlb/pipeline"
)

// protoICMP is ICMP's protocol number, over IPv4 (over IPv6, 58 is).
const protoICMP = 1

// translateICMPError rewrites an ICMP error about a flow (RFC 5508 §4.2),
// p as Parse5Tuple gave it (the flow the quote's reverse): the outer
// source and destination addresses to osrc and odst, and the quoted
// packet's source to qsrc:qsport and its destination to qdst:qdport,
// each left alone when nil (NAT rewrites one side, FullNAT both). The
// outer and the quoted IPv4 header checksums, the quoted transport
// checksum when quoted whole, and the ICMP checksum over all of it (and
// ICMPv6's pseudo-header) are updated. It reports false, the packet
// unchanged, when the quote's transport header is after IPv6 extension
// headers (or the quote is cut short).
func translateICMPError(p *pipeline.Packet, osrc, odst, qsrc, qdst []byte, qsport, qdport uint16) bool {
	f := &p.Flow
	d := p.Data()
	ip, icmp := d[p.L3:], d[p.L4:]
	v4 := f.Family == 4
	// Parse5Tuple checked the quote's IP header; checked again here, as
	// cheap as a comment, so that no input can make a translator read
	// past it.
	if len(icmp) < 8+20 {
		return false
	}
	q := icmp[8:]
	qhl := 40
	if v4 {
		qhl = int(q[0]&0x0f) << 2
	} else if len(q) < qhl || q[6] != f.Proto {
		return false
	}
	if qhl < 20 || len(q) < qhl {
		return false
	}
	ql4 := q[qhl:]
	ports := f.Flags&pipeline.FlowFragment == 0 && (f.Proto == protoTCP || f.Proto == protoUDP) && len(ql4) >= 4
	if !ports {
		ql4 = nil
	}
	so, do := addrOffsets(v4)
	var odiff, qdiff, hdiff uint32
	add := func(diff, h uint32) { qdiff += diff; hdiff += h }
	if osrc != nil {
		diff, _ := rewrite(ip, v4, so, osrc, nil, 0, 0)
		odiff += diff
	}
	if odst != nil {
		diff, _ := rewrite(ip, v4, do, odst, nil, 0, 0)
		odiff += diff
	}
	if qsrc != nil {
		add(rewrite(q, v4, so, qsrc, ql4, 0, qsport))
	}
	if qdst != nil {
		add(rewrite(q, v4, do, qdst, ql4, 2, qdport))
	}
	// The quoted transport checksum, when quoted whole.
	cdiff := uint32(0)
	c := -1
	switch {
	case ql4 == nil:
	case f.Proto == protoTCP && len(ql4) >= 18:
		c = 16
	case f.Proto == protoUDP && len(ql4) >= 8 && (!v4 || join(ql4[6:]) != 0):
		c = 6
	}
	if c >= 0 {
		oc := join(ql4[c:])
		nc := csum.Update(oc, qdiff)
		if nc == 0 && f.Proto == protoUDP {
			nc = 0xffff
		}
		ql4[c], ql4[c+1] = split(nc)
		cdiff = uint32(^oc) + uint32(nc)
	}
	total := qdiff + hdiff + cdiff
	if !v4 {
		total += odiff // ICMPv6's pseudo-header
	}
	icmp[2], icmp[3] = split(csum.Update(join(icmp[2:]), total))
	return true
}
