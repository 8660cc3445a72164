package admin

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control"
)

// TestWritePlanSNAT: a change of snat_ports is named on the VIP, and each
// backend's moved range on its line.
func TestWritePlanSNAT(t *testing.T) {
	cfg := func(size uint32) *control.Config {
		return &control.Config{
			VIPs: []control.VIP{{Name: "web", Address: netip.MustParseAddr("192.0.2.10"), Protocol: "tcp", Ports: []uint16{80}, Pool: "p", SNATPorts: size}},
			Pools: []control.Pool{{Name: "p", Backends: []control.Backend{
				{Name: "a", Address: netip.MustParseAddr("198.51.100.1"), Weight: 1},
				{Name: "b", Address: netip.MustParseAddr("198.51.100.2"), Weight: 1}}}},
		}
	}
	p, err := control.NewPlan(cfg(1024), cfg(2048))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	WritePlan(&out, &PlanResult{Config: "new.hcl", Against: "old.hcl", Plan: p})
	for _, want := range []string{"snat_ports 1024 -> 2048", "~ a", "~ b", "its outbound connections from the old range break"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "SNAT ports "); n != 2 {
		t.Errorf("%d SNAT range changes, want 2:\n%s", n, out.String())
	}
}
