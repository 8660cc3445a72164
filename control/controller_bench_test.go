package control

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// bigConfig has vips VIPs, each on its own pool of n backends of weight 1.
func bigConfig(vips, n int) *Config {
	cfg := &Config{}
	line := 1
	for v := range vips {
		name := fmt.Sprintf("svc%02d", v)
		cfg.VIPs = append(cfg.VIPs, vip(line, name, fmt.Sprintf("192.0.2.%d", v+1), "tcp", []uint16{80}, name, 0))
		line += 10
		p := pool(line, name, nil)
		line += 2
		for i := range n {
			p.Backends = append(p.Backends, be(line, fmt.Sprintf("%s-%03d", name, i), fmt.Sprintf("10.%d.%d.%d", v, i/250, i%250+1), 1))
			line += 3
		}
		cfg.Pools = append(cfg.Pools, p)
	}
	return cfg
}

// Reloading an unchanged configuration of 10 VIPs × 100 backends: validation
// and the snapshot, with every table reused.
func BenchmarkApplyUnchanged(b *testing.B) {
	c := New()
	cfg := bigConfig(10, 100)
	if err := c.Apply(cfg); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Apply(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// A health flip rebuilds one VIP's table (M = 65537, 100 backends).
func BenchmarkSetHealthy(b *testing.B) {
	c := New()
	if err := c.Apply(bigConfig(10, 100)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	healthy := false
	for b.Loop() {
		if err := c.SetHealthy("svc03-042", healthy); err != nil {
			b.Fatal(err)
		}
		healthy = !healthy
	}
}

// manyVIPs has vips VIPs, each with its own pool of n backends of weight
// 1, tables of size m (0: the default); backends are named p<vip>-<i>.
func manyVIPs(vips, n int, m uint32) *Config {
	cfg := &Config{HashSeed: 1}
	nth := func(first byte, i int) netip.Addr {
		return netip.AddrFrom4([4]byte{first, byte(i >> 16), byte(i >> 8), byte(i) + 1})
	}
	for v := range vips {
		name := fmt.Sprintf("p%04d", v)
		x := vip(v*10+1, name, "", "tcp", []uint16{80}, name, m)
		x.Address = nth(100, v)
		cfg.VIPs = append(cfg.VIPs, x)
		p := pool(v*10+5, name, nil)
		p.Backends = make([]Backend, n)
		for i := range n {
			p.Backends[i] = Backend{Name: fmt.Sprintf("%s-%d", name, i), Address: nth(10, v*n+i), Weight: 1,
				Range: rng(v*10+6, 3)}
		}
		cfg.Pools = append(cfg.Pools, p)
	}
	return cfg
}

// Issue #10's reloads without the HCL: 1,000 VIPs × 100 backends, tables
// of the default size. "full" applies the configuration to a new
// controller (validation, 1,000 table builds, the snapshot); "one-backend"
// alternates two configurations that differ in one backend's weight, so
// that each apply builds one table; "one-backend-shared" does the same
// with configurations that share their 999 other pools, as hcl.Cache
// hands over the pools of unchanged fragments.
func BenchmarkReload(b *testing.B) {
	cfg := manyVIPs(1000, 100, 0)
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := New().Apply(cfg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-backend", func(b *testing.B) {
		other := manyVIPs(1000, 100, 0)
		other.Pools[500].Backends[42].Weight = 2
		c := New()
		if err := c.Apply(cfg); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cfgs := [2]*Config{other, cfg}
		i := 0
		for b.Loop() {
			if err := c.Apply(cfgs[i%2]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("one-backend-shared", func(b *testing.B) {
		other := *cfg
		other.Pools = slices.Clone(cfg.Pools)
		other.Pools[500].Backends = slices.Clone(cfg.Pools[500].Backends)
		other.Pools[500].Backends[42].Weight = 2
		c := New()
		if err := c.Apply(cfg); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cfgs := [2]*Config{&other, cfg}
		i := 0
		for b.Loop() {
			if err := c.Apply(cfgs[i%2]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// 10,000 VIPs sharing one pool of 100 backends (tables of 1,009
// slots): the pool's backends are flattened once, not once per VIP.
func BenchmarkApplySharedPool(b *testing.B) {
	cfg := manyVIPs(10000, 0, 1009)
	shared := manyVIPs(1, 100, 0).Pools[0]
	shared.Name = "shared"
	for i := range cfg.VIPs {
		cfg.VIPs[i].Pool = "shared"
	}
	cfg.Pools = []Pool{shared}
	b.ReportAllocs()
	for b.Loop() {
		if err := New().Apply(cfg); err != nil {
			b.Fatal(err)
		}
	}
}
