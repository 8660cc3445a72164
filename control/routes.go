package control

import (
	"net/netip"

	"github.com/xlbproject/xlb/control/snapshot"
)

// Route is one prefix a route announcer should announce now.
type Route struct {
	// VIP names the VIP the prefix is announced for: the first by name of
	// those with this address that should be announced (several VIPs may
	// share an address, on other ports or protocols).
	VIP string
	// Prefix is the VIP's address as a host route (/32 or /128).
	Prefix netip.Prefix
}

// DesiredRoutes is the full set of routes to announce now, level-triggered:
// a VIP's address while the VIP has at least one healthy backend in s, and
// nothing at all while the forwarder fails its self-check (selfCheck is its
// error, nil when it passes). Health comes from the snapshot, the one the
// data plane forwards with, so the health scheduler's rise and fall are the
// only dampening a route sees. A draining backend counts as healthy: it
// still serves the flows it has, which withdrawing the VIP would break. The
// routes are in VIP name order (the snapshot's), one per address.
func DesiredRoutes(s *snapshot.Snapshot, selfCheck error) []Route {
	if selfCheck != nil || s == nil {
		return nil
	}
	var out []Route
	seen := map[netip.Addr]bool{}
	for _, v := range s.VIPs {
		a := v.Addr.Unmap()
		if !a.IsValid() || seen[a] || !servable(s, &v) {
			continue
		}
		seen[a] = true
		out = append(out, Route{VIP: v.Name, Prefix: netip.PrefixFrom(a, a.BitLen())})
	}
	return out
}

// servable reports whether one of v's reals keeps flows (is up or
// draining).
func servable(s *snapshot.Snapshot, v *snapshot.VIP) bool {
	for _, id := range v.Reals {
		if int(id) < s.Reals.Len() && s.Reals.At(id).Epoch != 0 && s.Reals.At(id).KeepsFlows() {
			return true
		}
	}
	return false
}
