package control

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
)

// digestConfig has two VIPs on two pools (one including the other), health
// checks and announce parameters: every kind of input the digests cover.
func digestConfig() *Config {
	web := pool(20, "web", []string{"extra"},
		be(22, "web-a", "10.0.0.1", 1), be(25, "web-b", "10.0.0.2", 2), be(28, "web-c", "10.0.0.3", 1))
	web.HealthChecks = []HealthCheck{
		{Method: "tcp", Interval: time.Second, Rise: 2, Fall: 3, Port: 80, Range: rng(40, 3)},
		{Method: "http", Params: map[string]json.RawMessage{"path": json.RawMessage(`"/health"`), "status": json.RawMessage(`200`)}, Range: rng(45, 3)},
	}
	extra := pool(50, "extra", nil, be(52, "extra-a", "10.0.1.1", 1))
	dns := pool(60, "dns", nil, be(62, "dns-a", "10.0.2.1", 1), be(65, "dns-b", "10.0.2.2", 1))
	w := vip(1, "web", "192.0.2.1", "tcp", []uint16{80, 443}, "web", 251)
	w.Announce = []Announce{
		{Announcer: "bgp", Params: map[string]json.RawMessage{"med": json.RawMessage(`10`)}, Range: rng(7, 3)},
		{Announcer: "other", Range: rng(9, 3)},
	}
	return &Config{HashSeed: 7, VIPs: []VIP{w, vip(10, "dns", "192.0.2.2", "udp", []uint16{53}, "dns", 0)},
		Pools: []Pool{web, extra, dns}}
}

// reversed is digestConfig written the other way round: blocks, backends,
// ports, included pools, checks and announce blocks in reverse order, on
// other lines, the table size that was left out written out, parameters
// with other spacing and key order.
func reversed() *Config {
	c := digestConfig()
	slices.Reverse(c.VIPs)
	slices.Reverse(c.Pools)
	for i := range c.VIPs {
		v := &c.VIPs[i]
		slices.Reverse(v.Ports)
		slices.Reverse(v.Announce)
		v.Range = rng(100+i, 1)
		if v.TableSize == 0 {
			v.TableSize = DefaultTableSize
		}
	}
	for i := range c.Pools {
		p := &c.Pools[i]
		slices.Reverse(p.Backends)
		slices.Reverse(p.HealthChecks)
		for j := range p.Backends {
			p.Backends[j].Range = rng(200+j, 1)
		}
		for j := range p.HealthChecks {
			if p.HealthChecks[j].Params != nil {
				p.HealthChecks[j].Params = map[string]json.RawMessage{"status": json.RawMessage(` 200 `), "path": json.RawMessage(`"/health"`)}
			}
		}
	}
	return c
}

// tableDigests maps each VIP of s to its table digest.
func tableDigests(s *snapshot.Snapshot) map[string]string {
	out := map[string]string{}
	for _, v := range s.VIPs {
		out[v.Name] = v.TableDigest
	}
	return out
}

func TestDigestsIgnoreHowTheConfigIsWritten(t *testing.T) {
	a := mustApply(t, New(), digestConfig())
	b := mustApply(t, New(), reversed())
	if len(a.ConfigDigest) != 64 || a.ConfigDigest != b.ConfigDigest {
		t.Errorf("config digests %q and %q, want equal SHA-256 hex", a.ConfigDigest, b.ConfigDigest)
	}
	da, db := tableDigests(a), tableDigests(b)
	if len(da) != 2 || da["web"] == "" || da["web"] == da["dns"] {
		t.Errorf("table digests %v, want one per VIP, each its own", da)
	}
	for name := range da {
		if da[name] != db[name] {
			t.Errorf("VIP %q: table digests %s and %s, want equal", name, da[name], db[name])
		}
	}
}

