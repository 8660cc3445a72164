package control

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/xlbproject/xlb/pipeline"
)

// routesConfig has VIPs on pools whose backends a test takes down:
// "a4" (IPv4) and "b6" (IPv6) on pool one (x, y), "c4" on pool two (z),
// "d4" sharing a4's address on another port, "e4" on an empty pool, "f4"
// on pool drained (w, weight 0).
func routesConfig() *Config {
	v := func(line int, name, address string, ports []uint16, pool string) VIP {
		return vip(line, name, address, "tcp", ports, pool, 0)
	}
	return &Config{
		VIPs: []VIP{
			v(1, "a4", "10.0.0.1", []uint16{80}, "one"),
			v(10, "b6", "2001:db8::1", nil, "one"),
			v(20, "c4", "10.0.0.2", nil, "two"),
			v(30, "d4", "10.0.0.1", []uint16{443}, "two"),
			v(40, "e4", "10.0.0.3", nil, "empty"),
			v(50, "f4", "10.0.0.4", nil, "drained"),
		},
		Pools: []Pool{
			pool(100, "one", nil, be(101, "x", "192.0.2.1", 1), be(104, "y", "192.0.2.2", 1)),
			pool(110, "two", nil, be(111, "z", "192.0.2.3", 1)),
			pool(120, "empty", nil),
			pool(130, "drained", nil, be(131, "w", "192.0.2.4", 0)),
		},
	}
}

func TestDesiredRoutes(t *testing.T) {
	r := func(vip, prefix string) Route { return Route{VIP: vip, Prefix: netip.MustParsePrefix(prefix)} }
	for _, tc := range []struct {
		name string
		down []string
		self error
		want []Route
	}{
		{name: "all healthy", want: []Route{r("a4", "10.0.0.1/32"), r("b6", "2001:db8::1/128"), r("c4", "10.0.0.2/32"), r("f4", "10.0.0.4/32")}},
		{name: "one of two down", down: []string{"x"}, want: []Route{r("a4", "10.0.0.1/32"), r("b6", "2001:db8::1/128"), r("c4", "10.0.0.2/32"), r("f4", "10.0.0.4/32")}},
		// a4 and b6 lose their last backend; d4 keeps 10.0.0.1.
		{name: "last backend down", down: []string{"x", "y"}, want: []Route{r("c4", "10.0.0.2/32"), r("d4", "10.0.0.1/32"), r("f4", "10.0.0.4/32")}},
		{name: "shared address down", down: []string{"x", "y", "z"}, want: []Route{r("f4", "10.0.0.4/32")}},
		{name: "self-check fails", self: errors.New("worker 0 stalled"), want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			mustApply(t, c, routesConfig())
			health := map[string]bool{}
			for _, b := range tc.down {
				health[b] = false
			}
			if err := c.SetHealth(health); err != nil {
				t.Fatal(err)
			}
			got := DesiredRoutes(c.Snapshot(), tc.self)
			if !slices.Equal(got, tc.want) {
				t.Errorf("DesiredRoutes = %v, want %v", got, tc.want)
			}
		})
	}
}

// Before any configuration is applied there is nothing to announce.
func TestDesiredRoutesEmpty(t *testing.T) {
	if got := DesiredRoutes(New().Snapshot(), nil); len(got) != 0 {
		t.Errorf("DesiredRoutes of the empty snapshot = %v, want none", got)
	}
	if got := DesiredRoutes(nil, nil); len(got) != 0 {
		t.Errorf("DesiredRoutes(nil) = %v, want none", got)
	}
}

func TestValidateAnnounce(t *testing.T) {
	cfg := routesConfig()
	cfg.VIPs[0].Announce = []Announce{
		{Announcer: "bgp", Range: rng(2, 3)},
		{Announcer: "bgp", Range: rng(4, 3)},
		{Announcer: "other", Range: rng(6, 3), Params: map[string]json.RawMessage{"med": json.RawMessage("{")},
			AttrRange: pipeline.AttrRanges{{Name: "med", Range: rng(7, 5)}}},
	}
	errs := cfg.Validate()
	if len(errs) != 2 || errs[0].Summary != "Duplicate announce block" || errs[0].Range != rng(4, 3) ||
		errs[1].Summary != "Invalid announce parameter" || errs[1].Range != rng(7, 5) {
		t.Fatalf("Validate = %v, want a duplicate block at 4:3 and a bad parameter at 7:5", errs)
	}
}
