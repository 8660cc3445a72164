package control

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/xlbproject/xlb/control/snapshot"
)

// Plan is what applying one configuration in place of another would
// change, VIP by VIP: the basis of `xlbd plan`. Its JSON field names are
// part of xlbd's interface (-o json): add fields, never rename them.
type Plan struct {
	// OldHashSeed and NewHashSeed are the flow hash seeds; when they
	// differ every flow hashes anew (see VIPPlan.MovedShare).
	OldHashSeed uint64    `json:"old_hash_seed"`
	NewHashSeed uint64    `json:"new_hash_seed"`
	VIPs        []VIPPlan `json:"vips"` // every VIP of either config, by name
	Total       PlanTotal `json:"total"`
}

// Plan actions, for VIPs and backends.
const (
	ActionAdd    = "add"
	ActionRemove = "remove"
	ActionChange = "change"
	ActionNone   = "none"
)

// VIPPlan is one VIP's change.
type VIPPlan struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	// Old and New are the VIP as each config declares it; nil where it
	// does not.
	Old *VIPState `json:"old,omitempty"`
	New *VIPState `json:"new,omitempty"`
	// MovedShare is the share of the VIP's flow hash space (so of its new
	// flows) whose backend differs between the two tables: 0 to 1. Nil
	// for an added or removed VIP. With equal table sizes and seeds it is
	// MovedSlots/Slots. With different sizes it is measured over the
	// hash values each table maps to a slot (maglev.Slot). With different
	// seeds a flow lands in an unrelated slot, so it is the chance that a
	// slot of the old table and one of the new name different backends.
	MovedShare *float64 `json:"moved_share,omitempty"`
	// MovedSlots counts the slots whose backend differs, when both tables
	// have Slots slots (0 otherwise).
	MovedSlots int `json:"moved_slots"`
	Slots      int `json:"slots"`
	// Backends are the VIP's backends that change, by name.
	Backends []BackendPlan `json:"backends"`
}

// VIPState is a VIP's declaration as a plan shows it.
type VIPState struct {
	Address   netip.Addr `json:"address"`
	Protocol  string     `json:"protocol"`
	Ports     []uint16   `json:"ports"` // empty: every port
	Pool      string     `json:"pool"`
	TableSize uint32     `json:"table_size"` // the size used, default applied
	Backends  int        `json:"backends"`   // how many it reaches
	SNATPorts uint32     `json:"snat_ports,omitempty"`
}

// BackendPlan is one backend's change as a member of one VIP.
type BackendPlan struct {
	Name   string        `json:"name"`
	Action string        `json:"action"`
	Old    *BackendState `json:"old,omitempty"`
	New    *BackendState `json:"new,omitempty"`
}

// BackendState is a backend as a plan shows it. State is "up" or
// "draining" (weight 0 or drain = true): health is not planned.
type BackendState struct {
	Address netip.Addr `json:"address"`
	Weight  uint32     `json:"weight"`
	State   string     `json:"state"`
	// Share is its share of the VIP's table slots, so of new flows.
	Share float64 `json:"share"`
	// SNAT is its range of source ports on the VIP's address, "first-last"
	// (VIPs with snat_ports only): a range that moves breaks the backend's
	// outbound connections from the old one.
	SNAT string `json:"snat,omitempty"`
}

// PlanTotal sums a plan. Backend counts are of backend names over each
// whole config (one shared by two VIPs counts once, a new VIP over an
// existing pool adds none); a backend both reweighted and drained counts
// in both.
type PlanTotal struct {
	VIPsAdded     int `json:"vips_added"`
	VIPsRemoved   int `json:"vips_removed"`
	VIPsChanged   int `json:"vips_changed"`
	VIPsUnchanged int `json:"vips_unchanged"`

	BackendsAdded       int `json:"backends_added"`
	BackendsRemoved     int `json:"backends_removed"`
	BackendsReweighted  int `json:"backends_reweighted"`
	BackendsDrained     int `json:"backends_drained"`
	BackendsUndrained   int `json:"backends_undrained"`
	BackendsReaddressed int `json:"backends_readdressed"`

	// Changed reports whether applying would change anything planned.
	Changed bool `json:"changed"`
}

