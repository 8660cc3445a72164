package control

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control/maglev"
	"github.com/xlbproject/xlb/control/snapshot"
)

// buildNames is the table Build makes of bs (drained backends left out, as the
// controller leaves them out), by backend name: the test's own build,
// apart from the controller's.
func buildNames(t *testing.T, bs []Backend, m uint32) []string {
	t.Helper()
	var in []maglev.Backend
	for _, b := range bs {
		if b.Weight > 0 && !b.Drain {
			in = append(in, maglev.Backend{Name: b.Name, Weight: b.Weight})
		}
	}
	slices.SortFunc(in, func(a, b maglev.Backend) int { return strings.Compare(a.Name, b.Name) })
	out := make([]string, m)
	if len(in) == 0 {
		return out
	}
	idx, err := maglev.Build(in, m)
	if err != nil {
		t.Fatal(err)
	}
	for s, i := range idx {
		out[s] = in[i].Name
	}
	return out
}

// table is a names over t, for movedHashSpace.
func table(t []string) names {
	ids := make([]uint32, len(t))
	var reals []snapshot.Real
	for i, name := range t {
		ids[i] = uint32(len(reals))
		reals = append(reals, snapshot.Real{Backend: name})
	}
	rs := snapshot.MakeReals(reals)
	return names{m: len(t), ids: ids, reals: &rs}
}

func bruteMoved(old, cur []string) int {
	n := 0
	for i := range old {
		if old[i] != cur[i] {
			n++
		}
	}
	return n
}

func oneVIP(seed uint64, m uint32, bs ...Backend) *Config {
	return &Config{HashSeed: seed, VIPs: []VIP{vip(1, "web", "10.0.0.1", "tcp", []uint16{80}, "p", m)},
		Pools: []Pool{pool(10, "p", nil, bs...)}}
}

func onlyVIP(t *testing.T, p *Plan, name string) VIPPlan {
	t.Helper()
	for _, v := range p.VIPs {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no VIP %q in the plan: %+v", name, p.VIPs)
	return VIPPlan{}
}

// TestPlanMovedShare checks each change's moved share against a slot by
// slot count over tables the test builds itself.
func TestPlanMovedShare(t *testing.T) {
	const m = 4099
	base := []Backend{be(11, "a", "10.0.1.1", 1), be(14, "b", "10.0.1.2", 2), be(17, "c", "10.0.1.3", 3), be(20, "d", "10.0.1.4", 2)}
	change := func(f func(bs []Backend) []Backend) []Backend { return f(slices.Clone(base)) }
	cases := map[string][]Backend{
		"reweight": change(func(bs []Backend) []Backend { bs[1].Weight = 5; return bs }),
		"remove":   change(func(bs []Backend) []Backend { return slices.Delete(bs, 0, 1) }),
		"add":      change(func(bs []Backend) []Backend { return append(bs, be(23, "e", "10.0.1.5", 2)) }),
		"drain":    change(func(bs []Backend) []Backend { bs[2].Drain = true; return bs }),
		"zero":     change(func(bs []Backend) []Backend { bs[3].Weight = 0; return bs }),
		"all": change(func(bs []Backend) []Backend {
			bs[1].Weight, bs[2].Drain = 4, true
			return append(slices.Delete(bs, 0, 1), be(23, "e", "10.0.1.5", 2))
		}),
		"readdress": change(func(bs []Backend) []Backend { bs[0].Address = addr("10.0.1.9"); return bs }),
	}
	for name, bs := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := NewPlan(oneVIP(7, m, base...), oneVIP(7, m, bs...))
			if err != nil {
				t.Fatal(err)
			}
			v := onlyVIP(t, p, "web")
			want := bruteMoved(buildNames(t, base, m), buildNames(t, bs, m))
			if v.Action != ActionChange || v.Slots != m || v.MovedSlots != want || *v.MovedShare != float64(want)/m {
				t.Errorf("action %s, moved %d of %d slots (share %v); want change, %d of %d", v.Action, v.MovedSlots, v.Slots, *v.MovedShare, want, m)
			}
		})
	}
}

// TestPlanRemoveOneOfN: removing one of N equal backends moves at least
// the slots it had (about 1/N) and little more: Maglev's disruption is
// near minimal, not minimal (the paper, section 3.4; the
// extra grows with N, 23% over 1/N at N = 50).
func TestPlanRemoveOneOfN(t *testing.T) {
	for _, n := range []int{2, 5, 10, 50} {
		var bs []Backend
		for i := range n {
			bs = append(bs, be(11+3*i, fmt.Sprintf("be%02d", i), fmt.Sprintf("10.0.%d.%d", i/200, 1+i%200), 1))
		}
		p, err := NewPlan(oneVIP(1, 0, bs...), oneVIP(1, 0, bs[:n-1]...))
		if err != nil {
			t.Fatal(err)
		}
		v := onlyVIP(t, p, "web")
		if len(v.Backends) != 1 || v.Backends[0].Action != ActionRemove || p.Total.BackendsRemoved != 1 {
			t.Fatalf("removing 1 of %d: backends %+v, total %+v", n, v.Backends, p.Total)
		}
		own, ideal := v.Backends[0].Old.Share, 1/float64(n)
		if got := *v.MovedShare; math.Abs(own-ideal) > 0.01*ideal || got < own || got > 1.3*ideal {
			t.Errorf("removing 1 of %d: %.4f moved, its own share %.4f; want from its share to 1.3/N = %.4f", n, got, own, 1.3*ideal)
		}
	}
}

