package admin

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

func TestFlowOf(t *testing.T) {
	v4 := func(s string) [16]byte { return netip.MustParseAddr(s).As16() }
	for _, tc := range []struct {
		proto, src, dst string
		want            pipeline.Flow
	}{
		{"tcp", "10.0.0.1:4000", "192.0.2.10:80", pipeline.Flow{Src: v4("10.0.0.1"), Dst: v4("192.0.2.10"), SrcPort: 4000, DstPort: 80, Proto: 6, Family: 4}},
		{"UDP", "[2001:db8::1]:53", "[2001:db8::2]:53", pipeline.Flow{Src: v4("2001:db8::1"), Dst: v4("2001:db8::2"), SrcPort: 53, DstPort: 53, Proto: 17, Family: 6}},
		// An echo is keyed on its identifier in both ports.
		{"icmp", "10.0.0.1:77", "192.0.2.10", pipeline.Flow{Src: v4("10.0.0.1"), Dst: v4("192.0.2.10"), SrcPort: 77, DstPort: 77, Proto: 1, Family: 4}},
		{"icmp", "2001:db8::1", "2001:db8::2", pipeline.Flow{Src: v4("2001:db8::1"), Dst: v4("2001:db8::2"), Proto: 58, Family: 6}},
		{"47", "10.0.0.1", "192.0.2.10", pipeline.Flow{Src: v4("10.0.0.1"), Dst: v4("192.0.2.10"), Proto: 47, Family: 4}},
	} {
		got, err := FlowOf(tc.proto, tc.src, tc.dst)
		if err != nil || got != tc.want {
			t.Errorf("FlowOf(%s, %s, %s) = %+v, %v; want %+v", tc.proto, tc.src, tc.dst, got, err, tc.want)
		}
	}
	for _, bad := range [][3]string{
		{"tcp", "10.0.0.1", "192.0.2.10:80"},
		{"tcp", "10.0.0.1:1", "[2001:db8::1]:80"},
		{"gre", "10.0.0.1:1", "192.0.2.10:80"},
		{"tcp", "host:1", "192.0.2.10:80"},
		{"udp", "10.0.0.1:99999", "192.0.2.10:80"},
	} {
		var in *InputError
		if _, err := FlowOf(bad[0], bad[1], bad[2]); !errors.As(err, &in) {
			t.Errorf("FlowOf(%q): %v, want an *InputError", bad, err)
		}
	}
}

func TestAffected(t *testing.T) {
	p := &control.Plan{VIPs: []control.VIPPlan{
		{Name: "web", Action: control.ActionChange, Backends: []control.BackendPlan{
			{Name: "a", Action: control.ActionRemove},
			{Name: "b", Action: control.ActionChange, Old: &control.BackendState{State: "up"}, New: &control.BackendState{State: "draining"}},
		}},
		{Name: "old", Action: control.ActionRemove},
		{Name: "same", Action: control.ActionNone},
	}}
	flows := []pipeline.FlowCount{
		{VIP: "web", Backend: "a", Flows: 5}, {VIP: "web", Backend: "b", Flows: 7}, {VIP: "web", Backend: "c", Flows: 1},
		{VIP: "old", Backend: "a", Flows: 2}, {VIP: "old", Backend: "x", Flows: 3}, {VIP: "same", Backend: "a", Flows: 9},
	}
	got := affected(p, flows)
	want := []AffectedFlows{{VIP: "web", Flows: 5}, {VIP: "old", Flows: 5}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("affected = %+v, want %+v", got, want)
	}
}

// TestWhyNoVIPSNAT: a flow to a port of a backend's SNAT range is named
// as a reply to that backend's outbound connections; another port, or
// another protocol than the VIP's, is not.
func TestWhyNoVIPSNAT(t *testing.T) {
	f := &fake{overrides: map[string]Override{}, gen: 5, snat: &snapshot.SNAT{First: 1024, Size: 1000, Owners: []uint32{snapshot.NoReal, 1, 0}}}
	snap := f.Snapshot()
	for _, c := range []struct {
		proto, dst string
		want       string
	}{
		{"tcp", "192.0.2.10:2500", "port 2500 is in backend b's SNAT range 2024-3023 of VIP web"},
		{"tcp", "192.0.2.10:1500", ""},
		{"udp", "192.0.2.10:2500", ""},
	} {
		fl, err := FlowOf(c.proto, "203.0.113.5:80", c.dst)
		if err != nil {
			t.Fatal(err)
		}
		got := whyNoVIP(snap, &fl)
		if !strings.HasPrefix(got, "192.0.2.10 is served only as web (tcp port 80)") || (c.want == "") != !strings.Contains(got, "SNAT") || !strings.Contains(got, c.want) {
			t.Errorf("%s %s: %q, want ...%q", c.proto, c.dst, got, c.want)
		}
	}
}
