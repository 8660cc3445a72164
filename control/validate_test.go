package control

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/pipeline"
)

// validConfig is a correct configuration: VIP web (tcp/80,443) on pool web,
// which nests pool canary; VIP dns (udp/53) on the empty pool dns.
//
//	1  vip "web" { address, protocol, ports, pool, table_size at 2..6 }
//	10 vip "dns" { ... at 11..15 }
//	20 pool "web" { pools at 21; backend "web-a" at 22, "web-b" at 25 }
//	30 pool "canary" { backend "canary-a" at 32 }
//	40 pool "dns" {}
func validConfig() *Config {
	return &Config{
		HashSeed: 42,
		VIPs: []VIP{
			vip(1, "web", "192.0.2.1", "tcp", []uint16{80, 443}, "web", 0),
			vip(10, "dns", "192.0.2.1", "udp", []uint16{53}, "dns", 13),
		},
		Pools: []Pool{
			pool(20, "web", []string{"canary"}, be(22, "web-a", "10.0.0.1", 100), be(25, "web-b", "10.0.0.2", 100)),
			pool(30, "canary", nil, be(32, "canary-a", "2001:db8::1", 10)),
			pool(40, "dns", nil),
		},
	}
}

type wantErr struct {
	at      string // file:line:col
	summary string
	detail  string // a substring of Detail
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []wantErr
	}{
		{"valid", func(*Config) {}, nil},
		{"table smaller than 100 N is allowed", func(c *Config) { c.VIPs[0].TableSize = 5 }, nil},
		{"VIP ports empty matches every port", func(c *Config) { c.VIPs[1].Ports = nil; c.VIPs[0].Address = addr("192.0.2.2") }, nil},
		{"same ports on other protocol or address", func(c *Config) { c.VIPs[1].Ports = []uint16{80} }, nil},
		{"health checks", func(c *Config) {
			c.Pools[0].HealthChecks = []HealthCheck{
				{Method: "tcp", Interval: time.Second, Timeout: 2 * time.Second, Range: rng(60, 3), AttrRange: pipeline.AttrRanges{{Name: "timeout", Range: rng(62, 5)}}},
				{Method: "tcp", Range: rng(65, 3)},
				{Method: "http", Rise: -1, Range: rng(70, 3)},
				{Method: "dns", Params: map[string]json.RawMessage{"qname": json.RawMessage("example.")}, Range: rng(75, 3), AttrRange: pipeline.AttrRanges{{Name: "qname", Range: rng(76, 5)}}},
			}
		}, []wantErr{
			{"f.hcl:62:5", "Timeout longer than interval", `Pool "web" health check "tcp" times out after 2s but runs every 1s`},
			{"f.hcl:65:3", "Duplicate health check", `Pool "web" already has a "tcp" health check at f.hcl:60:3; merge the two blocks.`},
			{"f.hcl:70:3", "Invalid rise or fall", `has rise -1 and fall 0`},
			{"f.hcl:76:5", "Invalid health-check parameter", `parameter qname is not a JSON value`}}},
		{"duplicate VIP name", func(c *Config) { c.VIPs[1].Name = "web" }, []wantErr{
			{"f.hcl:10:1", "Duplicate VIP name", `A VIP named "web" was already declared at f.hcl:1:1; give this one another name.`}}},
		{"duplicate pool name", func(c *Config) { c.Pools = append(c.Pools, pool(50, "web", nil)) }, []wantErr{
			{"f.hcl:50:1", "Duplicate pool name", `A pool named "web" was already declared at f.hcl:20:1`}}},
		{"duplicate backend across pools", func(c *Config) { c.Pools[1].Backends[0].Name = "web-b" }, []wantErr{
			{"f.hcl:32:3", "Duplicate backend name", `A backend named "web-b" was already declared at f.hcl:25:3 (pool "web")`}}},
		{"unknown pool of a VIP", func(c *Config) { c.VIPs[1].Pool = "dsn" }, []wantErr{
			{"f.hcl:14:3", "Unknown pool", `VIP "dns" uses pool "dsn", which is not declared (did you mean "dns"?); declare it or fix the name.`}}},
		{"unknown nested pool", func(c *Config) { c.Pools[0].Pools = []string{"nope"} }, []wantErr{
			{"f.hcl:21:3", "Unknown pool", `Pool "web" includes pool "nope", which is not declared; declare it or fix the name.`}}},
		{"missing pool", func(c *Config) { c.VIPs[1].Pool = "" }, []wantErr{
			{"f.hcl:10:1", "Missing pool", `VIP "dns" has no pool`}}},
		{"cycle", func(c *Config) { c.Pools[1].Pools = []string{"dns"}; c.Pools[2].Pools = []string{"web"} }, []wantErr{
			{"f.hcl:21:3", "Pool inclusion cycle", "(web -> canary -> dns -> web)"}}},
		{"self cycle", func(c *Config) { c.Pools[2].Pools = []string{"dns"} }, []wantErr{
			{"f.hcl:41:3", "Pool inclusion cycle", "(dns -> dns)"}}},
		{"protocol", func(c *Config) { c.VIPs[0].Protocol = "sctp" }, []wantErr{
			{"f.hcl:3:3", "Invalid protocol", `VIP "web" has protocol "sctp"; set protocol to "tcp", "udp" or "any".`}}},
		{"protocol unset", func(c *Config) { c.VIPs[0].Protocol = "" }, []wantErr{
			{"f.hcl:3:3", "Invalid protocol", `protocol ""`}}},
		{"port 0 and duplicate port", func(c *Config) { c.VIPs[0].Ports = []uint16{80, 0, 80} }, []wantErr{
			{"f.hcl:4:3", "Invalid port", `VIP "web" lists port 0; ports go from 1 to 65535`},
			{"f.hcl:4:3", "Duplicate port", `VIP "web" lists port 80 more than once`}}},
		{"each port problem at its port, a duplicate once at its second listing", func(c *Config) {
			c.VIPs[0].Ports = []uint16{80, 0, 80, 80, 443, 443, 0}
			c.VIPs[0].PortRanges = []pipeline.Range{rng(4, 12), rng(4, 16), rng(4, 19), rng(4, 23), rng(4, 27), rng(4, 32), rng(4, 37)}
		}, []wantErr{
			{"f.hcl:4:16", "Invalid port", `VIP "web" lists port 0; ports go from 1 to 65535`},
			{"f.hcl:4:19", "Duplicate port", `VIP "web" lists port 80 more than once (first at f.hcl:4:12)`},
			{"f.hcl:4:32", "Duplicate port", `VIP "web" lists port 443 more than once (first at f.hcl:4:27)`},
			{"f.hcl:4:37", "Invalid port", `VIP "web" lists port 0`}}},
		{"port ranges that do not match the ports: the attribute", func(c *Config) {
			c.VIPs[0].Ports = []uint16{80, 80}
			c.VIPs[0].PortRanges = []pipeline.Range{rng(4, 12)}
		}, []wantErr{{"f.hcl:4:3", "Duplicate port", `port 80 more than once (first at f.hcl:4:3)`}}},
		{"the first of several overlapped VIPs", func(c *Config) {
			c.VIPs = append(c.VIPs, vip(50, "web2", "192.0.2.1", "any", []uint16{8080, 443}, "web", 0))
		}, []wantErr{
			{"f.hcl:50:1", "Overlapping VIPs", `VIP "web2" claims tcp port 443 on 192.0.2.1, which VIP "web" declared at f.hcl:1:1 already claims`}}},
		{"same address, protocol and port", func(c *Config) { c.VIPs[1].Protocol = "tcp"; c.VIPs[1].Ports = []uint16{22, 443} }, []wantErr{
			{"f.hcl:10:1", "Overlapping VIPs", `VIP "dns" claims tcp port 443 on 192.0.2.1, which VIP "web" declared at f.hcl:1:1 already claims`}}},
		{"overlap through any protocol", func(c *Config) { c.VIPs[1].Protocol = "any"; c.VIPs[1].Ports = []uint16{80} }, []wantErr{
			{"f.hcl:10:1", "Overlapping VIPs", `VIP "dns" claims tcp port 80 on 192.0.2.1`}}},
		{"overlap through every port", func(c *Config) { c.VIPs[1].Protocol = "tcp"; c.VIPs[1].Ports = nil }, []wantErr{
			{"f.hcl:10:1", "Overlapping VIPs", `VIP "dns" claims tcp port 80 on 192.0.2.1`}}},
		{"overlap IPv4-mapped", func(c *Config) {
			c.VIPs[1].Address = addr("::ffff:192.0.2.1")
			c.VIPs[1].Protocol = "any"
			c.VIPs[1].Ports = nil
		}, []wantErr{
			{"f.hcl:10:1", "Overlapping VIPs", `VIP "dns" claims tcp port 80 on ::ffff:192.0.2.1`}}},
		{"table size not prime", func(c *Config) { c.VIPs[1].TableSize = 65536 }, []wantErr{
			{"f.hcl:15:3", "Table size not prime", "Use 65521 or 65537."}}},
		{"table size too large", func(c *Config) { c.VIPs[1].TableSize = 1<<24 + 1 }, []wantErr{
			{"f.hcl:15:3", "Table size too large", "above the maximum 16777216; set a smaller prime such as 16777213."}}},
		{"table size not above backends (nested ones count once)", func(c *Config) {
			c.Pools = append(c.Pools, pool(50, "all", []string{"web", "canary"}))
			c.VIPs[0].Pool, c.VIPs[0].TableSize = "all", 3
		}, []wantErr{
			{"f.hcl:6:3", "Table size too small", `VIP "web" reaches 3 backends but its table has only 3 slots; set table_size to a prime greater than 3, ideally above 100 times the number of backends (such as 307)`}}},
		{"addresses", func(c *Config) {
			c.VIPs[0].Address = addr("0.0.0.0")
			c.VIPs[1].Address = addr("")
			c.Pools[0].Backends[0].Address = addr("ff02::1")
			c.Pools[0].Backends[1].Address = addr("::")
		}, []wantErr{
			{"f.hcl:2:3", "Invalid address", `VIP "web" has the unspecified address 0.0.0.0`},
			{"f.hcl:11:3", "Missing address", `VIP "dns" has no address`},
			{"f.hcl:23:5", "Invalid address", `Backend "web-a" has the multicast address ff02::1`},
			{"f.hcl:26:5", "Invalid address", `Backend "web-b" has the unspecified address ::`}}},
		// Table builds cost O(M·log N) whatever the weights, so any
		// uint32 weight is valid.
		{"any weight", func(c *Config) { c.Pools[1].Backends[0].Weight = 1<<32 - 1 }, nil},
		{"every problem, in source order", func(c *Config) {
			c.Pools[1].Backends[0].Address = addr("ff02::2")
			c.VIPs[1].Protocol = "icmp"
			c.VIPs[0].Pool = "nope"
		}, []wantErr{
			{"f.hcl:5:3", "Unknown pool", `"nope"`},
			{"f.hcl:12:3", "Invalid protocol", `"icmp"`},
			{"f.hcl:33:5", "Invalid address", "ff02::2"}}},
		{"no attribute ranges: block range", func(c *Config) {
			c.VIPs[0].AttrRange = nil
			c.VIPs[0].Protocol = "x"
		}, []wantErr{{"f.hcl:1:1", "Invalid protocol", `"x"`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(c)
			errs := c.Validate()
			for i := 0; i < max(len(errs), len(tc.want)); i++ {
				switch {
				case i >= len(errs):
					t.Errorf("missing error %d: %s: %s: ...%s...", i, tc.want[i].at, tc.want[i].summary, tc.want[i].detail)
				case i >= len(tc.want):
					t.Errorf("unexpected error %d: %v", i, errs[i])
				default:
					e, w := errs[i], tc.want[i]
					if e.Range.String() != w.at || e.Summary != w.summary || !strings.Contains(e.Detail, w.detail) {
						t.Errorf("error %d:\n got %s: %s: %s\nwant %s: %s: ...%s...", i, e.Range, e.Summary, e.Detail, w.at, w.summary, w.detail)
					}
					if !strings.HasSuffix(e.Detail, ".") || strings.HasSuffix(e.Summary, ".") {
						t.Errorf("error %d: Detail must be a full sentence and Summary have no period: %q / %q", i, e.Summary, e.Detail)
					}
				}
			}
		})
	}
}

