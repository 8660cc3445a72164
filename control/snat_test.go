package control

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// snatConfig is validConfig with SNAT on VIP web (ranges of 1024 ports;
// web reaches web-a, web-b and canary-a); snat_ports at line 7.
func snatConfig(size uint32) *Config {
	c := validConfig()
	c.VIPs[0].SNATPorts = size
	c.VIPs[0].AttrRange = append(c.VIPs[0].AttrRange, pipeline.AttrRange{Name: attrSNATPorts, Range: rng(7, 3)})
	return c
}

// snatRanges returns the ranges of s's VIP name by backend name, as
// "first-last".
func snatRanges(t *testing.T, s *snapshot.Snapshot, name string) map[string]string {
	t.Helper()
	for i := range s.VIPs {
		v := &s.VIPs[i]
		if v.Name != name {
			continue
		}
		if v.SNAT == nil {
			t.Fatalf("VIP %s has no SNAT", name)
		}
		out := map[string]string{}
		for _, id := range v.Reals {
			first, last, ok := v.SNAT.Range(id)
			if !ok {
				t.Fatalf("real %d of %s has no range", id, name)
			}
			out[s.Reals.At(id).Backend] = fmt.Sprintf("%d-%d", first, last)
		}
		return out
	}
	t.Fatalf("no VIP %s", name)
	return nil
}

func TestSNATRanges(t *testing.T) {
	c := New()
	if err := c.Apply(snatConfig(1024)); err != nil {
		t.Fatal(err)
	}
	s := c.Snapshot()
	got := snatRanges(t, s, "web")
	if len(got) != 3 {
		t.Fatalf("ranges %v, want one for each of 3 backends", got)
	}
	seen := map[string]bool{}
	for b, r := range got {
		var first, last int
		fmt.Sscanf(r, "%d-%d", &first, &last)
		if last-first != 1023 || first < SNATFirstPort || (first-SNATFirstPort)%1024 != 0 || seen[r] {
			t.Errorf("backend %s has range %s", b, r)
		}
		seen[r] = true
	}
	// Every port maps back to its range's owner, and a port of no range
	// to none.
	v := &s.VIPs[slices.IndexFunc(s.VIPs, func(v snapshot.VIP) bool { return v.Name == "web" })]
	owned := 0
	for port := range 1 << 16 {
		id := v.SNAT.Owner(uint16(port))
		if id == snapshot.NoReal {
			continue
		}
		owned++
		var first, last int
		fmt.Sscanf(got[s.Reals.At(id).Backend], "%d-%d", &first, &last)
		if port < first || port > last {
			t.Fatalf("port %d maps to %s, whose range is %d-%d", port, s.Reals.At(id).Backend, first, last)
		}
	}
	if !slices.Equal(v.SNAT.Service, []uint16{53, 80, 443}) {
		t.Errorf("service ports %v, want those of both VIPs on the address", v.SNAT.Service)
	}
	if owned != 3*1024 {
		t.Errorf("%d ports owned, want %d", owned, 3*1024)
	}
	if other := &s.VIPs[slices.IndexFunc(s.VIPs, func(v snapshot.VIP) bool { return v.Name == "dns" })]; other.SNAT != nil {
		t.Error("VIP dns has SNAT ranges without snat_ports")
	}
	a := s.VIPs[0].Addr.As16()
	if i, ok := s.SNATVIP(&a); !ok || s.VIPs[i].Name != "web" {
		t.Errorf("SNATVIP(%s) = %d, %v", s.VIPs[0].Addr, i, ok)
	}
}

