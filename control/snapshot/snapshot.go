// Package snapshot holds the immutable view of the service configuration
// that the data plane reads: VIPs, their reals (a backend as a member of one
// VIP) with weight and health state, and one Maglev lookup table per VIP.
//
// The control plane builds a new Snapshot on every change and publishes it
// through a Store; each worker loads it once per batch, through its View,
// and every element of the batch reads that one. Nothing here is mutated
// after publication, so the hot path takes no lock.
package snapshot

import (
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/xlbproject/xlb/control/maglev"
	"github.com/xlbproject/xlb/pipeline"
)

// State is what a real may do with flows.
type State uint8

const (
	// Up: healthy with weight > 0. Takes new flows, keeps its flows.
	Up State = iota
	// Draining: weight 0 or drained by an operator. Keeps the flows it
	// has, takes no new ones.
	Draining
	// Down: failed health checks. Its flows are re-selected.
	Down
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Draining:
		return "draining"
	case Down:
		return "down"
	}
	return "unknown"
}

// Real is one backend as a member of one VIP. Its ID is stable for the same
// (VIP name, backend name) across snapshots; Epoch changes when an ID is
// reused for another real, so a connection-tracking entry that stored
// (ID, Epoch) can tell "my backend" from "a new backend in my old slot".
type Real struct {
	ID      uint32
	Epoch   uint32 // 0 marks an unused ID in Snapshot.Reals
	VIP     uint32 // index into Snapshot.VIPs
	Backend string // backend name, unique in the configuration
	Addr    netip.Addr
	// Addr16 is Addr as 16 bytes (IPv4-mapped for IPv4), for the hot path.
	Addr16 [16]byte
	Family uint8 // 4 or 6
	Weight uint32
	State  State
}

// KeepsFlows reports whether established flows may stay on the real.
func (r *Real) KeepsFlows() bool { return r.State == Up || r.State == Draining }

// VIP is one virtual service: an address, a protocol and ports.
type VIP struct {
	Name  string
	Addr  netip.Addr
	Proto uint8    // IP protocol number; 0 matches any protocol
	Ports []uint16 // empty matches every port
	// Reals lists the IDs of this VIP's reals, sorted by backend name.
	Reals []uint32
	// Table is the Maglev lookup table: slot -> real ID. Its length M is
	// prime. It is empty when no real can take new flows.
	Table []uint32
	// TableDigest is the hex digest of what Table means for flows (the
	// hash seed, M and the backend name at every slot): equal on every
	// node that has the same table, whatever its real IDs.
	TableDigest string
	// SNAT holds the source-port ranges of the VIP's reals for their own
	// outbound connections; nil when the VIP has no SNAT.
	SNAT *SNAT
}

// NoReal marks a SNAT range that no real owns.
const NoReal = ^uint32(0)

// SNAT is a VIP's source-port ranges (control/snat.go computes them, the
// same on every node): range k holds ports First+k·Size to
// First+(k+1)·Size-1 and belongs to real Owners[k], or to none (NoReal).
type SNAT struct {
	First, Size uint16
	Owners      []uint32
	// Service are the service ports of every VIP on the address, sorted:
	// no range holds one.
	Service []uint16
	// Digest is the digest of what the ranges mean (sizes and backend
	// names), part of the VIP's TableDigest.
	Digest string
}

// Owner returns the ID of the real whose range holds port, or NoReal.
func (s *SNAT) Owner(port uint16) uint32 {
	if port < s.First {
		return NoReal
	}
	k := uint32(port-s.First) / uint32(s.Size)
	if k >= uint32(len(s.Owners)) {
		return NoReal
	}
	return s.Owners[k]
}

// Text is real id's range as plans and the admin API show it,
// "first-last"; "" when s is nil or the real owns no range.
func (s *SNAT) Text(id uint32) string {
	if s == nil {
		return ""
	}
	first, last, ok := s.Range(id)
	if !ok {
		return ""
	}
	return strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(last))
}

