package control

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/control/maglev"
	"github.com/xlbproject/xlb/control/snapshot"
)

// Controller turns configurations and health changes into snapshots and
// publishes them to the data plane. Every mutation (Apply, SetHealthy) is
// serialized by one mutex; building a snapshot, Maglev tables included,
// happens there, off the hot path, and workers see the result at their next
// batch.
type Controller struct {
	mu    sync.Mutex
	store *snapshot.Store

	// Guarded by mu. cfg is the configuration last applied, owned by the
	// controller; check validated it, and knows its backend names.
	cfg   *Config
	check Checker
	// unhealthy holds the backends health checking found down; a backend
	// not in it is healthy.
	unhealthy map[string]bool
	ids       ids
	// tables caches each VIP's Maglev table with the inputs it was built
	// from, so that a reload that does not change them reuses it.
	tables map[string]*tableCache
	// snats caches each VIP's SNAT ranges with their inputs (snat.go), so
	// that a health change or a reload that leaves them alone reuses them.
	snats map[string]*snatCache
	// digest is cfg's Digest, which a health change does not change.
	digest string
	// built counts the Maglev tables built, for tests of their reuse.
	built int
	// onBuild, when set, is told of every batch of tables built (see
	// OnBuild).
	onBuild func(tables int, took time.Duration)

	// What the last snapshot was built from, so that the next one
	// rebuilds only what changed: each pool's backends flattened, each
	// VIP's part of the snapshot, the reals, each pool's digest. health
	// counts the health changes, which invalidate the VIPs' parts.
	flat   map[string]flatPool
	vipsBy map[string]*vipPart
	reals  snapshot.Reals
	health uint64
	pools  poolDigests
}

// flatPool is a pool without inclusions flattened (see flatten), with the
// backends it was flattened from.
type flatPool struct {
	backends []Backend
	out      []*Backend
}

// vipPart is a VIP's part of a snapshot: its snapshot.VIP without the
// table and its Up reals, valid while its place in the snapshot, its
// settings, its members (the very same slice), its real IDs and the
// backends' health are those it was built with.
type vipPart struct {
	at      int
	vip     VIP
	members []*Backend
	ids     *vipIDs
	health  uint64
	sv      snapshot.VIP
	up      []tableInput
}

// ids assigns real IDs: stable for a (VIP name, backend name) while the real
// exists; a freed ID is reused with the next epoch, so (ID, Epoch) never
// names two different reals.
type ids struct {
	byVIP map[string]*vipIDs
	// epochs[id] is the epoch of the real that has or last had the ID.
	epochs []uint32
}

// vipIDs are the IDs of one VIP's reals: ids[i] is the real of backend
// names[i]. Never modified once assigned, so that a VIP whose backends did
// not change shares it with the previous assignment.
type vipIDs struct {
	names []string
	ids   []uint32
	// from is the slice of backends the IDs were assigned for: the same
	// slice has the same names.
	from []*Backend
}

type tableInput struct {
	backend string
	weight  uint32
	id      uint32
}

type tableCache struct {
	m     uint32
	seed  uint64
	in    []tableInput
	table []uint32
	// digest is tableDigest of the table, computed with it.
	digest string
}

// Option configures a Controller.
type Option func(*Controller)

// WithStore makes the controller publish into st instead of a new store.
// An empty snapshot is published first when st holds none.
func WithStore(st *snapshot.Store) Option { return func(c *Controller) { c.store = st } }

// New returns a controller whose store holds an empty snapshot (generation
// 0), so that Load never returns nil.
func New(opts ...Option) *Controller {
	c := &Controller{unhealthy: map[string]bool{}, tables: map[string]*tableCache{}}
	for _, o := range opts {
		o(c)
	}
	empty := snapshot.New(0, 0, nil, nil)
	if c.store == nil {
		c.store = snapshot.NewStore(empty)
	} else if c.store.Load() == nil {
		c.store.Publish(empty)
	}
	return c
}

