// Package xdp holds RxXDP and TxXDP, xlb's live source and sink: AF_XDP
// sockets (Linux Documentation/networking/af_xdp.rst) built on
// github.com/asavie/xdp, fed by xlb's own XDP program, which sends the
// packets addressed to a VIP to the socket of their RX queue and passes
// everything else (ARP, neighbour discovery, BGP, SSH, health-check
// replies) to the kernel. Forwarding is one-armed and copy-free: a frame
// received in a worker's UMEM is rewritten in place (encapsulation
// prepends into the 256 bytes of headroom the kernel leaves in front of
// the data) and leaves by the TX ring of the same socket.
//
// The program and its maps live in internal/xdpprog, the frame
// accounting over asavie's socket in internal/xsk; this package wires
// them to the pipeline: one program per interface shared by every worker,
// one socket per worker (its RX queue), the VIP maps kept equal to the
// control plane's snapshot by a goroutine per interface that watches the
// snapshot store, and the next hop's MAC address followed in the kernel's
// neighbour table.
package xdp

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/xdp/internal/xdpprog"
	"github.com/xlbproject/xlb/pipeline"
)

// iface is what every worker shares about one interface: its XDP program
// (attached by the first RxXDP provisioned, detached by the last one
// cleaned up), the goroutine that keeps the program's VIP maps equal to the
// current snapshot while it is attached, each worker's RxXDP (for TxXDP to
// find its socket) and the next-hop resolvers. Found through
// pipeline.Context.Shared by name.
type iface struct {
	mu    sync.Mutex
	name  string
	index int
	mac   net.HardwareAddr
	mode  xdpprog.Mode
	prog  *xdpprog.Program
	// progID is prog's id, which the interface reports while prog is
	// attached (the self-check compares them).
	progID uint32
	refs   int            // provisioned RxXDPs
	rx     map[int]*RxXDP // by worker
	neigh  map[netip.Addr]*resolver

	// The VIP map follower: stop ends it, done is closed when it has.
	stop, done chan struct{}
	// steered is the endpoints translators steer, by owner
	// (SteerReplies); poke wakes the follower to apply them.
	steered map[string][]pipeline.ServiceEndpoint
	// pools is the source pools translators steer replies to, by owner
	// (SteerPool): left out of the node's addresses in the reply maps.
	pools map[string][]netip.Addr
	poke  chan struct{}
	// Updates of the VIP maps after a publication, and failed ones.
	vipSyncs, vipSyncErrors atomic.Uint64
}

type ifaceKey struct{ name string }

// acquire loads and attaches the program on first use, with the VIPs of
// the current snapshot already in its maps, starts following the store
// so that they stay equal to the current snapshot's, and counts a user.
func (f *iface) acquire(mode xdpprog.Mode, st *snapshot.Store, log *slog.Logger) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs > 0 {
		if mode != f.mode {
			return fmt.Errorf("interface %s is already used in %s mode by another RxXDP; use one mode per interface", f.name, f.mode)
		}
		f.refs++
		return nil
	}
	l, err := netlink.LinkByName(f.name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", f.name, err)
	}
	f.index, f.mac = l.Attrs().Index, l.Attrs().HardwareAddr
	if len(f.mac) != 6 {
		return fmt.Errorf("interface %s has no Ethernet address", f.name)
	}
	// Refuse before loading anything, so a second xlbd fails fast and
	// says why.
	if id, err := xdpprog.Attached(f.name); err != nil {
		return err
	} else if id != 0 {
		return &xdpprog.AttachedError{Interface: f.name, ID: id}
	}
	p, err := xdpprog.Load()
	if err != nil {
		return err
	}
	// The maps are right before the first packet can arrive: filled
	// before the program is attached, from the snapshot whose successor
	// the follower waits for.
	s, changed := st.Watch()
	if err := p.SetVIPs(vipAddrs(s), otherShards(s)); err != nil {
		p.Close()
		return err
	}
	if err := f.setReplies(p); err != nil {
		p.Close()
		return err
	}
	id, err := p.ID()
	if err == nil {
		err = p.Attach(f.name, mode)
	}
	if err != nil {
		p.Close()
		return err
	}
	log.Info("XDP program attached", "interface", f.name, "mode", mode.String())
	f.prog, f.progID, f.mode, f.refs = p, id, mode, 1
	if f.rx == nil {
		f.rx = map[int]*RxXDP{}
		f.neigh = map[netip.Addr]*resolver{}
	}
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	if f.poke == nil {
		f.poke = make(chan struct{}, 1)
	}
	go func(stop, done chan struct{}, poke <-chan struct{}) {
		defer close(done)
		followVIPs(st, changed, stop, poke, func(s *snapshot.Snapshot) { f.syncVIPs(p, s, log) })
	}(f.stop, f.done, f.poke)
	return nil
}

// followVIPs calls sync with every snapshot st publishes after the one
// whose successor closes changed, and with the latest one at every poke,
// until stop is closed. A publication that comes while sync runs is not
// missed: sync then gets the latest one.
func followVIPs(st *snapshot.Store, changed, stop, poke <-chan struct{}, sync func(*snapshot.Snapshot)) {
	for {
		var s *snapshot.Snapshot
		select {
		case <-stop:
			return
		case <-changed:
			s, changed = st.Watch()
		case <-poke:
			s = st.Load()
		}
		sync(s)
	}
}