// Range returns the first and last port of real id's range, and false when
// the real owns none.
func (s *SNAT) Range(id uint32) (first, last uint16, ok bool) {
	for k, o := range s.Owners {
		if o == id {
			first = s.First + uint16(k)*s.Size
			return first, first + s.Size - 1, true
		}
	}
	return 0, 0, false
}

// Snapshot is one immutable generation of the service state.
type Snapshot struct {
	Generation uint64
	// HashSeed seeds the flow hash. It comes from config so that every
	// node computes the same hash for the same flow.
	HashSeed uint64
	VIPs     []VIP
	// Reals is indexed by real ID.
	Reals Reals
	// ConfigDigest is the hex digest of the applied service configuration
	// (control.Config.Digest): equal on every node that applied the same
	// configuration, however it was written. Empty before the first.
	ConfigDigest string
	// OtherShards are the addresses of the VIPs this node does not serve
	// (another shard's; VIPs that share an address share their shards),
	// sorted: the XDP program passes their packets to the kernel and
	// counts them, where a packet to an address it knows nothing of is
	// passed uncounted.
	OtherShards []netip.Addr

	index map[vipKey]uint32
	// frags maps (address, protocol) to the VIP of flows keyed without
	// ports (FlowFragment: ICMP errors quoting a non-first fragment).
	// Fragments themselves carry their datagram's ports.
	frags map[vipKey]uint32
	// snat maps an address to the VIP whose SNAT ranges are on it (at most
	// one per address: control.Config.Validate); snatAddrs and snatVIPs
	// are the same when there are few, searched faster than a map.
	snat      map[[16]byte]uint32
	snatAddrs [][16]byte
	snatVIPs  []uint32
}

// fewSNAT is how many SNAT addresses SNATVIP compares one by one.
const fewSNAT = 8

type vipKey struct {
	addr  [16]byte
	proto uint8
	port  uint16
}

// anyPort is the key port of a VIP that matches every port; port 0 is
// not a valid TCP/UDP destination, so it cannot collide.
const anyPort = 0

// New builds a snapshot and its lookup index. vips is owned by the snapshot
// from now on and must not be modified; reals is copied.
func New(generation, hashSeed uint64, vips []VIP, reals []Real) *Snapshot {
	return NewFrom(generation, hashSeed, vips, MakeReals(reals))
}

// NewFrom is New over reals in chunks, which it may share with other
// snapshots (see Editor).
func NewFrom(generation, hashSeed uint64, vips []VIP, reals Reals) *Snapshot {
	s := &Snapshot{Generation: generation, HashSeed: hashSeed, VIPs: vips, Reals: reals,
		index: make(map[vipKey]uint32, len(vips)), frags: make(map[vipKey]uint32, len(vips))}
	for i, v := range vips {
		a := v.Addr.As16()
		fk := vipKey{a, v.Proto, anyPort}
		if j, ok := s.frags[fk]; !ok || v.Name < vips[j].Name {
			s.frags[fk] = uint32(i)
		}
		if v.SNAT != nil {
			if s.snat == nil {
				s.snat = map[[16]byte]uint32{}
			}
			s.snat[a] = uint32(i)
			s.snatAddrs, s.snatVIPs = append(s.snatAddrs, a), append(s.snatVIPs, uint32(i))
		}
		if len(v.Ports) == 0 {
			s.index[vipKey{a, v.Proto, anyPort}] = uint32(i)
			continue
		}
		for _, p := range v.Ports {
			s.index[vipKey{a, v.Proto, p}] = uint32(i)
		}
	}
	return s
}