// OnBuild makes the controller call f with the number of Maglev tables
// it built and how long they took, each time a snapshot needed any: a
// reload or health change that reuses every table calls nothing. f runs
// under the controller's lock, off the data plane, and must be quick.
func (c *Controller) OnBuild(f func(tables int, took time.Duration)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onBuild = f
}

// Store returns the store the controller publishes to, for the data plane
// (snapshot.ContextValues).
func (c *Controller) Store() *snapshot.Store { return c.store }

// Snapshot returns the current snapshot.
func (c *Controller) Snapshot() *snapshot.Snapshot { return c.store.Load() }

// Apply validates cfg and, when it is valid, publishes the snapshot it
// describes. On a validation failure it returns the pipeline.Errors and the
// running snapshot stays. cfg is owned by the controller from now on and
// must not be modified.
//
// A configuration that shares pools with the running one (the very same
// Backends slices, as hcl.Cache hands them over) is checked and built for
// what changed: see Checker.
func (c *Controller) Apply(cfg *Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errs := c.check.Validate(cfg); len(errs) > 0 {
		return errs
	}
	if err := c.publish(cfg); err != nil {
		// The checker has taken cfg: give it the running one back.
		c.check.reset()
		if c.cfg != nil {
			c.check.Validate(c.cfg)
		}
		return err
	}
	maps.DeleteFunc(c.unhealthy, func(name string, _ bool) bool { return !c.check.Has(name) })
	return nil
}

// SetHealthy records the health of a backend (in every VIP it serves) and
// publishes a new snapshot when it changed. A backend is healthy until told
// otherwise.
func (c *Controller) SetHealthy(backend string, healthy bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.check.Has(backend) {
		return fmt.Errorf("unknown backend %q: no pool of the current configuration declares it", backend)
	}
	if c.unhealthy[backend] == !healthy {
		return nil
	}
	if healthy {
		delete(c.unhealthy, backend)
	} else {
		c.unhealthy[backend] = true
	}
	c.health++
	return c.publish(c.cfg)
}

// SetHealth records the health of many backends and publishes at most one
// new snapshot (one table rebuild per affected VIP) when any of them
// changed; health checking batches its changes through it. Backends the
// current configuration does not declare are skipped and named in the
// error; the others are applied.
func (c *Controller) SetHealth(health map[string]bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var unknown []string
	changed := false
	for name, healthy := range health {
		switch {
		case !c.check.Has(name):
			unknown = append(unknown, name)
		case c.unhealthy[name] == !healthy:
		case healthy:
			delete(c.unhealthy, name)
			changed = true
		default:
			c.unhealthy[name] = true
			changed = true
		}
	}
	var err error
	if changed {
		c.health++
		err = c.publish(c.cfg)
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		err = errors.Join(err, fmt.Errorf("unknown backends %q: no pool of the current configuration declares them", unknown))
	}
	return err
}

