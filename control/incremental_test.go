package control

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
)

// change returns a copy of cfg that shares every pool's slices with it, as
// hcl.Cache hands unchanged fragments over, with one random change: a
// weight, a drain, a backend removed, added, renamed (sometimes onto
// another's name) or readdressed (sometimes to an invalid address), a
// backend moved to another pool, a pool inclusion, a VIP's ports, a VIP
// and its pool removed or added. Pools it changes get slices of their own.
func change(r *rand.Rand, cfg *Config, serial *int) *Config {
	next := &Config{HashSeed: cfg.HashSeed, VIPs: slices.Clone(cfg.VIPs), Pools: slices.Clone(cfg.Pools)}
	*serial++
	n := *serial
	own := func(i int) *Pool {
		p := &next.Pools[i]
		p.Backends = slices.Clone(p.Backends)
		return p
	}
	pi := r.IntN(len(next.Pools))
	p := &next.Pools[pi]
	bi := -1
	if len(p.Backends) > 0 {
		bi = r.IntN(len(p.Backends))
	}
	switch op := r.IntN(13); {
	case op == 0 && bi >= 0:
		own(pi).Backends[bi].Weight = uint32(r.IntN(4))
	case op == 1 && bi >= 0:
		own(pi).Backends[bi].Drain = !p.Backends[bi].Drain
	case op == 2 && bi >= 0 && len(p.Backends) > 1:
		own(pi).Backends = slices.Delete(p.Backends, bi, bi+1)
	case op == 3:
		own(pi).Backends = append(p.Backends, Backend{Name: fmt.Sprintf("new-%d", n),
			Address: netip.AddrFrom4([4]byte{10, 250, byte(n >> 8), byte(n)}), Weight: 1, Range: rng(90000+n, 3)})
	case op == 4 && bi >= 0:
		// Another pool's backend name, now and then: a duplicate.
		q := next.Pools[r.IntN(len(next.Pools))]
		name := fmt.Sprintf("renamed-%d", n)
		if len(q.Backends) > 0 && r.IntN(3) == 0 {
			name = q.Backends[0].Name
		}
		own(pi).Backends[bi].Name = name
	case op == 5 && bi >= 0:
		a := netip.AddrFrom4([4]byte{10, 251, byte(n >> 8), byte(n)})
		if r.IntN(4) == 0 {
			a = netip.IPv4Unspecified()
		}
		own(pi).Backends[bi].Address = a
	case op == 6 && bi >= 0:
		qi := r.IntN(len(next.Pools))
		b := p.Backends[bi]
		own(pi).Backends = slices.Delete(p.Backends, bi, bi+1)
		if len(p.Backends) == 0 || qi == pi {
			p.Backends = append(p.Backends, b)
		} else {
			own(qi).Backends = append(next.Pools[qi].Backends, b)
		}
	case op == 7:
		// An inclusion: of another pool, sometimes of an unknown one or
		// back onto itself through the other.
		q := next.Pools[r.IntN(len(next.Pools))].Name
		if r.IntN(5) == 0 {
			q = "nowhere"
		}
		p.Pools = append(slices.Clip(p.Pools), q)
	case op == 8:
		v := &next.VIPs[r.IntN(len(next.VIPs))]
		v.Ports = []uint16{uint16(80 + r.IntN(3)), uint16(r.IntN(2) * 443)}
	case op == 9 && len(next.VIPs) > 2:
		i := r.IntN(len(next.VIPs))
		name := next.VIPs[i].Pool
		next.VIPs = slices.Delete(next.VIPs, i, i+1)
		if r.IntN(4) > 0 {
			next.Pools = slices.DeleteFunc(next.Pools, func(p Pool) bool { return p.Name == name })
		}
	case op == 10:
		name := fmt.Sprintf("add%d", n)
		x := vip(80000+n*10, name, "", "tcp", []uint16{80}, name, 101)
		x.Address = netip.AddrFrom4([4]byte{100, 250, byte(n >> 8), byte(n)})
		next.VIPs = append(next.VIPs, x)
		next.Pools = append(next.Pools, pool(80000+n*10+5, name, nil,
			Backend{Name: name + "-a", Address: netip.AddrFrom4([4]byte{10, 252, byte(n >> 8), byte(n)}), Weight: 1, Range: rng(80000+n*10+6, 3)}))
	case op == 11:
		// A pool outgrows its VIP's table (101 slots), or not.
		more := slices.Clone(p.Backends)
		for j := range 50 + r.IntN(60) {
			more = append(more, Backend{Name: fmt.Sprintf("grow-%d-%d", n, j),
				Address: netip.AddrFrom4([4]byte{10, 253, byte(n), byte(j)}), Weight: 1, Range: rng(70000+n, j)})
		}
		p.Backends = more
	case op == 12:
		// SNAT on or off, in ranges that sometimes leave too few for
		// the backends.
		v := &next.VIPs[r.IntN(len(next.VIPs))]
		v.SNATPorts = [...]uint32{0, 1024, 8000, 30000}[r.IntN(4)]
	default:
		// A reload of the same configuration.
	}
	return next
}