// LookupVIP returns the index of the VIP that a packet of flow f belongs
// to. A VIP with a specific protocol and port wins over one that matches any
// port, which wins over one that matches any protocol.
//
// Ports only mean something for TCP, UDP and SCTP: for any other protocol
// the port is ignored, so that an ICMP echo identifier (which Parse5Tuple
// keeps in the port fields) never matches a port-specific VIP. Fragments
// carry their datagram's ports (Parse5Tuple's fragment table) and are
// port-filtered like any packet. A flow keyed without ports (FlowFragment:
// an ICMP error quoting a non-first fragment) belongs to the VIP with its
// address and protocol, and when several VIPs share those with different
// ports, to the first of them by name.
func (s *Snapshot) LookupVIP(f *pipeline.Flow) (uint32, bool) {
	port := f.DstPort
	if f.Proto != 6 && f.Proto != 17 && f.Proto != 132 {
		port = anyPort
	}
	if f.Flags&pipeline.FlowFragment != 0 {
		if i, ok := s.frags[vipKey{f.Dst, f.Proto, anyPort}]; ok {
			return i, true
		}
		i, ok := s.frags[vipKey{f.Dst, 0, anyPort}]
		return i, ok
	}
	for _, k := range [...]vipKey{{f.Dst, f.Proto, port}, {f.Dst, f.Proto, anyPort}, {f.Dst, 0, port}, {f.Dst, 0, anyPort}} {
		if i, ok := s.index[k]; ok {
			return i, true
		}
	}
	return 0, false
}

// SNATVIP returns the index of the VIP whose SNAT ranges are on address
// dst (IPv4-mapped for IPv4), if any.
func (s *Snapshot) SNATVIP(dst *[16]byte) (uint32, bool) {
	if len(s.snatAddrs) <= fewSNAT {
		for j := range s.snatAddrs {
			if s.snatAddrs[j] == *dst {
				return s.snatVIPs[j], true
			}
		}
		return 0, false
	}
	i, ok := s.snat[*dst]
	return i, ok
}

// Pick returns the ID of the real in the slot of v's Maglev table that a
// flow hash maps to (maglev.Slot, the same on every node). The table must
// not be empty.
func (v *VIP) Pick(hash uint64) uint32 { return v.Table[maglev.Slot(hash, len(v.Table))] }

// Real returns the real with the given ID and epoch, or nil when that real
// no longer exists.
func (s *Snapshot) Real(id, epoch uint32) *Real {
	if int(id) >= s.Reals.Len() {
		return nil
	}
	r := s.Reals.At(id)
	if r.Epoch != epoch || r.Epoch == 0 {
		return nil
	}
	return r
}

// ShortDigest is a digest shortened for logs: 12 hex digits (48 bits), as
// short Git commit names, enough to tell a handful of configurations apart
// by eye; compare whole digests to prove agreement.
func ShortDigest(d string) string { return d[:min(len(d), 12)] }

// Store publishes snapshots to workers.
type Store struct {
	mu sync.Mutex // serialises Publish
	p  atomic.Pointer[published]
}

// published is one Publish: the snapshot, its rank among the store's
// publications (so that a reader can tell a new publication from the one
// it saw last without keeping the old snapshot alive), and the channel the
// next Publish closes.
type published struct {
	s    *Snapshot
	seq  uint64
	next chan struct{}
}

// NewStore returns a store holding s.
func NewStore(s *Snapshot) *Store {
	st := &Store{}
	st.Publish(s)
	return st
}

// Load returns the current snapshot. Never nil once published.
//
// Elements do not call it: they read the worker's View, which loads the
// store once per batch for all of them.
func (st *Store) Load() *Snapshot {
	if p := st.p.Load(); p != nil {
		return p.s
	}
	return nil
}

// Publish makes s the current snapshot and wakes the watchers.
func (st *Store) Publish(s *Snapshot) {
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.current()
	st.p.Store(&published{s: s, seq: old.seq + 1, next: make(chan struct{})})
	close(old.next)
}

