package xdp

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/pipeline"
)

// Neighbour resolution timing.
const (
	// resolveWait is how long Provision waits for the first resolution,
	// so that the first packets are not dropped needlessly; the kernel
	// gives up on ARP after 3 probes 1 s apart.
	resolveWait = 3 * time.Second
	// reprobe is how often an unresolved or stale entry is probed again.
	reprobe = time.Second
)

// macValid marks a published MAC address as usable.
const macValid = 1 << 48

// resolver follows one next hop's MAC address in the kernel's neighbour
// table and publishes it for the workers' TxXDPs, which load it once per
// batch.
//
// xlb's packets leave through AF_XDP, not the kernel's stack, so the
// kernel never uses the entry and would let it go stale and be collected.
// The resolver therefore asks the kernel itself to resolve (RTM_NEWNEIGH
// with NTF_USE: the kernel runs its own ARP or neighbour discovery, as if
// it had a packet to send; no packet of ours is sent) at start, while the
// address is unresolved or failed, and whenever the entry turns stale,
// which makes the kernel confirm it by a unicast probe. A STALE entry is
// still used, as the kernel itself does, until the probe confirms or
// replaces it; a FAILED, INCOMPLETE or deleted entry unpublishes the
// address, so nothing is sent to a MAC the kernel no longer believes.
type resolver struct {
	ifindex int
	ifname  string
	gw      netip.Addr
	log     *slog.Logger

	mac     atomic.Uint64 // macValid | the address, 0 while unresolved
	changes atomic.Uint64
	stale   atomic.Bool // the entry is stale: probe it
	refs    int         // TxXDPs using it, under iface.mu

	done chan struct{}
	wg   sync.WaitGroup
}

// neighUsable reports whether an entry in state may be sent to, and its
// address.
func neighUsable(state int, hw net.HardwareAddr, deleted bool) (uint64, bool) {
	const ok = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE |
		netlink.NUD_PERMANENT | netlink.NUD_NOARP
	if deleted || state&ok == 0 || len(hw) != 6 || bytes.Equal(hw, make([]byte, 6)) {
		return 0, false
	}
	var v uint64
	for _, b := range hw {
		v = v<<8 | uint64(b)
	}
	return v | macValid, true
}

// startResolver subscribes to neighbour updates, reads the current entry,
// asks the kernel to resolve it when needed, and waits up to wait for a
// first answer. It fails only when netlink does; an unresolved next hop is
// not an error (packets are dropped and counted until it resolves).
func startResolver(ifindex int, ifname string, gw netip.Addr, wait time.Duration, log *slog.Logger) (*resolver, error) {
	r := &resolver{ifindex: ifindex, ifname: ifname, gw: gw, log: log, done: make(chan struct{})}
	ch := make(chan netlink.NeighUpdate, 256)
	subDone := make(chan struct{})
	if err := netlink.NeighSubscribeWithOptions(ch, subDone, netlink.NeighSubscribeOptions{}); err != nil {
		return nil, fmt.Errorf("subscribing to neighbour updates: %w", err)
	}
	// Listed after subscribing, so no change falls between the two.
	list, err := netlink.NeighList(ifindex, r.family())
	if err != nil {
		close(subDone)
		return nil, fmt.Errorf("reading the neighbour table: %w", err)
	}
	for _, n := range list {
		r.apply(n, false)
	}
	if r.mac.Load() == 0 || r.stale.Load() {
		r.probe()
	}
	r.wg.Add(1)
	go r.run(ch, subDone)
	deadline := time.Now().Add(wait)
	for r.mac.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if r.mac.Load() == 0 {
		log.Warn("next hop not resolved yet; packets are dropped (xdp.no_neighbor) until it is", "interface", ifname, "gateway", gw)
	}
	return r, nil
}