func TestDigestsChangeWithEveryInput(t *testing.T) {
	base := mustApply(t, New(), digestConfig())
	for _, tc := range []struct {
		name string
		// tables lists the VIPs whose table digest must change too.
		tables []string
		change func(c *Config)
	}{
		{"hash seed", []string{"web", "dns"}, func(c *Config) { c.HashSeed++ }},
		{"table size", []string{"web"}, func(c *Config) { c.VIPs[0].TableSize = 257 }},
		{"backend weight", []string{"web"}, func(c *Config) { c.Pools[0].Backends[1].Weight = 1 }},
		{"backend drained", []string{"web"}, func(c *Config) { c.Pools[0].Backends[1].Drain = true }},
		{"backend renamed", []string{"dns"}, func(c *Config) { c.Pools[2].Backends[1].Name = "dns-z" }},
		{"backend added", []string{"dns"}, func(c *Config) {
			c.Pools[2].Backends = append(c.Pools[2].Backends, be(68, "dns-c", "10.0.2.3", 1))
		}},
		{"backend removed", []string{"web"}, func(c *Config) { c.Pools[1].Backends = nil }},
		{"pool no longer included", []string{"web"}, func(c *Config) { c.Pools[0].Pools = nil }},
		{"backend address", nil, func(c *Config) { c.Pools[0].Backends[0].Address = netip.MustParseAddr("10.0.0.9") }},
		{"VIP address", nil, func(c *Config) { c.VIPs[1].Address = netip.MustParseAddr("192.0.2.9") }},
		{"VIP protocol", nil, func(c *Config) { c.VIPs[1].Protocol = "tcp" }},
		{"VIP port", nil, func(c *Config) { c.VIPs[0].Ports[1] = 8443 }},
		{"VIP on every port", nil, func(c *Config) { c.VIPs[0].Ports = nil }},
		{"health-check interval", nil, func(c *Config) { c.Pools[0].HealthChecks[0].Interval = 2 * time.Second }},
		{"health-check rise", nil, func(c *Config) { c.Pools[0].HealthChecks[0].Rise = 3 }},
		{"health-check port", nil, func(c *Config) { c.Pools[0].HealthChecks[0].Port = 81 }},
		{"health-check parameter", nil, func(c *Config) {
			c.Pools[0].HealthChecks[1].Params["path"] = json.RawMessage(`"/"`)
		}},
		{"health check removed", nil, func(c *Config) { c.Pools[0].HealthChecks = c.Pools[0].HealthChecks[:1] }},
		{"announce parameter", nil, func(c *Config) {
			c.VIPs[0].Announce[0].Params = map[string]json.RawMessage{"med": json.RawMessage(`20`)}
		}},
		{"announce block", nil, func(c *Config) { c.VIPs[0].Announce = c.VIPs[0].Announce[:1] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := digestConfig()
			tc.change(cfg)
			got := mustApply(t, New(), cfg)
			if got.ConfigDigest == base.ConfigDigest {
				t.Errorf("config digest unchanged: %s", got.ConfigDigest)
			}
			before, after := tableDigests(base), tableDigests(got)
			for name := range before {
				if changed := before[name] != after[name]; changed != slices.Contains(tc.tables, name) {
					t.Errorf("VIP %q: table digest changed = %v, want %v", name, changed, !changed)
				}
			}
		})
	}
}

// A table's digest follows the health of its backends, not the
// configuration's, and it is the same whether the table was rebuilt or
// reused.
func TestTableDigestFollowsHealth(t *testing.T) {
	c := New()
	s0 := mustApply(t, c, digestConfig())
	if err := c.SetHealthy("web-b", false); err != nil {
		t.Fatal(err)
	}
	s1 := c.Snapshot()
	if s1.ConfigDigest != s0.ConfigDigest {
		t.Errorf("a health change changed the config digest")
	}
	if d0, d1 := tableDigests(s0), tableDigests(s1); d0["web"] == d1["web"] || d0["dns"] != d1["dns"] {
		t.Errorf("table digests %v then %v: want web's changed and dns's not", d0, d1)
	}
	cfg := digestConfig()
	cfg.Pools[0].Backends = slices.DeleteFunc(cfg.Pools[0].Backends, func(b Backend) bool { return b.Name == "web-b" })
	if want := tableDigests(mustApply(t, New(), cfg))["web"]; tableDigests(s1)["web"] != want {
		t.Errorf("web-b down: table digest %s, want %s as without web-b", tableDigests(s1)["web"], want)
	}
	if err := c.SetHealthy("web-b", true); err != nil {
		t.Fatal(err)
	}
	if got := tableDigests(c.Snapshot()); got["web"] != tableDigests(s0)["web"] {
		t.Errorf("web-b up again: table digest %s, want %s", got["web"], tableDigests(s0)["web"])
	}
}

// sameTables reports how the tables of got differ from want's, by backend
// name at every slot and by digest.
func sameTables(t *testing.T, got, want *snapshot.Snapshot) {
	t.Helper()
	if len(got.VIPs) != len(want.VIPs) || got.ConfigDigest != want.ConfigDigest {
		t.Fatalf("%d VIPs, config digest %s; want %d, %s", len(got.VIPs), got.ConfigDigest, len(want.VIPs), want.ConfigDigest)
	}
	for i := range got.VIPs {
		g, w := &got.VIPs[i], &want.VIPs[i]
		if g.Name != w.Name || g.TableDigest != w.TableDigest || !slices.Equal(tableNames(got, g), tableNames(want, w)) {
			t.Fatalf("VIP %q: table (digest %s) differs from a full build's (%q, %s)", g.Name, g.TableDigest, w.Name, w.TableDigest)
		}
	}
}