// SteerReplies makes the program hand the graph the packets from eps to
// addresses not the node's own, in place of what owner steered before
// (pipeline.ReplySteering). The follower applies it.
func (f *iface) SteerReplies(owner string, eps []pipeline.ServiceEndpoint) {
	f.mu.Lock()
	if f.steered == nil {
		f.steered = map[string][]pipeline.ServiceEndpoint{}
	}
	if len(eps) == 0 {
		delete(f.steered, owner)
	} else {
		f.steered[owner] = slices.Clone(eps)
	}
	poke := f.poke
	f.mu.Unlock()
	if poke != nil {
		select {
		case poke <- struct{}{}:
		default: // a sync is due already, and will see this
		}
	}
}

// SteerPool makes the program hand the graph the packets from the steered
// endpoints to addrs too, though they are the node's own: a full-NAT
// source pool (pipeline.PoolSteering). The follower applies it.
func (f *iface) SteerPool(owner string, addrs []netip.Addr) {
	f.mu.Lock()
	if f.pools == nil {
		f.pools = map[string][]netip.Addr{}
	}
	if len(addrs) == 0 {
		delete(f.pools, owner)
	} else {
		f.pools[owner] = slices.Clone(addrs)
	}
	poke := f.poke
	f.mu.Unlock()
	if poke != nil {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
}

// setReplies writes the steered endpoints to p's reply maps, with the
// node's addresses, those of every interface, read now. Called with f.mu
// held.
func (f *iface) setReplies(p *xdpprog.Program) error {
	var eps []xdpprog.Endpoint
	for _, owner := range slices.Sorted(maps.Keys(f.steered)) {
		for _, e := range f.steered[owner] {
			eps = append(eps, xdpprog.Endpoint{Addr: e.Addr, Port: e.Port, Proto: e.Proto})
		}
	}
	var local []netip.Addr
	if len(eps) > 0 {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return fmt.Errorf("reading the node's addresses: %w", err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && !f.pooled(ip.Unmap()) {
					local = append(local, ip.Unmap())
				}
			}
		}
	}
	return p.SetReplies(eps, local)
}

// pooled reports whether a is a source pool's address: not the node's
// own for the reply maps, so that replies to it are steered. Called with
// f.mu held.
func (f *iface) pooled(a netip.Addr) bool {
	for _, addrs := range f.pools {
		if slices.Contains(addrs, a) {
			return true
		}
	}
	return false
}

// syncVIPs makes p's VIP maps hold s's VIPs, unless p has been detached
// meanwhile. It runs on the follower goroutine, off the workers' path:
// updating the maps takes system calls.
func (f *iface) syncVIPs(p *xdpprog.Program, s *snapshot.Snapshot, log *slog.Logger) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prog != p {
		return
	}
	f.vipSyncs.Add(1)
	if err := p.SetVIPs(vipAddrs(s), otherShards(s)); err != nil {
		f.vipSyncErrors.Add(1)
		log.Error("updating the XDP VIP maps", "interface", f.name, "generation", s.Generation, "err", err)
	}
	if err := f.setReplies(p); err != nil {
		f.vipSyncErrors.Add(1)
		log.Error("updating the XDP reply maps: replies of the steered backends go to the kernel", "interface", f.name, "err", err)
	}
}

// selfCheck reports whether the program is still the one attached to the
// interface: another tool may detach or replace it behind xlbd's back, and
// then no VIP packet reaches any socket.
func (f *iface) selfCheck() error {
	f.mu.Lock()
	want := f.progID
	attached := f.prog != nil
	f.mu.Unlock()
	if !attached {
		return fmt.Errorf("no XDP program on %s", f.name)
	}
	id, err := xdpprog.Attached(f.name)
	switch {
	case err != nil:
		return err
	case id == 0:
		return fmt.Errorf("the XDP program (id %d) is no longer attached to %s", want, f.name)
	case id != want:
		return fmt.Errorf("the XDP program on %s was replaced: id %d, not xlbd's %d", f.name, id, want)
	}
	return nil
}

// release counts a user gone; the last one stops the follower and detaches
// the program.
func (f *iface) release() error {
	f.mu.Lock()
	if f.refs--; f.refs > 0 {
		f.mu.Unlock()
		return nil
	}
	p, stop, done := f.prog, f.stop, f.done
	f.prog = nil
	f.mu.Unlock()
	// Waited for outside the lock, which a sync in progress holds.
	close(stop)
	<-done
	if err := p.Close(); err != nil {
		return fmt.Errorf("detaching XDP from %s: %w", f.name, err)
	}
	return nil
}

// otherShards are the addresses of s's VIPs of other shards, which the
// program passes to the kernel, counted.
func otherShards(s *snapshot.Snapshot) []netip.Addr {
	if s == nil {
		return nil
	}
	return s.OtherShards
}

// vipAddrs is the set of VIP addresses of a snapshot (several VIPs may
// share one address with different ports or protocols).
func vipAddrs(s *snapshot.Snapshot) []netip.Addr {
	if s == nil {
		return nil
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, v := range s.VIPs {
		a := v.Addr.Unmap()
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

var (
	_ pipeline.ReplySteering = (*iface)(nil)
	_ pipeline.PoolSteering  = (*iface)(nil)
)