func (r *resolver) family() int {
	if r.gw.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// run follows updates until stop, resubscribing if the subscription ends,
// and probes while unresolved or stale.
func (r *resolver) run(ch chan netlink.NeighUpdate, subDone chan struct{}) {
	defer r.wg.Done()
	tick := time.NewTicker(reprobe)
	defer tick.Stop()
	for {
		select {
		case <-r.done:
			close(subDone)
			return
		case u, ok := <-ch:
			if !ok {
				// The subscription failed (socket error): take a new one
				// and re-read the table.
				ch = make(chan netlink.NeighUpdate, 256)
				subDone = make(chan struct{})
				if err := netlink.NeighSubscribeWithOptions(ch, subDone, netlink.NeighSubscribeOptions{ListExisting: true}); err != nil {
					r.log.Error("resubscribing to neighbour updates", "err", err)
					ch = nil // retried at the next tick
				}
				continue
			}
			// A lost entry is probed at once (then once per tick while
			// unresolved), a stale one to have the kernel confirm it.
			if lost := r.apply(u.Neigh, u.Type == unix.RTM_DELNEIGH); lost || r.stale.Load() {
				r.probe()
			}
		case <-tick.C:
			if ch == nil {
				ch = make(chan netlink.NeighUpdate, 256)
				subDone = make(chan struct{})
				if err := netlink.NeighSubscribeWithOptions(ch, subDone, netlink.NeighSubscribeOptions{ListExisting: true}); err != nil {
					ch = nil
				}
			}
			if r.mac.Load() == 0 || r.stale.Load() {
				r.probe()
			}
		}
	}
}

// apply takes an entry (from the table or an update) into account if it
// is the next hop's, and reports whether a resolved address was lost.
func (r *resolver) apply(n netlink.Neigh, deleted bool) (lost bool) {
	if n.LinkIndex != r.ifindex {
		return false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok || ip.Unmap() != r.gw {
		return false
	}
	v, _ := neighUsable(n.State, n.HardwareAddr, deleted)
	r.stale.Store(!deleted && n.State&netlink.NUD_STALE != 0)
	if old := r.mac.Swap(v); old != v {
		r.changes.Add(1)
		if v == 0 {
			r.log.Warn("neighbour unresolved; dropping packets to it until it resolves", "interface", r.ifname, "neighbour", r.gw, "state", n.State, "deleted", deleted)
		} else {
			r.log.Info("neighbour resolved", "interface", r.ifname, "neighbour", r.gw, "mac", net.HardwareAddr(n.HardwareAddr).String())
		}
		return v == 0 && old != 0
	}
	return false
}

// probe asks the kernel to resolve the next hop (or confirm a stale
// entry) as it would before sending to it.
func (r *resolver) probe() {
	err := netlink.NeighSet(&netlink.Neigh{LinkIndex: r.ifindex, Family: r.family(), IP: r.gw.AsSlice(), Flags: netlink.NTF_USE})
	if err != nil {
		r.log.Debug("neighbour probe", "neighbour", r.gw, "err", err)
	}
	r.stale.Store(false)
}

// stop ends the resolver's goroutine.
func (r *resolver) stop() {
	close(r.done)
	r.wg.Wait()
}

// follow returns the interface's resolver for addr, starting it on first
// use, and counts a user: TxXDP's gateway and FragRedirect's peers share
// one resolver per address.
func (f *iface) follow(addr netip.Addr, log *slog.Logger) (*resolver, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res := f.neigh[addr]
	if res == nil {
		var err error
		// Waiting under the lock keeps the other workers from starting a
		// second resolver meanwhile; it happens once per run.
		res, err = startResolver(f.index, f.name, addr, resolveWait, log)
		if err != nil {
			return nil, err
		}
		f.neigh[addr] = res
	}
	res.refs++
	return res, nil
}

// unfollow drops a user of res and stops it after the last.
func (f *iface) unfollow(res *resolver) {
	f.mu.Lock()
	res.refs--
	last := res.refs == 0
	if last {
		delete(f.neigh, res.gw)
	}
	f.mu.Unlock()
	if last {
		res.stop()
	}
}

// load returns the published MAC address and whether it is usable.
func (r *resolver) load() (mac [6]byte, ok bool) {
	m := r.mac.Load()
	for i := range mac {
		mac[i] = byte(m >> (40 - 8*i))
	}
	return mac, m&macValid != 0
}

// Follow makes iface the pipeline.Neighbors of its interface, published
// by RxXDP under pipeline.NeighborKey.
func (f *iface) Follow(addr netip.Addr, ctx *pipeline.Context) (pipeline.Neighbor, error) {
	res, err := f.follow(addr.Unmap(), ctx.Logger)
	if err != nil {
		return nil, err
	}
	return &neighbor{ifc: f, res: res}, nil
}

// neighbor is a pipeline.Neighbor over a shared resolver. res never
// changes, so MAC may be called from any goroutine, even after Release
// (it then reports the last address published).
type neighbor struct {
	ifc      *iface
	res      *resolver
	released atomic.Bool
}

func (n *neighbor) MAC() ([6]byte, bool) { return n.res.load() }

func (n *neighbor) Release() {
	if !n.released.Swap(true) {
		n.ifc.unfollow(n.res)
	}
}

var _ pipeline.Neighbors = (*iface)(nil)