// TestPlanTableSize: with different table sizes the share is over the
// hash values, checked against a million sampled hashes.
func TestPlanTableSize(t *testing.T) {
	bs := []Backend{be(11, "a", "10.0.1.1", 1), be(14, "b", "10.0.1.2", 1), be(17, "c", "10.0.1.3", 1)}
	for _, sizes := range [][2]uint32{{251, 257}, {4099, 65537}, {65537, 65537}} {
		p, err := NewPlan(oneVIP(1, sizes[0], bs...), oneVIP(1, sizes[1], bs[:2]...))
		if err != nil {
			t.Fatal(err)
		}
		old, cur := buildNames(t, bs, sizes[0]), buildNames(t, bs[:2], sizes[1])
		r := rand.New(rand.NewPCG(1, 2))
		const samples = 1_000_000
		moved := 0
		for range samples {
			h := r.Uint64()
			if old[maglev.Slot(h, len(old))] != cur[maglev.Slot(h, len(cur))] {
				moved++
			}
		}
		got := *onlyVIP(t, p, "web").MovedShare
		if want := float64(moved) / samples; math.Abs(got-want) > 0.003 {
			t.Errorf("sizes %v: %.4f moved, sampled %.4f", sizes, got, want)
		}
		if sizes[0] != sizes[1] {
			if got := movedHashSpace(table(old), table(cur)); got != *onlyVIP(t, p, "web").MovedShare {
				t.Errorf("sizes %v: plan %v, movedHashSpace %v", sizes, *onlyVIP(t, p, "web").MovedShare, got)
			}
		}
	}
	// Equal tables of different sizes: the share is the hash values the
	// two sizes map to different backends, never 0 or 1.
	if got := movedHashSpace(table(buildNames(t, bs, 251)), table(buildNames(t, bs, 257))); got <= 0 || got >= 1 {
		t.Errorf("same backends, sizes 251 and 257: %v moved", got)
	}
	if got := movedHashSpace(table(buildNames(t, bs, 251)), table(buildNames(t, bs, 251))); got != 0 {
		t.Errorf("same table: %v moved", got)
	}
}

// TestPlanReseed: a new hash seed sends each flow to an unrelated slot.
func TestPlanReseed(t *testing.T) {
	bs := []Backend{be(11, "a", "10.0.1.1", 1), be(14, "b", "10.0.1.2", 1), be(17, "c", "10.0.1.3", 2)}
	p, err := NewPlan(oneVIP(1, 0, bs...), oneVIP(2, 0, bs...))
	if err != nil {
		t.Fatal(err)
	}
	got := *onlyVIP(t, p, "web").MovedShare
	// Shares 1/4, 1/4, 1/2 (up to the table's rounding).
	if want := 1 - (1.0/16 + 1.0/16 + 1.0/4); math.Abs(got-want) > 0.001 || !p.Total.Changed {
		t.Errorf("reseeded: %.4f moved, changed %v; want %.4f, true", got, p.Total.Changed, want)
	}
	// One backend takes every flow under any seed.
	p, err = NewPlan(oneVIP(1, 0, bs[0]), oneVIP(2, 0, bs[0]))
	if v := onlyVIP(t, p, "web"); err != nil || *v.MovedShare != 0 || v.Action != ActionNone {
		t.Errorf("one backend reseeded: %v moved, %s, %v; want 0, none", *v.MovedShare, v.Action, err)
	}
}