// A one-backend change to one VIP among 1,000 builds that VIP's table
// only, through a reload as through a health change; the others are the
// very same tables, and the result is what a full build gives.
func TestIncrementalRebuild(t *testing.T) {
	const vips = 1000
	c := New()
	mustApply(t, c, manyVIPs(vips, 4, 101))
	if c.built != vips {
		t.Fatalf("first apply built %d tables, want %d", c.built, vips)
	}
	before := c.Snapshot()

	cfg := manyVIPs(vips, 4, 101)
	cfg.Pools[500].Backends[2].Weight = 3
	after := mustApply(t, c, cfg)
	if got := c.built - vips; got != 1 {
		t.Fatalf("a one-backend change built %d tables, want 1", got)
	}
	for i := range after.VIPs {
		same := &after.VIPs[i].Table[0] == &before.VIPs[i].Table[0]
		if same != (after.VIPs[i].Name != "p0500") {
			t.Errorf("VIP %q: table reused = %v", after.VIPs[i].Name, same)
		}
	}
	sameTables(t, after, mustApply(t, New(), cfg))

	// Removing a backend and adding another moves real IDs: the tables
	// still mean the same as a full build's.
	cfg = manyVIPs(vips, 4, 101)
	cfg.Pools[7].Backends = cfg.Pools[7].Backends[1:]
	cfg.Pools[900].Backends = append(cfg.Pools[900].Backends, Backend{Name: "p0900-new",
		Address: netip.MustParseAddr("10.200.0.1"), Weight: 1, Range: rng(1, 1)})
	built := c.built
	sameTables(t, mustApply(t, c, cfg), mustApply(t, New(), cfg))
	if got := c.built - built; got != 3 {
		t.Errorf("changing two VIPs' backends (and reverting a third) built %d tables, want 3", got)
	}

	built = c.built
	if err := c.SetHealth(map[string]bool{"p0042-1": false}); err != nil {
		t.Fatal(err)
	}
	if got := c.built - built; got != 1 {
		t.Errorf("a health change built %d tables, want 1", got)
	}
	down := manyVIPs(vips, 4, 101)
	down.Pools[7].Backends = down.Pools[7].Backends[1:]
	down.Pools[900].Backends = cfg.Pools[900].Backends
	down.Pools[42].Backends = slices.Delete(down.Pools[42].Backends, 1, 2)
	want := mustApply(t, New(), down)
	for i, v := range c.Snapshot().VIPs {
		if v.TableDigest != want.VIPs[i].TableDigest {
			t.Fatalf("VIP %q after the health change: digest %s, want %s as a full build without the backend", v.Name, v.TableDigest, want.VIPs[i].TableDigest)
		}
	}
}

// A new hash seed changes every table's digest, not its slots: the tables
// are reused.
func TestSeedChangeReusesTables(t *testing.T) {
	c := New()
	s0 := mustApply(t, c, digestConfig())
	cfg := digestConfig()
	cfg.HashSeed = 8
	built := c.built
	s1 := mustApply(t, c, cfg)
	if c.built != built {
		t.Errorf("a new seed built %d tables, want none", c.built-built)
	}
	sameTables(t, s1, mustApply(t, New(), cfg))
	if tableDigests(s0)["web"] == tableDigests(s1)["web"] {
		t.Error("a new seed left the table digest as it was")
	}
}

// TestTableDigestPinned pins the table digest's format: nodes of different
// versions compare digests, so a change to the encoding is a change to
// the format (xlb-table-v1), never an optimisation.
func TestTableDigestPinned(t *testing.T) {
	for _, c := range []struct {
		n, m int
		want string
	}{
		{3, 251, "2a21a7d7498286bb0766773e7e3f28dfdff61babdcb26bc012403ce2f25ff3fd"},
		{1<<16 + 1, 1<<16 + 3, "415b323baac884a650c357053ec813b5561f9fb6016c9d29c09df0afc790b74f"},
	} {
		up := make([]tableInput, c.n)
		for i := range up {
			up[i] = tableInput{backend: fmt.Sprintf("be-%d", i)}
		}
		idx := make([]uint32, c.m)
		for s := range idx {
			idx[s] = uint32(s*7919) % uint32(c.n)
		}
		if got := tableDigest(42, uint32(c.m), up, idx); got != c.want {
			t.Errorf("%d backends, m = %d: digest %s, want %s", c.n, c.m, got, c.want)
		}
	}
}
