package pipeline

import "net/netip"

// NeighborKey is the Context.Shared key under which the source element
// of an interface (RxXDP) publishes a Neighbors for it, so that an element
// of another package can send to a host on that link without importing the
// source's package.
type NeighborKey struct{ Interface string }

// Neighbors follows hosts' link-layer addresses on one interface.
type Neighbors interface {
	// Follow starts following addr's MAC address (or joins the follower
	// already running) and returns it. Called from Provision; Release
	// it in Cleanup.
	Follow(addr netip.Addr, ctx *Context) (Neighbor, error)
}

// Neighbor is one followed host. MAC is safe to call from any goroutine
// (a worker calls it once per batch, Stats any time, even after Release):
// it loads the address last resolved, and reports false while the host is
// unresolved. Release may be called more than once.
type Neighbor interface {
	MAC() ([6]byte, bool)
	Release()
}
