package control

import (
	"fmt"
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