// publish builds the snapshot of cfg under the current health and publishes
// it. It commits the ID assignment and the table cache only on success.
// Only the tables whose inputs changed are built (see table), on every
// core: a reload that changes one VIP's backends, or a health change,
// builds one.
func (c *Controller) publish(cfg *Config) error {
	pools := make(map[string]*Pool, len(cfg.Pools))
	for i := range cfg.Pools {
		if _, dup := pools[cfg.Pools[i].Name]; !dup {
			pools[cfg.Pools[i].Name] = &cfg.Pools[i]
		}
	}
	// The VIPs this node serves (the others are another shard's: not in
	// the snapshot, so neither forwarded nor announced here), in name
	// order, so that the snapshot does not depend on the order of
	// declaration.
	vips := make([]*VIP, 0, len(cfg.VIPs))
	var others []netip.Addr
	for i := range cfg.VIPs {
		if cfg.Serves(&cfg.VIPs[i]) {
			vips = append(vips, &cfg.VIPs[i])
		} else {
			others = append(others, cfg.VIPs[i].Address.Unmap())
		}
	}
	slices.SortFunc(vips, func(a, b *VIP) int { return strings.Compare(a.Name, b.Name) })
	// VIPs often share a pool: flatten it once, not once per VIP, and
	// a pool whose backends are the very same as last time not again.
	flat := make(map[string]flatPool, len(pools))
	reach := make(map[*Pool][]*Backend, len(pools))
	members := make([][]*Backend, len(vips))
	for i, v := range vips {
		p := pools[v.Pool]
		m, ok := reach[p]
		if !ok {
			m = c.flatten(pools, p, flat)
			reach[p] = m
		}
		members[i] = m
	}

	ids := c.ids.assign(vips, members)
	parts := make(map[string]*vipPart, len(vips))
	for i, v := range vips {
		if prev := c.vipsBy[v.Name]; prev.valid(i, v, members[i], ids.byVIP[v.Name], c.health) {
			parts[v.Name] = prev
		}
	}
	// The reals of the VIPs kept are where they were: start from the
	// last snapshot's, clear the slots of the others' previous reals,
	// then fill in theirs. Only the chunks written to are copied.
	reals := c.reals.Edit(len(ids.epochs))
	for name, prev := range c.vipsBy {
		if parts[name] != prev {
			for _, id := range prev.ids.ids {
				reals.Set(id, snapshot.Real{})
			}
		}
	}
	out := make([]snapshot.VIP, len(vips))
	tables := make([]*tableCache, len(vips))
	var todo []tableJob
	for i, v := range vips {
		part := parts[v.Name]
		if part == nil {
			part = c.vipPart(i, v, members[i], ids, reals)
			parts[v.Name] = part
		}
		out[i] = part.sv
		if tables[i] = c.reuse(v, cfg.HashSeed, part.up); tables[i] == nil {
			todo = append(todo, tableJob{i, v, part.up})
		}
	}
	began := time.Now()
	if err := buildTables(cfg.HashSeed, todo, tables); err != nil {
		return err
	}
	if c.onBuild != nil && len(todo) > 0 {
		c.onBuild(len(todo), time.Since(began))
	}
	cache := make(map[string]*tableCache, len(vips))
	excluded := snatExcluded(cfg.VIPs)
	var snats map[string]*snatCache
	for i, v := range vips {
		cache[v.Name] = tables[i]
		out[i].Table, out[i].TableDigest = tables[i].table, tables[i].digest
		if v.SNATPorts > 0 {
			vids, ex := ids.byVIP[v.Name], excluded[v.Address.Unmap()]
			sc := c.snats[v.Name].reuse(v.SNATPorts, vids, ex)
			if sc == nil {
				sc = &snatCache{v.SNATPorts, vids, ex, snatOf(v, members[i], vids.ids, ex)}
			}
			if snats == nil {
				snats = map[string]*snatCache{}
			}
			snats[v.Name] = sc
			out[i].SNAT = sc.s
			out[i].TableDigest = withSNAT(out[i].TableDigest, sc.s)
		}
	}
	digest := c.digest
	if cfg != c.cfg {
		digest = cfg.digest(&c.pools)
	}
	s := snapshot.NewFrom(c.store.Load().Generation+1, cfg.HashSeed, out, reals.Done())
	s.ConfigDigest = digest
	slices.SortFunc(others, netip.Addr.Compare)
	s.OtherShards = slices.Compact(others)
	c.ids, c.tables, c.cfg, c.digest, c.snats = ids, cache, cfg, digest, snats
	c.flat, c.vipsBy, c.reals = flat, parts, s.Reals
	c.built += len(todo)
	c.store.Publish(s)
	return nil
}