// NewPlan compares next with running. Both are built into snapshots as the
// daemon builds them (control.Controller: same seed, names, weights and
// table sizes), with every backend healthy, and their tables compared slot
// by slot. Both must be valid; an error names the one that is not.
func NewPlan(running, next *Config) (*Plan, error) {
	old, err := SnapshotOf(running)
	if err != nil {
		return nil, fmt.Errorf("the running configuration: %w", err)
	}
	cur, err := SnapshotOf(next)
	if err != nil {
		return nil, fmt.Errorf("the new configuration: %w", err)
	}
	p := &Plan{OldHashSeed: old.HashSeed, NewHashSeed: cur.HashSeed}
	olds, news := vipsByName(running, old), vipsByName(next, cur)
	names := slices.Collect(maps.Keys(olds))
	for n := range news {
		if olds[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		p.VIPs = append(p.VIPs, planVIP(name, olds[name], news[name], old.HashSeed != cur.HashSeed))
	}
	p.total(olds, news)
	return p, nil
}

// SnapshotOf is cfg's snapshot as a new controller publishes it: every
// backend healthy. Plans compare two; the loader checks a file's against
// its elements (snapshot.Checker).
func SnapshotOf(cfg *Config) (*snapshot.Snapshot, error) {
	c := New()
	if err := c.Apply(cfg); err != nil {
		return nil, err
	}
	return c.Snapshot(), nil
}

// vipView is one VIP of a built snapshot, read by backend name.
type vipView struct {
	state    VIPState
	backends map[string]BackendState
	table    names
}

// names is a Maglev table read by backend name. It reads the snapshot's
// table in place: a copy as strings would be 16 bytes a slot, a gigabyte
// per side for 1,000 VIPs.
type names struct {
	m     int
	ids   []uint32 // empty: no backend takes new flows
	reals *snapshot.Reals
}

// at is the name of the backend in slot s, "" for none.
func (t names) at(s int) string {
	if len(t.ids) == 0 {
		return ""
	}
	return t.reals.At(t.ids[s]).Backend
}

func vipsByName(cfg *Config, s *snapshot.Snapshot) map[string]*vipView {
	decl := map[string]*VIP{}
	for i := range cfg.VIPs {
		decl[cfg.VIPs[i].Name] = &cfg.VIPs[i]
	}
	out := map[string]*vipView{}
	for _, sv := range s.VIPs {
		d := decl[sv.Name]
		m := cmp.Or(d.TableSize, DefaultTableSize)
		v := &vipView{
			state: VIPState{Address: d.Address, Protocol: d.Protocol, Ports: append([]uint16{}, d.Ports...), Pool: d.Pool,
				TableSize: m, Backends: len(sv.Reals), SNATPorts: d.SNATPorts},
			backends: map[string]BackendState{},
			table:    names{m: int(m), ids: sv.Table, reals: &s.Reals},
		}
		for _, id := range sv.Reals {
			r := s.Reals.At(id)
			v.backends[r.Backend] = BackendState{Address: r.Addr, Weight: r.Weight, State: r.State.String(), SNAT: sv.SNAT.Text(id)}
		}
		for b, n := range v.table.count() {
			st := v.backends[b]
			st.Share = float64(n) / float64(m)
			v.backends[b] = st
		}
		out[sv.Name] = v
	}
	return out
}

func planVIP(name string, old, cur *vipView, reseeded bool) VIPPlan {
	vp := VIPPlan{Name: name, Backends: []BackendPlan{}}
	switch {
	case old == nil:
		vp.Action, vp.New = ActionAdd, &cur.state
		vp.Backends = planBackends(nil, cur.backends)
		return vp
	case cur == nil:
		vp.Action, vp.Old = ActionRemove, &old.state
		vp.Backends = planBackends(old.backends, nil)
		return vp
	}
	vp.Old, vp.New = &old.state, &cur.state
	vp.Backends = planBackends(old.backends, cur.backends)
	var share float64
	switch {
	case reseeded:
		share = reshuffled(old.table, cur.table)
	case old.table.m == cur.table.m:
		vp.Slots = cur.table.m
		for i := range cur.table.m {
			if old.table.at(i) != cur.table.at(i) {
				vp.MovedSlots++
			}
		}
		share = float64(vp.MovedSlots) / float64(vp.Slots)
	default:
		share = movedHashSpace(old.table, cur.table)
	}
	vp.MovedShare = &share
	vp.Action = ActionNone
	if share != 0 || len(vp.Backends) > 0 || !sameVIP(old.state, cur.state) {
		vp.Action = ActionChange
	}
	return vp
}

func sameVIP(a, b VIPState) bool {
	return a.Address == b.Address && a.Protocol == b.Protocol && slices.Equal(a.Ports, b.Ports) &&
		a.Pool == b.Pool && a.TableSize == b.TableSize && a.SNATPorts == b.SNATPorts
}

// planBackends lists the backends added, removed or changed (address,
// weight or state: a share that follows from other backends' changes is
// not a change of the backend) between old and cur, by name.
func planBackends(old, cur map[string]BackendState) []BackendPlan {
	out := []BackendPlan{}
	for name, o := range old {
		n, ok := cur[name]
		switch {
		case !ok:
			out = append(out, BackendPlan{Name: name, Action: ActionRemove, Old: &o})
		case o.Address != n.Address || o.Weight != n.Weight || o.State != n.State || o.SNAT != n.SNAT:
			out = append(out, BackendPlan{Name: name, Action: ActionChange, Old: &o, New: &n})
		}
	}
	for name, n := range cur {
		if _, ok := old[name]; !ok {
			out = append(out, BackendPlan{Name: name, Action: ActionAdd, New: &n})
		}
	}
	slices.SortFunc(out, func(a, b BackendPlan) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// movedHashSpace is the share of the 2^32 values of a flow hash's high
// half (all that maglev.Slot reads) that old and cur map to different
// backends, for tables of any sizes: slot s of a table of size m holds
// the values x with floor(x·m/2^32) = s, an interval, so walking both
// tables' intervals together is exact.
func movedHashSpace(old, cur names) float64 {
	const space = 1 << 32
	// start is the first hash value of slot s of a table of size m.
	start := func(s, m int) uint64 { return (uint64(s)*space + uint64(m) - 1) / uint64(m) }
	var moved uint64
	i, j := 0, 0
	for x := uint64(0); x < space; {
		end := min(start(i+1, old.m), start(j+1, cur.m))
		if old.at(i) != cur.at(j) {
			moved += end - x
		}
		x = end
		if x == start(i+1, old.m) {
			i++
		}
		if x == start(j+1, cur.m) {
			j++
		}
	}
	return float64(moved) / space
}

// count is how many slots each backend has ("" for empty ones).
func (t names) count() map[string]uint64 {
	c := map[string]uint64{}
	if len(t.ids) == 0 {
		c[""] = uint64(t.m)
		return c
	}
	for _, id := range t.ids {
		c[t.reals.At(id).Backend]++
	}
	return c
}

// reshuffled is the share of new flows that land on another backend when
// the hash seed changes: each flow's old and new slots are then unrelated,
// so it is 1 - Σ old share(b) · new share(b), counted in slots so that a
// VIP with one backend moves exactly nothing.
func reshuffled(old, cur names) float64 {
	o, n := old.count(), cur.count()
	var same uint64
	for b, k := range o {
		if b != "" {
			same += k * n[b]
		}
	}
	all := uint64(old.m) * uint64(cur.m)
	return float64(all-same) / float64(all)
}

// total sums p. Backends are counted by name over the whole of each
// config (names are unique across pools), so that a new VIP over an
// existing pool adds no backend.
func (p *Plan) total(olds, news map[string]*vipView) {
	t := &p.Total
	for _, v := range p.VIPs {
		switch v.Action {
		case ActionAdd:
			t.VIPsAdded++
		case ActionRemove:
			t.VIPsRemoved++
		case ActionChange:
			t.VIPsChanged++
		default:
			t.VIPsUnchanged++
		}
	}
	all := func(vs map[string]*vipView) map[string]BackendState {
		m := map[string]BackendState{}
		for _, v := range vs {
			maps.Copy(m, v.backends)
		}
		return m
	}
	for _, b := range planBackends(all(olds), all(news)) {
		switch {
		case b.Action == ActionAdd:
			t.BackendsAdded++
		case b.Action == ActionRemove:
			t.BackendsRemoved++
		default:
			if b.Old.Weight != b.New.Weight {
				t.BackendsReweighted++
			}
			if b.Old.Address != b.New.Address {
				t.BackendsReaddressed++
			}
			switch drained := snapshot.Draining.String(); {
			case b.Old.State != drained && b.New.State == drained:
				t.BackendsDrained++
			case b.Old.State == drained && b.New.State != drained:
				t.BackendsUndrained++
			}
		}
	}
	t.Changed = t.VIPsAdded+t.VIPsRemoved+t.VIPsChanged > 0 || p.OldHashSeed != p.NewHashSeed
}
