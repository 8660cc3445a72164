package parse

import (
	"encoding/binary"

	"github.com/xlbproject/xlb/control/snapshot"
)

// vipFilter tells whether a packet's source is one of the snapshot's VIP
// addresses: a martian (parse.martian_vip), since the backend would answer
// that VIP, that is the balancer, and not a client. Every packet asks, so
// the common answer, no, costs a multiplication and one bit of a 512-byte
// bitmap that stays in L1; only a source whose bit is set (a VIP's, or
// about one in 4096/VIPs others) goes on to the exact set. It is rebuilt by
// the worker when a batch's snapshot is new (snapshot.View.Changed), off
// the per-packet path.
type vipFilter struct {
	bits  [vipFilterBits / 64]uint64
	exact map[[2]uint64]struct{} // the addresses, IPv4 as ::ffff:a.b.c.d
}

const vipFilterBits = 4096

// noVIPs is the empty filter, for FragRedirect's parse: which VIPs a
// source must not be is Parse5Tuple's business, after it.
var noVIPs vipFilter

// vipBit is the bitmap index of an address of low 64 bits lo: the top 12
// bits of a Fibonacci hash.
func vipBit(lo uint64) uint64 { return lo * 0x9e3779b97f4a7c15 >> 52 }

// build fills the filter with the VIP addresses of s.
func (f *vipFilter) build(s *snapshot.Snapshot) {
	f.bits = [vipFilterBits / 64]uint64{}
	if f.exact == nil {
		f.exact = map[[2]uint64]struct{}{}
	}
	clear(f.exact)
	for i := range s.VIPs {
		a := s.VIPs[i].Addr.As16()
		k := [2]uint64{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
		f.exact[k] = struct{}{}
		b := vipBit(k[1])
		f.bits[b>>6] |= 1 << (b & 63)
	}
}

// maybe reports whether the address of low 64 bits lo may be a VIP's:
// false is certain, true needs has.
func (f *vipFilter) maybe(lo uint64) bool {
	b := vipBit(lo)
	return f.bits[(b>>6)&63]&(1<<(b&63)) != 0
}

// has reports whether the address of high and low 64 bits hi and lo
// (IPv4 as ::ffff:a.b.c.d) is a VIP's.
func (f *vipFilter) has(hi, lo uint64) bool {
	if !f.maybe(lo) {
		return false
	}
	_, ok := f.exact[[2]uint64{hi, lo}]
	return ok
}
