package control

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

func mustApply(t *testing.T, c *Controller, cfg *Config) *snapshot.Snapshot {
	t.Helper()
	if err := c.Apply(cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return c.Snapshot()
}

// realOf returns the real of backend in the named VIP, or nil.
func realOf(s *snapshot.Snapshot, vipName, backend string) *snapshot.Real {
	for _, v := range s.VIPs {
		if v.Name != vipName {
			continue
		}
		for _, id := range v.Reals {
			if r := s.Reals.At(id); r.Backend == backend {
				return r
			}
		}
	}
	return nil
}

func vipOf(t *testing.T, s *snapshot.Snapshot, name string) *snapshot.VIP {
	t.Helper()
	for i := range s.VIPs {
		if s.VIPs[i].Name == name {
			return &s.VIPs[i]
		}
	}
	t.Fatalf("no VIP %q in snapshot", name)
	return nil
}

// tableNames maps a VIP's table to backend names.
func tableNames(s *snapshot.Snapshot, v *snapshot.VIP) []string {
	out := make([]string, len(v.Table))
	for i, id := range v.Table {
		out[i] = s.Reals.At(id).Backend
	}
	return out
}

// webConfig has one VIP "web" on pool "web" with the given backends,
// each of weight 1 at address 10.0.0.<i+1>.
func webConfig(backends ...string) *Config {
	p := pool(20, "web", nil)
	for i, name := range backends {
		p.Backends = append(p.Backends, be(30+3*i, name, fmt.Sprintf("10.0.0.%d", i+1), 1))
	}
	return &Config{VIPs: []VIP{vip(1, "web", "192.0.2.1", "tcp", []uint16{80}, "web", 251)}, Pools: []Pool{p}}
}

func TestNewEmptySnapshot(t *testing.T) {
	c := New()
	s := c.Snapshot()
	if s == nil || s.Generation != 0 || len(s.VIPs) != 0 || c.Store().Load() != s {
		t.Fatalf("New: snapshot %+v, want an empty generation 0", s)
	}
	st := snapshot.NewStore(nil)
	if New(WithStore(st)).Store() != st || st.Load() == nil {
		t.Fatal("WithStore: the controller must publish an empty snapshot into the given store")
	}
}

func TestApplySnapshot(t *testing.T) {
	c := New()
	s := mustApply(t, c, validConfig())
	if s.Generation != 1 || s.HashSeed != 42 || len(s.VIPs) != 2 {
		t.Fatalf("generation %d seed %d VIPs %d, want 1 42 2", s.Generation, s.HashSeed, len(s.VIPs))
	}
	web := vipOf(t, s, "web")
	if web.Proto != 6 || !slices.Equal(web.Ports, []uint16{80, 443}) || len(web.Table) != DefaultTableSize {
		t.Errorf("web: proto %d ports %v table %d", web.Proto, web.Ports, len(web.Table))
	}
	if dns := vipOf(t, s, "dns"); dns.Proto != 17 || dns.Table != nil || len(dns.Reals) != 0 {
		t.Errorf("dns (empty pool): proto %d table %d reals %v, want 17, empty, none", dns.Proto, len(dns.Table), dns.Reals)
	}
	r := realOf(s, "web", "canary-a")
	if r == nil || r.Family != 6 || r.Addr.String() != "2001:db8::1" || r.Weight != 10 || r.State != snapshot.Up || r.Epoch != 1 {
		t.Fatalf("canary-a: %+v", r)
	}
	if r4 := realOf(s, "web", "web-a"); r4.Family != 4 || r4.Addr16 != r4.Addr.As16() {
		t.Fatalf("web-a: %+v", r4)
	}
	// The VIP is found by the data plane's lookup, and its table selects
	// existing reals.
	i, ok := s.LookupVIP(&pipeline.Flow{Dst: addr("192.0.2.1").As16(), Proto: 6, DstPort: 443})
	if !ok || s.VIPs[i].Name != "web" {
		t.Fatalf("LookupVIP(web:443) = %d, %v", i, ok)
	}
	for _, id := range web.Table {
		if s.Real(id, s.Reals.At(id).Epoch) == nil || s.Reals.At(id).VIP != i {
			t.Fatalf("table entry %d is not a real of web", id)
		}
	}
}

// Surviving reals keep their ID and Epoch whatever the order of the
// backends, and when others are added or removed.
func TestStableIDs(t *testing.T) {
	c := New()
	s1 := mustApply(t, c, webConfig("a", "b", "c"))
	want := map[string]snapshot.Real{}
	for _, n := range []string{"a", "b", "c"} {
		want[n] = *realOf(s1, "web", n)
	}
	for _, step := range [][]string{
		{"c", "a", "b"},      // reordered
		{"c", "d", "a", "b"}, // one added
		{"d", "a", "b"},      // one removed
	} {
		s := mustApply(t, c, webConfig(step...))
		for _, n := range step {
			r := realOf(s, "web", n)
			if w, ok := want[n]; ok && (r.ID != w.ID || r.Epoch != w.Epoch) {
				t.Errorf("%v: real %s has ID %d epoch %d, had %d %d", step, n, r.ID, r.Epoch, w.ID, w.Epoch)
			}
			want[n] = *r
		}
		if len(vipOf(t, s, "web").Reals) != len(step) {
			t.Errorf("%v: reals %v", step, vipOf(t, s, "web").Reals)
		}
	}
	// c was removed: its old (ID, Epoch) no longer names a real.
	if r := c.Snapshot().Real(want["c"].ID, want["c"].Epoch); r != nil && r.Backend == "c" {
		t.Errorf("removed real c still resolves: %+v", r)
	}
}

// A real removed and added back may get its old ID, but with a new Epoch,
// so connection-tracking entries made for the old one do not match it.
func TestReaddedRealNewEpoch(t *testing.T) {
	c := New()
	old := *realOf(mustApply(t, c, webConfig("a", "b")), "web", "a")
	s := mustApply(t, c, webConfig("b"))
	if s.Real(old.ID, old.Epoch) != nil {
		t.Fatalf("removed real a (ID %d epoch %d) still resolves", old.ID, old.Epoch)
	}
	s = mustApply(t, c, webConfig("a", "b"))
	r := realOf(s, "web", "a")
	if r.ID != old.ID || r.Epoch <= old.Epoch {
		t.Fatalf("re-added a: ID %d epoch %d; want the freed ID %d with an epoch above %d", r.ID, r.Epoch, old.ID, old.Epoch)
	}
	if s.Real(old.ID, old.Epoch) != nil {
		t.Fatal("the old (ID, Epoch) must not resolve to the re-added real")
	}
	// A freed ID is reused by another real with the next epoch too.
	s = mustApply(t, c, webConfig("b", "x"))
	if x := realOf(s, "web", "x"); x.ID != old.ID || x.Epoch != r.Epoch+1 {
		t.Fatalf("x: ID %d epoch %d, want %d %d", x.ID, x.Epoch, old.ID, r.Epoch+1)
	}
}

func TestDraining(t *testing.T) {
	cfg := webConfig("a", "b", "c")
	cfg.Pools[0].Backends[0].Weight = 0
	cfg.Pools[0].Backends[1].Drain = true
	cfg.Pools[0].Backends[1].Weight = 5
	s := mustApply(t, New(), cfg)
	for n, want := range map[string]snapshot.State{"a": snapshot.Draining, "b": snapshot.Draining, "c": snapshot.Up} {
		if r := realOf(s, "web", n); r.State != want || !r.KeepsFlows() {
			t.Errorf("%s: state %v, want %v", n, r.State, want)
		}
	}
	if names := tableNames(s, vipOf(t, s, "web")); slices.ContainsFunc(names, func(n string) bool { return n != "c" }) {
		t.Error("draining backends must own no slot")
	}
}

// Nested pools are flattened and a backend reached twice counts once.
func TestNestedPools(t *testing.T) {
	cfg := &Config{
		VIPs: []VIP{vip(1, "svc", "192.0.2.1", "any", nil, "top", 0)},
		Pools: []Pool{
			pool(10, "top", []string{"left", "right"}, be(12, "t", "10.0.0.1", 1)),
			pool(20, "left", []string{"shared"}, be(22, "l", "10.0.0.2", 1)),
			pool(30, "right", []string{"shared"}),
			pool(40, "shared", nil, be(42, "s", "10.0.0.3", 1)),
		},
	}
	s := mustApply(t, New(), cfg)
	v := vipOf(t, s, "svc")
	var got []string
	for _, id := range v.Reals {
		got = append(got, s.Reals.At(id).Backend)
	}
	if !slices.Equal(got, []string{"l", "s", "t"}) {
		t.Fatalf("reals %v, want [l s t] (sorted by name, s once)", got)
	}
	if v.Proto != 0 || len(v.Ports) != 0 {
		t.Fatalf("proto %d ports %v, want any/every port", v.Proto, v.Ports)
	}
}

func TestRejectedApplyKeepsSnapshot(t *testing.T) {
	c := New()
	before := mustApply(t, c, validConfig())
	bad := validConfig()
	bad.VIPs[0].Protocol = "sctp"
	err := c.Apply(bad)
	var errs pipeline.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Summary != "Invalid protocol" {
		t.Fatalf("Apply(bad) = %v, want the validation errors", err)
	}
	if c.Snapshot() != before {
		t.Fatal("a rejected Apply replaced the snapshot")
	}
	if s := mustApply(t, c, validConfig()); s.Generation != before.Generation+1 {
		t.Fatalf("generation %d after a rejected apply, want %d", s.Generation, before.Generation+1)
	}
}

// The same configuration gives the same tables, by backend name, however it
// is declared, and on a fresh controller the same IDs too.
func TestTablesOrderIndependent(t *testing.T) {
	a := validConfig()
	b := validConfig()
	slices.Reverse(b.VIPs)
	slices.Reverse(b.Pools)
	for i := range b.Pools {
		slices.Reverse(b.Pools[i].Backends)
	}
	sa, sb := mustApply(t, New(), a), mustApply(t, New(), b)
	for _, name := range []string{"web", "dns"} {
		va, vb := vipOf(t, sa, name), vipOf(t, sb, name)
		if !slices.Equal(va.Table, vb.Table) || !slices.Equal(tableNames(sa, va), tableNames(sb, vb)) {
			t.Errorf("VIP %s: tables differ with declaration order", name)
		}
	}
	// A controller with history assigns other IDs, but the table maps
	// slots to the same backends: what every node must agree on.
	c := New()
	mustApply(t, c, webConfig("zz", "yy"))
	sc := mustApply(t, c, a)
	if !slices.Equal(tableNames(sa, vipOf(t, sa, "web")), tableNames(sc, vipOf(t, sc, "web"))) {
		t.Error("tables differ by backend name after another history")
	}
}

// A reload that does not change a VIP's table inputs reuses its table.
func TestTableReuse(t *testing.T) {
	c := New()
	s1 := mustApply(t, c, validConfig())
	cfg := validConfig()
	cfg.VIPs[1].Ports = []uint16{53, 5353} // dns only
	s2 := mustApply(t, c, cfg)
	t1, t2 := vipOf(t, s1, "web").Table, vipOf(t, s2, "web").Table
	if &t1[0] != &t2[0] {
		t.Error("web's table was rebuilt though its inputs did not change")
	}
	cfg = validConfig()
	cfg.Pools[0].Backends[0].Weight = 50
	s3 := mustApply(t, c, cfg)
	if t3 := vipOf(t, s3, "web").Table; &t3[0] == &t2[0] || slices.Equal(t2, t3) {
		t.Error("web's table was reused though a weight changed")
	}
}

func TestSetHealthy(t *testing.T) {
	c := New()
	if err := c.SetHealthy("web-a", false); err == nil {
		t.Fatal("SetHealthy before any config: want an unknown-backend error")
	}
	s1 := mustApply(t, c, validConfig())
	if err := c.SetHealthy("nope", false); err == nil {
		t.Fatal("SetHealthy(unknown backend): want an error")
	}
	if err := c.SetHealthy("web-a", true); err != nil || c.Snapshot() != s1 {
		t.Fatalf("SetHealthy(healthy backend, true) = %v; it must not republish", err)
	}
	if err := c.SetHealthy("web-a", false); err != nil {
		t.Fatal(err)
	}
	s2 := c.Snapshot()
	down, before := realOf(s2, "web", "web-a"), realOf(s1, "web", "web-a")
	if s2.Generation != 2 || down.State != snapshot.Down || down.KeepsFlows() || down.ID != before.ID || down.Epoch != before.Epoch {
		t.Fatalf("after SetHealthy(web-a, false): generation %d, real %+v", s2.Generation, down)
	}
	if slices.Contains(tableNames(s2, vipOf(t, s2, "web")), "web-a") {
		t.Fatal("a down backend must own no slot")
	}
	// Health survives a reload, and is forgotten when the backend goes.
	if r := realOf(mustApply(t, c, validConfig()), "web", "web-a"); r.State != snapshot.Down {
		t.Fatalf("after reload: %v, want down", r.State)
	}
	cfg := validConfig()
	cfg.Pools[0].Backends = cfg.Pools[0].Backends[1:]
	mustApply(t, c, cfg)
	if r := realOf(mustApply(t, c, validConfig()), "web", "web-a"); r.State != snapshot.Up {
		t.Fatalf("re-added backend: %v, want up (healthy by default)", r.State)
	}
	if err := c.SetHealthy("web-a", false); err != nil {
		t.Fatal(err)
	}
	if err := c.SetHealthy("web-a", true); err != nil || realOf(c.Snapshot(), "web", "web-a").State != snapshot.Up {
		t.Fatalf("SetHealthy(web-a, true): %v", err)
	}
}

// Mutations from several goroutines are serialized, and readers load
// snapshots concurrently (run with -race).
func TestConcurrentMutations(t *testing.T) {
	c := New()
	mustApply(t, c, validConfig())
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if err := c.SetHealthy("web-b", (i+j)%2 == 0); err != nil {
					t.Error(err)
				}
				if j%5 == 0 {
					if err := c.Apply(validConfig()); err != nil {
						t.Error(err)
					}
				}
				_ = c.Snapshot().VIPs[0].Table
			}
		}()
	}
	wg.Wait()
	// The last snapshot agrees with the last recorded health.
	s := c.Snapshot()
	c.mu.Lock()
	wantDown := c.unhealthy["web-b"]
	c.mu.Unlock()
	if got := realOf(s, "web", "web-b").State == snapshot.Down; got != wantDown {
		t.Fatalf("web-b down = %v in the last snapshot, want %v", got, wantDown)
	}
	for _, id := range vipOf(t, s, "web").Table {
		if r := s.Real(id, s.Reals.At(id).Epoch); r == nil || r.State != snapshot.Up {
			t.Fatalf("table entry %d is not an up real", id)
		}
	}
}