// deepCopy is cfg with slices of its own: what a controller sees when
// the configuration is decoded again from scratch.
func deepCopy(cfg *Config) *Config {
	out := &Config{HashSeed: cfg.HashSeed, VIPs: slices.Clone(cfg.VIPs), Pools: slices.Clone(cfg.Pools)}
	for i := range out.VIPs {
		out.VIPs[i].Ports = slices.Clone(out.VIPs[i].Ports)
	}
	for i := range out.Pools {
		out.Pools[i].Backends = slices.Clone(out.Pools[i].Backends)
		out.Pools[i].Pools = slices.Clone(out.Pools[i].Pools)
		out.Pools[i].HealthChecks = slices.Clone(out.Pools[i].HealthChecks)
	}
	return out
}

// Reloads and health changes that reuse what did not change (the
// checker's quick path, the VIPs' parts of the snapshot, the pools'
// digests) give exactly what the same history gives without reuse, and
// what a new controller gives: the same errors, reals (IDs included),
// tables and digests, for random changes valid and invalid.
func TestIncrementalEqualsFromScratch(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 10))
			cfg := manyVIPs(40, 5, 101)
			inc, full := New(), New()
			mustApply(t, inc, cfg)
			mustApply(t, full, deepCopy(cfg))
			serial := 0
			applied := 0
			for step := range 200 {
				next := change(r, cfg, &serial)
				if step%17 == 0 {
					next = deepCopy(next)
				}
				want := full.Apply(deepCopy(next))
				got := inc.Apply(next)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("step %d: Apply = %v, want %v", step, got, want)
				}
				var k Checker
				if errs := k.Validate(next); fmt.Sprint(errs) != fmt.Sprint(want) && want != nil {
					t.Fatalf("step %d: a new checker finds %v, want %v", step, errs, want)
				}
				if want == nil {
					cfg = next
					applied++
					fresh := mustApply(t, New(), deepCopy(next))
					// SNAT ranges do not depend on health: always
					// compared.
					for i, v := range inc.Snapshot().VIPs {
						if w := fresh.VIPs[i].SNAT; (v.SNAT == nil) != (w == nil) || (w != nil && (v.SNAT.Digest != w.Digest || !slices.Equal(v.SNAT.Service, w.Service))) {
							t.Fatalf("step %d: VIP %q: SNAT ranges differ from a new controller's", step, v.Name)
						}
					}
					if len(inc.unhealthy) == 0 {
						sameTables(t, inc.Snapshot(), fresh)
					} else if inc.Snapshot().ConfigDigest != fresh.ConfigDigest {
						t.Fatalf("step %d: config digest %s, want %s", step, inc.Snapshot().ConfigDigest, fresh.ConfigDigest)
					}
				}
				if r.IntN(5) == 0 {
					var names []string
					for _, p := range cfg.Pools {
						for _, b := range p.Backends {
							names = append(names, b.Name)
						}
					}
					h := map[string]bool{names[r.IntN(len(names))]: r.IntN(2) == 0}
					if fmt.Sprint(inc.SetHealth(h)) != fmt.Sprint(full.SetHealth(h)) {
						t.Fatalf("step %d: SetHealth(%v) differs", step, h)
					}
				}
				sameSnapshot(t, step, inc.Snapshot(), full.Snapshot())
			}
			if applied < 40 {
				t.Errorf("only %d of the changes were valid", applied)
			}
		})
	}
}

// sameSnapshot fails unless got and want are equal in all but their
// tables' addresses.
func sameSnapshot(t *testing.T, step int, got, want *snapshot.Snapshot) {
	t.Helper()
	if got.ConfigDigest != want.ConfigDigest || !reflect.DeepEqual(got.Reals, want.Reals) || len(got.VIPs) != len(want.VIPs) {
		t.Fatalf("step %d: snapshots differ (digest %s, want %s; %d reals, want %d)", step,
			got.ConfigDigest, want.ConfigDigest, got.Reals.Len(), want.Reals.Len())
	}
	for i := range got.VIPs {
		if !reflect.DeepEqual(got.VIPs[i], want.VIPs[i]) {
			t.Fatalf("step %d: VIP %q differs from the one built without reuse", step, got.VIPs[i].Name)
		}
	}
}

// A one-backend change among configurations that share their other pools
// checks one pool's backends: the checker's quick path passes it, and
// falls back to Validate for a duplicate it brings.
func TestCheckerQuickPath(t *testing.T) {
	var k Checker
	cfg := manyVIPs(100, 10, 0)
	if errs := k.Validate(cfg); errs != nil {
		t.Fatal(errs)
	}
	next := *cfg
	next.Pools = slices.Clone(cfg.Pools)
	next.Pools[50].Backends = slices.Clone(cfg.Pools[50].Backends)
	next.Pools[50].Backends[3].Address = netip.MustParseAddr("10.99.0.1")
	if !k.quick(&next) {
		t.Fatal("a changed address in one pool was not checked on the quick path")
	}
	bad := next
	bad.Pools = slices.Clone(next.Pools)
	bad.Pools[60].Backends = slices.Clone(next.Pools[60].Backends)
	bad.Pools[60].Backends[0].Name = next.Pools[10].Backends[4].Name
	if k.quick(&bad) {
		t.Fatal("the quick path passed a duplicate backend name")
	}
	if got, want := fmt.Sprint(k.Validate(&bad)), fmt.Sprint(bad.Validate()); got != want {
		t.Errorf("Validate = %s, want %s", got, want)
	}
}