// flatten is flatten(pools, p), taken from the last snapshot's when p
// includes no pool and its backends are the very same slice; flat
// collects what the next snapshot takes.
func (c *Controller) flatten(pools map[string]*Pool, p *Pool, flat map[string]flatPool) []*Backend {
	if p == nil || len(p.Pools) > 0 {
		return flatten(pools, p)
	}
	if prev, ok := c.flat[p.Name]; ok && same(prev.backends, p.Backends) {
		flat[p.Name] = prev
		return prev.out
	}
	out := flatten(pools, p)
	flat[p.Name] = flatPool{p.Backends, out}
	return out
}

// valid reports whether part is VIP v's at place i, over members with
// real IDs vids, at health count health.
func (part *vipPart) valid(i int, v *VIP, members []*Backend, vids *vipIDs, health uint64) bool {
	return part != nil && part.at == i && part.ids == vids && part.health == health && same(part.members, members) &&
		part.vip.Address == v.Address && part.vip.Protocol == v.Protocol && slices.Equal(part.vip.Ports, v.Ports)
}

// vipPart builds v's part of the snapshot, at place i over members, and
// writes its reals.
func (c *Controller) vipPart(i int, v *VIP, members []*Backend, ids ids, reals *snapshot.Editor) *vipPart {
	vids := ids.byVIP[v.Name]
	part := &vipPart{at: i, vip: *v, members: members, ids: vids, health: c.health}
	part.sv = snapshot.VIP{Name: v.Name, Addr: v.Address, Proto: protoNumber(v.Protocol),
		Ports: slices.Clone(v.Ports), Reals: make([]uint32, len(members))}
	for j, b := range members {
		id := vids.ids[j]
		addr := b.Address.Unmap()
		r := snapshot.Real{ID: id, Epoch: ids.epochs[id], VIP: uint32(i), Backend: b.Name,
			Addr: addr, Addr16: addr.As16(), Family: 6, Weight: b.Weight, State: c.state(b)}
		if addr.Is4() {
			r.Family = 4
		}
		reals.Set(id, r)
		part.sv.Reals[j] = id
		if r.State == snapshot.Up {
			part.up = append(part.up, tableInput{b.Name, b.Weight, id})
		}
	}
	return part
}

// state is a backend's state for new and existing flows: Down (flows
// re-selected) wins over Draining (flows kept, no new ones).
func (c *Controller) state(b *Backend) snapshot.State {
	switch {
	case c.unhealthy[b.Name]:
		return snapshot.Down
	case b.Weight == 0 || b.Drain:
		return snapshot.Draining
	}
	return snapshot.Up
}

// reuse returns v's previous table when its size and inputs (its Up
// reals, sorted by backend name) are unchanged, nil when it must be built.
// A new hash seed changes only the digest.
func (c *Controller) reuse(v *VIP, seed uint64, up []tableInput) *tableCache {
	m := cmp.Or(v.TableSize, DefaultTableSize)
	prev := c.tables[v.Name]
	if prev == nil || prev.m != m || !sameInputs(prev.in, up) {
		return nil
	}
	if prev.seed != seed {
		t := *prev
		t.seed = seed
		t.digest = tableDigest(seed, m, up, t.index())
		return &t
	}
	return prev
}

// sameInputs is slices.Equal, without a look at a slice compared with
// itself (a VIP whose part of the snapshot was kept).
func sameInputs(a, b []tableInput) bool {
	return same(a, b) || slices.Equal(a, b)
}

// index is the table as indexes into in, as maglev.Build returns it.
func (t *tableCache) index() []uint32 {
	pos := make(map[uint32]uint32, len(t.in))
	for i, in := range t.in {
		pos[in.id] = uint32(i)
	}
	idx := make([]uint32, len(t.table))
	for s, id := range t.table {
		idx[s] = pos[id]
	}
	return idx
}

// tableJob is a table to build: tables[i], of VIP v over up.
type tableJob struct {
	i  int
	v  *VIP
	up []tableInput
}