// TestPlanVIPs: VIPs added, removed, changed in their own attributes and
// unchanged; backend totals count names once over the config.
func TestPlanVIPs(t *testing.T) {
	running := &Config{HashSeed: 3,
		VIPs: []VIP{vip(1, "same", "10.0.0.1", "tcp", []uint16{80}, "p", 0),
			vip(10, "gone", "10.0.0.2", "tcp", []uint16{80}, "q", 0),
			vip(20, "moved", "10.0.0.3", "tcp", []uint16{80}, "p", 0)},
		Pools: []Pool{pool(30, "p", nil, be(31, "a", "10.0.1.1", 1), be(34, "b", "10.0.1.2", 1)),
			pool(40, "q", nil, be(41, "c", "10.0.1.3", 1))}}
	next := &Config{HashSeed: 3,
		VIPs: []VIP{vip(1, "same", "10.0.0.1", "tcp", []uint16{80}, "p", 0),
			vip(10, "new", "10.0.0.4", "udp", nil, "p", 0),
			vip(20, "moved", "10.0.0.5", "tcp", []uint16{80}, "p", 0)},
		Pools: []Pool{pool(30, "p", nil, be(31, "a", "10.0.1.1", 1), be(34, "b", "10.0.1.2", 1))}}
	p, err := NewPlan(running, next)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range p.VIPs {
		got = append(got, v.Name+" "+v.Action)
	}
	if want := []string{"gone remove", "moved change", "new add", "same none"}; !slices.Equal(got, want) {
		t.Errorf("VIPs %q, want %q", got, want)
	}
	if v := onlyVIP(t, p, "moved"); *v.MovedShare != 0 || v.Old.Address == v.New.Address {
		t.Errorf("moved VIP: share %v, old %+v, new %+v", *v.MovedShare, v.Old, v.New)
	}
	want := PlanTotal{VIPsAdded: 1, VIPsRemoved: 1, VIPsChanged: 1, VIPsUnchanged: 1, BackendsRemoved: 1, Changed: true}
	if p.Total != want {
		t.Errorf("total %+v, want %+v", p.Total, want)
	}

	if p, err := NewPlan(running, running); err != nil || p.Total.Changed || p.Total.VIPsUnchanged != 3 {
		t.Errorf("a config against itself: %+v, %v", p, err)
	}
	bad := &Config{VIPs: []VIP{vip(1, "x", "10.0.0.1", "tcp", nil, "nope", 0)}}
	if _, err := NewPlan(running, bad); err == nil || !strings.Contains(err.Error(), "new configuration") {
		t.Errorf("an invalid new config: %v", err)
	}
}

// A plan of 10 VIPs × 100 backends with one backend reweighted: two
// snapshots built from scratch (20 tables of M = 65537) and compared.
// BenchmarkPlanBuildOnly is the builds alone, so the difference is the
// comparison.
func BenchmarkPlan(b *testing.B) {
	running, next := bigConfig(10, 100), bigConfig(10, 100)
	next.Pools[3].Backends[42].Weight = 2
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPlan(running, next); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlanBuildOnly(b *testing.B) {
	running, next := bigConfig(10, 100), bigConfig(10, 100)
	next.Pools[3].Backends[42].Weight = 2
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SnapshotOf(running); err != nil {
			b.Fatal(err)
		}
		if _, err := SnapshotOf(next); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPlanSNAT: a plan shows each backend's SNAT range, a change of
// snat_ports as a change of the VIP that moves every range, and a backend
// added beside unmoved ones with its own range only.
func TestPlanSNAT(t *testing.T) {
	bs := []Backend{be(11, "a", "10.0.1.1", 1), be(14, "b", "10.0.1.2", 1), be(17, "c", "10.0.1.3", 1)}
	withSNAT := func(size uint32, bs ...Backend) *Config {
		c := oneVIP(1, 0, bs...)
		c.VIPs[0].SNATPorts = size
		return c
	}
	p, err := NewPlan(withSNAT(1024, bs...), withSNAT(2048, bs...))
	if err != nil {
		t.Fatal(err)
	}
	v := onlyVIP(t, p, "web")
	if v.Action != ActionChange || v.Old.SNATPorts != 1024 || v.New.SNATPorts != 2048 || len(v.Backends) != 3 {
		t.Fatalf("plan %+v", v)
	}
	for _, b := range v.Backends {
		if b.Old.SNAT == "" || b.New.SNAT == "" || b.Old.SNAT == b.New.SNAT {
			t.Errorf("backend %s: SNAT %q -> %q", b.Name, b.Old.SNAT, b.New.SNAT)
		}
	}
	// "d" prefers a range none of a, b, c has (checked below): only it
	// is listed, with its range.
	p, err = NewPlan(withSNAT(1024, bs...), withSNAT(1024, append(bs, be(20, "d", "10.0.1.4", 1))...))
	if err != nil {
		t.Fatal(err)
	}
	v = onlyVIP(t, p, "web")
	if len(v.Backends) != 1 || v.Backends[0].Name != "d" || v.Backends[0].Action != ActionAdd || v.Backends[0].New.SNAT == "" {
		t.Errorf("backends %+v, want d added with its range", v.Backends)
	}
	// Without SNAT nothing of it shows.
	p, err = NewPlan(oneVIP(1, 0, bs...), oneVIP(1, 0, bs...))
	if err != nil {
		t.Fatal(err)
	}
	if v := onlyVIP(t, p, "web"); v.New.SNATPorts != 0 || len(v.Backends) != 0 {
		t.Errorf("plan without SNAT %+v", v)
	}
}