// Watch returns the current snapshot (nil before the first Publish) and a
// channel that the next Publish closes. A subscriber that keeps something
// outside the data plane equal to the current snapshot (the XDP program's
// VIP maps) loops on it: update from the snapshot, wait for the channel,
// Watch again. Publications in between are skipped, never the last one.
func (st *Store) Watch() (*Snapshot, <-chan struct{}) {
	p := st.p.Load()
	if p == nil {
		st.mu.Lock()
		defer st.mu.Unlock()
		p = st.current()
	}
	return p.s, p.next
}

// current returns the current publication, creating an empty one (no
// snapshot yet) in a new store. st.mu must be held.
func (st *Store) current() *published {
	p := st.p.Load()
	if p == nil {
		p = &published{next: make(chan struct{})}
		st.p.Store(p)
	}
	return p
}

// View is one worker's view of a Store: the snapshot of the batch under
// way, loaded once at its start for every element of the worker. A
// generation published in the middle of a batch is seen by none of the
// batch's elements, so a backend chosen by one is resolved by the next in
// the same generation. The engine runs a View's StartBatch before any
// element's and its EndBatch after every element's (pipeline.Context.Local);
// it is owned by the worker's goroutine.
type View struct {
	store   *Store
	cur     *Snapshot
	seq     uint64 // the publication of the last batch's snapshot
	changed bool
}

// NewView returns a view of st. Elements get theirs from ViewFromContext;
// a test that drives an element without a graph calls the view's
// StartBatch and EndBatch around the element's.
func NewView(st *Store) *View { return &View{store: st} }

// StartBatch loads the current snapshot for the batch.
func (v *View) StartBatch(int64) {
	p := v.store.p.Load()
	v.cur = p.s
	v.changed = p.seq != v.seq
	v.seq = p.seq
}

// EndBatch drops the batch's snapshot, so that an idle worker does not keep
// an old generation alive.
func (v *View) EndBatch() { v.cur = nil }

// Snapshot returns the batch's snapshot: valid from StartBatch to EndBatch,
// nil outside a batch.
func (v *View) Snapshot() *Snapshot { return v.cur }

// Changed reports whether the batch's snapshot was published after the
// previous batch's (true for the first batch): elements that derive state
// from the snapshot rebuild it then.
func (v *View) Changed() bool { return v.changed }

// Checker is implemented by an element that refuses at start some
// snapshots its configuration cannot serve, for reasons Validate cannot
// see (it has no snapshot): the loader builds the snapshot of the file it
// checks and calls CheckSnapshot with the pipeline's workers attribute (0
// when the daemon picks them), so that checking a file reports what
// starting it would refuse. It must have no side effects.
type Checker interface {
	CheckSnapshot(s *Snapshot, workers int) error
}

type storeKey struct{}

// ContextValues returns the pipeline.Options values that hand st to elements.
func ContextValues(st *Store) map[any]any { return map[any]any{storeKey{}: st} }

// WithStore adds st to an existing map of pipeline.Options values.
func WithStore(values map[any]any, st *Store) map[any]any {
	if values == nil {
		values = map[any]any{}
	}
	values[storeKey{}] = st
	return values
}

// FromContext returns the store the embedding program provided, for
// elements to call in Provision. Elements that read the snapshot per batch
// use ViewFromContext instead.
func FromContext(ctx *pipeline.Context) (*Store, error) {
	st, _ := ctx.Value(storeKey{}).(*Store)
	if st == nil || st.Load() == nil {
		return nil, errors.New("no service snapshot: this element needs the control plane (vip and pool blocks)")
	}
	return st, nil
}

type viewKey struct{}

// ViewFromContext returns the worker's View of the store the embedding
// program provided, the same for every element of the worker, for elements
// to call in Provision.
func ViewFromContext(ctx *pipeline.Context) (*View, error) {
	st, err := FromContext(ctx)
	if err != nil {
		return nil, err
	}
	return ctx.Local(viewKey{}, func() any { return NewView(st) }).(*View), nil
}