// buildTables builds the tables of todo into tables, spread over the
// cores; the tables are independent, and a reload of many VIPs spends most
// of its time here.
func buildTables(seed uint64, todo []tableJob, tables []*tableCache) error {
	errs := make([]error, len(todo))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(todo) {
					return
				}
				j := todo[k]
				tables[j.i], errs[k] = buildTable(seed, j.v, j.up)
				if errs[k] != nil {
					errs[k] = fmt.Errorf("building the Maglev table of VIP %q: %w", j.v.Name, errs[k])
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// buildTable builds v's Maglev table over its Up reals, sorted by backend
// name, and its digest.
func buildTable(seed uint64, v *VIP, up []tableInput) (*tableCache, error) {
	m := cmp.Or(v.TableSize, DefaultTableSize)
	bs := make([]maglev.Backend, len(up))
	for i, in := range up {
		bs[i] = maglev.Backend{Name: in.backend, Weight: in.weight}
	}
	idx, err := maglev.Build(bs, m)
	if err != nil {
		return nil, err
	}
	digest := tableDigest(seed, m, up, idx)
	for s, i := range idx {
		idx[s] = up[i].id
	}
	return &tableCache{m: m, seed: seed, in: up, table: idx, digest: digest}, nil
}

// assign returns the ID assignment for the given reals (members[i] of
// vips[i]), leaving a unchanged: surviving reals keep their ID and epoch,
// removed reals free theirs, and new reals take the lowest free IDs (with
// the next epoch) before new ones. A VIP whose backends are those it had
// costs a comparison of their names.
func (a ids) assign(vips []*VIP, members [][]*Backend) ids {
	next := ids{byVIP: make(map[string]*vipIDs, len(vips)), epochs: a.epochs}
	var changed []int
	for i, v := range vips {
		prev := a.byVIP[v.Name]
		if prev != nil && (same(prev.from, members[i]) || slices.EqualFunc(prev.names, members[i], func(n string, b *Backend) bool { return n == b.Name })) {
			next.byVIP[v.Name] = prev
			continue
		}
		changed = append(changed, i)
	}
	if len(changed) == 0 {
		// The same reals: the same IDs and epochs, shared (never
		// modified once assigned).
		return next
	}
	next.epochs = slices.Clone(a.epochs)
	used := make([]bool, len(a.epochs))
	for _, vids := range next.byVIP {
		for _, id := range vids.ids {
			used[id] = true
		}
	}
	for _, i := range changed {
		v := vips[i]
		prev := a.byVIP[v.Name]
		cur := &vipIDs{names: make([]string, len(members[i])), ids: make([]uint32, len(members[i])), from: members[i]}
		var old map[string]uint32
		if prev != nil {
			old = make(map[string]uint32, len(prev.names))
			for j, name := range prev.names {
				old[name] = prev.ids[j]
			}
		}
		for j, b := range members[i] {
			cur.names[j] = b.Name
			if id, ok := old[b.Name]; ok {
				cur.ids[j] = id
				used[id] = true
			} else {
				cur.ids[j] = noID
			}
		}
		next.byVIP[v.Name] = cur
	}
	free := 0 // lowest ID that may be free
	for _, i := range changed {
		cur := next.byVIP[vips[i].Name]
		for j := range cur.ids {
			if cur.ids[j] != noID {
				continue
			}
			for free < len(used) && used[free] {
				free++
			}
			if free == len(used) {
				used = append(used, false)
				next.epochs = append(next.epochs, 0)
			}
			id := free
			used[id] = true
			// Epoch 0 marks an unused slot, so it is skipped on wrap.
			if next.epochs[id]++; next.epochs[id] == 0 {
				next.epochs[id] = 1
			}
			cur.ids[j] = uint32(id)
		}
	}
	// IDs no real uses keep their last epoch for the next reuse; their
	// Snapshot.Reals slot is left zero (Epoch 0).
	return next
}

// noID marks a real still without an ID during assign.
const noID = ^uint32(0)

// protoNumber is the IP protocol number of a VIP's protocol; "any" is 0.
func protoNumber(p string) uint8 {
	switch p {
	case "tcp":
		return 6
	case "udp":
		return 17
	}
	return 0
}