// A one-backend change publishes a snapshot that shares every chunk of
// reals with the last one but those of the changed VIP's reals: the
// publication copies a chunk or two, not every real (issue #10: 8 MB for
// 1,000 VIPs × 100 backends, at every reload).
func TestOneBackendSharesReals(t *testing.T) {
	cfg := manyVIPs(100, 30, 1009)
	c := New()
	s1 := mustApply(t, c, cfg)
	other := *cfg
	other.Pools = slices.Clone(cfg.Pools)
	other.Pools[50].Backends = slices.Clone(cfg.Pools[50].Backends)
	other.Pools[50].Backends[7].Weight = 2
	s2 := mustApply(t, c, &other)
	changed := map[int]bool{}
	for _, id := range vipOf(t, s2, "p0050").Reals {
		changed[int(id/snapshot.RealChunk)] = true
	}
	if s1.Reals.Chunks() != s2.Reals.Chunks() || s2.Reals.Chunks() < 10 {
		t.Fatalf("%d chunks, then %d", s1.Reals.Chunks(), s2.Reals.Chunks())
	}
	for k := range s2.Reals.Chunks() {
		if shared := s1.Reals.Chunk(k) == s2.Reals.Chunk(k); shared == changed[k] {
			t.Errorf("chunk %d: shared %v, holds the changed VIP's reals %v", k, shared, changed[k])
		}
	}
	if w1, w2 := realOf(s1, "p0050", "p0050-7").Weight, realOf(s2, "p0050", "p0050-7").Weight; w1 != 1 || w2 != 2 {
		t.Errorf("the changed real: weight %d, then %d", w1, w2)
	}
}