// TestOverlapsAsPairs checks the index of claims against the definition,
// every VIP compared with every one before it, over random VIPs on few
// addresses, protocols and ports.
func TestOverlapsAsPairs(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	protos := []string{"tcp", "udp", "any"}
	// overlapping reports whether a packet could match both x and y.
	overlapping := func(x, y *VIP) bool {
		if x.Address != y.Address || x.Protocol != y.Protocol && x.Protocol != "any" && y.Protocol != "any" {
			return false
		}
		if len(x.Ports) == 0 || len(y.Ports) == 0 {
			return true
		}
		for _, p := range x.Ports {
			if slices.Contains(y.Ports, p) {
				return true
			}
		}
		return false
	}
	for range 2000 {
		c := &Config{Pools: []Pool{pool(1000, "p", nil, be(1001, "b", "10.0.0.1", 1))}}
		for i := range 6 {
			var ports []uint16
			if rnd.IntN(3) > 0 {
				for _, p := range rnd.Perm(4)[:1+rnd.IntN(3)] {
					ports = append(ports, uint16(p+1))
				}
			}
			c.VIPs = append(c.VIPs, vip(10*i+1, fmt.Sprint("v", i), fmt.Sprint("192.0.2.", 1+rnd.IntN(2)), protos[rnd.IntN(3)], ports, "p", 0))
		}
		var want []string
		var kept []*VIP
		for i := range c.VIPs {
			x := &c.VIPs[i]
			for _, y := range kept {
				if overlapping(x, y) {
					want = append(want, x.Name+" "+y.Name)
					break
				}
			}
			kept = append(kept, x)
		}
		var got []string
		for _, e := range c.Validate() {
			if e.Summary != "Overlapping VIPs" {
				t.Fatalf("unexpected %v", e)
			}
			var x, y string
			fmt.Sscanf(e.Detail, "VIP %q", &x)
			_, rest, _ := strings.Cut(e.Detail, "which VIP ")
			fmt.Sscanf(rest, "%q", &y)
			got = append(got, x+" "+y)
			// The packet described must belong to both.
			var proto string
			var port int
			if n, _ := fmt.Sscanf(e.Detail[strings.Index(e.Detail, "claims ")+7:], "%s port %d", &proto, &port); n == 2 {
				for _, v := range []string{x, y} {
					vv := c.VIPs[slices.IndexFunc(c.VIPs, func(w VIP) bool { return w.Name == v })]
					if len(vv.Ports) > 0 && !slices.Contains(vv.Ports, uint16(port)) || vv.Protocol != "any" && vv.Protocol != proto {
						t.Errorf("%s: VIP %s does not claim %s port %d", e.Detail, v, proto, port)
					}
				}
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("overlaps %v, want %v, in %+v", got, want, c.VIPs)
		}
	}
}