// TestSNATSameOnEveryNode: two controllers with different histories (real
// IDs assigned in another order, health changes) give every backend the
// same range, and their table digests are equal; another range size
// changes the digest.
func TestSNATSameOnEveryNode(t *testing.T) {
	a, b := New(), New()
	if err := a.Apply(snatConfig(1024)); err != nil {
		t.Fatal(err)
	}
	// b first serves other VIPs, so its real IDs differ, and loses a
	// backend's health.
	pre := validConfig()
	pre.VIPs = []VIP{vip(1, "zzz", "192.0.2.9", "tcp", []uint16{80}, "dns", 0), vip(10, "aaa", "192.0.2.8", "tcp", []uint16{80}, "web", 0)}
	if err := b.Apply(pre); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(snatConfig(1024)); err != nil {
		t.Fatal(err)
	}
	if err := b.SetHealthy("web-a", false); err != nil {
		t.Fatal(err)
	}
	ra, rb := snatRanges(t, a.Snapshot(), "web"), snatRanges(t, b.Snapshot(), "web")
	if fmt.Sprint(ra) != fmt.Sprint(rb) {
		t.Errorf("ranges differ:\n%v\n%v", ra, rb)
	}
	if err := b.SetHealthy("web-a", true); err != nil {
		t.Fatal(err)
	}
	da, db := VIPDigests(a.Snapshot()), VIPDigests(b.Snapshot())
	if fmt.Sprint(da) != fmt.Sprint(db) {
		t.Errorf("digests differ:\n%v\n%v", da, db)
	}
	c := New()
	if err := c.Apply(snatConfig(2048)); err != nil {
		t.Fatal(err)
	}
	if dc := VIPDigests(c.Snapshot()); dc[1].Table == da[1].Table {
		t.Error("another range size, the same table digest")
	}
	if snatConfig(2048).Digest() == snatConfig(1024).Digest() || validConfig().Digest() == snatConfig(1024).Digest() {
		t.Error("the config digest does not cover snat_ports")
	}
	// Without SNAT a VIP's table digest is its table's.
	d := New()
	if err := d.Apply(validConfig()); err != nil {
		t.Fatal(err)
	}
	for _, v := range d.Snapshot().VIPs {
		if v.SNAT != nil {
			t.Errorf("VIP %s has SNAT", v.Name)
		}
	}
	if VIPDigests(d.Snapshot())[1].Table == da[1].Table {
		t.Error("SNAT ranges are not in the table digest")
	}
}

// TestSNATStable: adding or removing a backend moves no other backend's
// range unless the two collide, and with 62 ranges for 20 backends most
// keep theirs; the ranges never hold a service port.
func TestSNATStable(t *testing.T) {
	names := func(n int, skip int) []string {
		var out []string
		for i := range n {
			if i != skip {
				out = append(out, fmt.Sprintf("backend-%02d", i))
			}
		}
		slices.Sort(out)
		return out
	}
	excluded := []uint16{80, 443, 8080, 20000}
	usable := snatUsable(1024, excluded)
	if len(usable) != 63 || snatFree(usable) != 61 {
		t.Fatalf("%d ranges, %d usable; want 63, 61", len(usable), snatFree(usable))
	}
	all := names(20, -1)
	full, ok := snatAssign(all, usable)
	if !ok {
		t.Fatal("20 backends in 61 ranges")
	}
	for i, k := range full {
		if !usable[k] {
			t.Errorf("%s got range %d, which holds a service port", all[i], k)
		}
	}
	moved := 0
	for skip := range 20 {
		less, _ := snatAssign(names(20, skip), usable)
		j := 0
		for i := range all {
			if i == skip {
				continue
			}
			if less[j] != full[i] {
				moved++
			}
			j++
		}
	}
	// Each removal moves only the backends that collided with it.
	if moved > 20 {
		t.Errorf("removing one backend at a time moved %d ranges in 20 trials", moved)
	}
	if _, ok := snatAssign(names(62, -1), usable); ok {
		t.Error("62 backends fit in 61 ranges")
	}
}

func TestSNATValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []wantErr
	}{
		{"fits", func(*Config) {}, nil},
		{"too large", func(c *Config) { c.VIPs[0].SNATPorts = 70000 }, []wantErr{
			{"f.hcl:7:3", "SNAT range too large", `VIP "web" has snat_ports 70000, but SNAT ranges share the 64512 ports from 1024 to 65535; set snat_ports to at most 64512`}}},
		{"exhausted", func(c *Config) { c.VIPs[0].SNATPorts = 30000 }, []wantErr{
			{"f.hcl:7:3", "SNAT ports exhausted", `VIP "web" reaches 3 backends, but only 2 ranges of 30000 ports fit in ports 1024 to 65535 beside the service ports on 192.0.2.1; set snat_ports to at most 21504`}}},
		{"a service port in the space takes a range", func(c *Config) {
			c.VIPs[0].SNATPorts = 21504
			c.VIPs[1].Ports = []uint16{53, 30000}
		}, []wantErr{
			{"f.hcl:7:3", "SNAT ports exhausted", `only 2 ranges of 21504 ports fit`}}},
		{"every port", func(c *Config) { c.VIPs[0].Ports = nil; c.VIPs[1].Address = addr("192.0.2.2") }, []wantErr{
			{"f.hcl:7:3", "SNAT without free ports", `VIP "web" has snat_ports, but it matches every port of 192.0.2.1`}}},
		{"another VIP of every port", func(c *Config) { c.VIPs[1].Ports = nil }, []wantErr{
			{"f.hcl:7:3", "SNAT without free ports", `but VIP "dns" (at f.hcl:10:1) matches every port of 192.0.2.1`}}},
		{"two on one address", func(c *Config) {
			c.VIPs[1].SNATPorts = 512
			c.VIPs[1].AttrRange = append(c.VIPs[1].AttrRange, pipeline.AttrRange{Name: attrSNATPorts, Range: rng(16, 3)})
		}, []wantErr{
			{"f.hcl:16:3", "Duplicate SNAT address", `VIP "dns" and VIP "web" (at f.hcl:1:1) both give SNAT ranges on 192.0.2.1`}}},
		{"no attribute range: the block", func(c *Config) {
			c.VIPs[0].SNATPorts = 70000
			c.VIPs[0].AttrRange = slices.DeleteFunc(c.VIPs[0].AttrRange, func(a pipeline.AttrRange) bool { return a.Name == attrSNATPorts })
		}, []wantErr{
			{"f.hcl:1:1", "SNAT range too large", `snat_ports 70000`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := snatConfig(1024)
			tc.change(c)
			errs := c.Validate()
			if len(errs) != len(tc.want) {
				t.Fatalf("errors %v, want %d", errs, len(tc.want))
			}
			for i, w := range tc.want {
				e := errs[i]
				if e.Range.String() != w.at || e.Summary != w.summary || !strings.Contains(e.Detail, w.detail) || !strings.HasSuffix(e.Detail, ".") {
					t.Errorf("error %d:\n got %s: %s: %s\nwant %s: %s: ...%s...", i, e.Range, e.Summary, e.Detail, w.at, w.summary, w.detail)
				}
			}
			// The checker that Apply uses says the same.
			var k Checker
			if got := k.Validate(c); len(got) != len(errs) {
				t.Errorf("Checker: %v", got)
			}
		})
	}
}

// TestSNATCheckerSeesChange: a reload that only sets snat_ports is
// checked, not taken for the configuration already valid.
func TestSNATCheckerSeesChange(t *testing.T) {
	var k Checker
	if errs := k.Validate(validConfig()); len(errs) > 0 {
		t.Fatal(errs)
	}
	if errs := k.Validate(snatConfig(40000)); len(errs) != 1 || errs[0].Summary != "SNAT ports exhausted" {
		t.Errorf("errors %v, want SNAT ports exhausted", errs)
	}
	// A pool that grows past the ranges, VIPs unchanged.
	if errs := k.Validate(snatConfig(21504)); len(errs) > 0 {
		t.Fatal(errs)
	}
	grown := snatConfig(21504)
	grown.Pools[1].Backends = append(grown.Pools[1].Backends, be(35, "canary-b", "2001:db8::2", 10))
	if errs := k.Validate(grown); len(errs) != 1 || errs[0].Summary != "SNAT ports exhausted" {
		t.Errorf("errors %v, want SNAT ports exhausted", errs)
	}
}

// TestSNATReused: a health change keeps the VIP's SNAT ranges, the very
// same; a reload that changes the range size computes them anew.
func TestSNATReused(t *testing.T) {
	c := New()
	cfg := snatConfig(1024)
	if err := c.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	before := c.Snapshot().VIPs[1].SNAT
	if err := c.SetHealthy("web-a", false); err != nil {
		t.Fatal(err)
	}
	if after := c.Snapshot().VIPs[1].SNAT; after != before {
		t.Error("a health change computed the SNAT ranges again")
	}
	if err := c.Apply(snatConfig(2048)); err != nil {
		t.Fatal(err)
	}
	if after := c.Snapshot().VIPs[1].SNAT; after == before || after.Size != 2048 {
		t.Errorf("snat_ports 2048: ranges %+v", after)
	}
	if err := c.Apply(validConfig()); err != nil {
		t.Fatal(err)
	}
	if s := c.Snapshot().VIPs[1].SNAT; s != nil {
		t.Errorf("SNAT removed, ranges %+v", s)
	}
}
