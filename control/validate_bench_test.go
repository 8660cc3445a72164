package control

import (
	"fmt"
	"testing"
)

// BenchmarkValidate: 10,000 VIPs on one address, each its own port, or
// each with every port on its own address, sharing a pool of one backend;
// naming a pool that is not among 10,000; or sharing a pool of 10,000
// backends.
func BenchmarkValidate(b *testing.B) {
	var big []Backend
	for i := range 10000 {
		big = append(big, be(10+i, fmt.Sprint("b", i), fmt.Sprintf("10.1.%d.%d", i>>8, i&255), 1))
	}
	for _, tc := range []struct {
		name     string
		vip      func(i int) VIP
		backends []Backend
	}{
		{"one-address-10000-ports", func(i int) VIP {
			return vip(i, fmt.Sprint("v", i), "192.0.2.1", "tcp", []uint16{uint16(i + 1)}, "p", 0)
		}, nil},
		{"addresses-10000", func(i int) VIP {
			return vip(i, fmt.Sprint("v", i), fmt.Sprintf("10.0.%d.%d", i>>8, i&255), "any", nil, "p", 0)
		}, nil},
		{"unknown-pool-10000", func(i int) VIP {
			return vip(i, fmt.Sprint("v", i), fmt.Sprintf("10.0.%d.%d", i>>8, i&255), "any", nil, "nope", 0)
		}, nil},
		{"shared-pool-10000", func(i int) VIP {
			return vip(i, fmt.Sprint("v", i), fmt.Sprintf("10.0.%d.%d", i>>8, i&255), "any", nil, "p", 0)
		}, big},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := &Config{Pools: []Pool{pool(1, "p", nil, be(2, "b", "10.0.0.1", 1))}}
			if tc.backends != nil {
				c.Pools[0].Backends = tc.backends
			}
			if tc.name == "unknown-pool-10000" {
				for i := range 10000 {
					c.Pools = append(c.Pools, pool(20000+i, fmt.Sprint("pool", i), nil))
				}
			}
			for i := range 10000 {
				c.VIPs = append(c.VIPs, tc.vip(i))
			}
			b.ReportAllocs()
			for b.Loop() {
				if errs := c.Validate(); len(errs) > 0 && tc.name != "unknown-pool-10000" {
					b.Fatal(errs)
				}
			}
		})
	}
}
