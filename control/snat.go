package control

import (
	"hash/fnv"
	"net/netip"
	"slices"

	"github.com/xlbproject/xlb/control/snapshot"
)

// SNAT (Ananta, Patel et al., SIGCOMM 2013, section 3.5): a backend opens
// connections to hosts beyond the router with the VIP as source address and
// a source port from its own range. A reply may reach any node by ECMP, so
// every node must map the port back to the same backend with no shared
// state: the ranges are computed here, like Maglev tables, from the
// configuration alone (backend names, the range size, the service ports on
// the VIP's address), never from real IDs, health or weights.
//
// The port space is SNATFirstPort..65535, cut into ranges of snat_ports
// ports: range k holds ports SNATFirstPort+k·N .. SNATFirstPort+(k+1)·N-1.
// A range that holds a service port of a VIP on the same address is never
// used, so that a packet to a service port is always load-balanced. Each
// backend prefers range fnv1a64(name) mod K (K ranges) and, taking them in
// name order, gets the first usable range not yet taken from there on,
// wrapping. So:
//   - a backend's range depends on its name, the range size and the service
//     ports, not on the VIP: a backend of several VIPs with the same
//     snat_ports usually has the same range on each (one rule on the
//     backend);
//   - adding or removing a backend moves only the backends whose search
//     passed through the range it takes or frees (a collision), never the
//     others; with K well above the number of backends collisions are
//     rare, and `xlbd plan` names every range a change moves.

// SNATFirstPort is the first port SNAT ranges use: the ports below are
// the well-known ones, which servers listen on.
const SNATFirstPort = 1024

// SNATSpace is how many ports SNAT ranges share: SNATFirstPort to 65535.
const SNATSpace = 1<<16 - SNATFirstPort

// attrSNATPorts is the vip attribute that enables SNAT.
const attrSNATPorts = "snat_ports"

// snatUsable returns, for ranges of size ports, whether each range k is
// usable: it holds none of the excluded ports.
func snatUsable(size uint32, excluded []uint16) []bool {
	if size == 0 || size > SNATSpace {
		return nil
	}
	usable := make([]bool, SNATSpace/size)
	for i := range usable {
		usable[i] = true
	}
	for _, p := range excluded {
		if p < SNATFirstPort {
			continue
		}
		if k := (uint32(p) - SNATFirstPort) / size; k < uint32(len(usable)) {
			usable[k] = false
		}
	}
	return usable
}

// snatFree counts the usable ranges.
func snatFree(usable []bool) int {
	n := 0
	for _, u := range usable {
		if u {
			n++
		}
	}
	return n
}

// snatAssign returns the range of each of names (sorted by name, each
// once): ranges[i] is the range index k of names[i]. It reports false when
// the usable ranges are fewer than the names.
func snatAssign(names []string, usable []bool) (ranges []uint32, ok bool) {
	if len(names) > snatFree(usable) {
		return nil, false
	}
	taken := make([]bool, len(usable))
	ranges = make([]uint32, len(names))
	for i, name := range names {
		h := fnv.New64a()
		h.Write([]byte(name))
		k := int(h.Sum64() % uint64(len(usable)))
		for !usable[k] || taken[k] {
			if k++; k == len(usable) {
				k = 0
			}
		}
		taken[k] = true
		ranges[i] = uint32(k)
	}
	return ranges, true
}

// snatExcluded returns, for each address of a VIP with SNAT, the service
// ports of every VIP on that address, which no SNAT range may hold.
func snatExcluded(vips []VIP) map[netip.Addr][]uint16 {
	var out map[netip.Addr][]uint16
	for i := range vips {
		if vips[i].SNATPorts > 0 {
			if out == nil {
				out = map[netip.Addr][]uint16{}
			}
			out[vips[i].Address.Unmap()] = nil
		}
	}
	if out == nil {
		return nil
	}
	for i := range vips {
		a := vips[i].Address.Unmap()
		if ports, ok := out[a]; ok {
			out[a] = append(ports, vips[i].Ports...)
		}
	}
	return out
}

// snatOf builds the SNAT ranges of VIP v over its reals (members, sorted
// by name, with real IDs ids), and the digest of what they mean: the range
// size and, for each backend by name, its range. Validate has checked
// that they fit.
func snatOf(v *VIP, members []*Backend, ids []uint32, excluded []uint16) *snapshot.SNAT {
	usable := snatUsable(v.SNATPorts, excluded)
	names := make([]string, len(members))
	for i, b := range members {
		names[i] = b.Name
	}
	ranges, ok := snatAssign(names, usable)
	if !ok {
		return nil
	}
	s := &snapshot.SNAT{First: SNATFirstPort, Size: uint16(v.SNATPorts), Owners: slices.Repeat([]uint32{snapshot.NoReal}, len(usable)),
		Service: slices.Compact(slices.Sorted(slices.Values(excluded)))}
	e := newEncoder("xlb-snat-v1")
	e.uint(SNATFirstPort)
	e.uint(uint64(v.SNATPorts))
	e.uint(uint64(len(names)))
	for i, k := range ranges {
		s.Owners[k] = ids[i]
		e.str(names[i])
		e.uint(uint64(k))
	}
	s.Digest = e.sum()
	return s
}

// snatCache is a VIP's SNAT ranges and what they were computed from: the
// range size, its real IDs (the very same assignment, which ids.assign
// keeps while the VIP's backend names are the same) and the excluded
// ports.
type snatCache struct {
	size     uint32
	ids      *vipIDs
	excluded []uint16
	s        *snapshot.SNAT
}

// reuse returns c when it was computed from these inputs, nil otherwise
// (or when c is nil).
func (c *snatCache) reuse(size uint32, ids *vipIDs, excluded []uint16) *snatCache {
	if c == nil || c.size != size || c.ids != ids || !slices.Equal(c.excluded, excluded) {
		return nil
	}
	return c
}

// withSNAT is a VIP's table digest covering its SNAT ranges too, so that
// nodes that map a reply's port to different backends disagree as nodes
// with different tables do. A VIP without SNAT keeps its table's digest,
// the same as before SNAT existed.
func withSNAT(tableDigest string, s *snapshot.SNAT) string {
	if s == nil {
		return tableDigest
	}
	e := newEncoder("xlb-table-snat-v1")
	e.str(tableDigest)
	e.str(s.Digest)
	return e.sum()
}
