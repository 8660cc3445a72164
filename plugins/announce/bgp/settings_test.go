package main

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/xlbproject/xlb/plugins/sdk"
)

const goodNeighbor = `{"address": "10.90.2.1", "peer_as": 65000}`

// settingsWith is a valid block with one attribute replaced or added.
func settingsWith(attr, value string) string {
	m := map[string]string{"local_as": "65001", "router_id": `"10.90.2.10"`, "neighbors": "[" + goodNeighbor + "]"}
	if value == "" {
		delete(m, attr)
	} else {
		m[attr] = value
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%q: %s", k, v))
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ", ") + "}"
}

// refusals lists err's *sdk.ConfigError values as "path: message".
func refusals(err error) []string {
	var out []string
	for _, e := range sdk.Unjoin(err) {
		var ce *sdk.ConfigError
		if errors.As(e, &ce) {
			out = append(out, ce.Attribute+": "+ce.Message)
		} else {
			out = append(out, "not a ConfigError: "+e.Error())
		}
	}
	return out
}

// TestSettingsRefused: each bad setting is refused at its path, with a
// message that says why; hostile values never crash.
func TestSettingsRefused(t *testing.T) {
	many := "[" + strings.Repeat(goodNeighbor+",", 99999) + goodNeighbor + "]"
	for _, tc := range []struct {
		attr, value string
		want        string // "path: message fragment"
	}{
		{"local_as", "", `: the attribute "local_as" is required`},
		{"local_as", "0", "local_as: AS 0 is reserved"},
		{"local_as", "23456", "local_as: AS 23456 is AS_TRANS"},
		{"local_as", "4294967296", "local_as: 4.294967296e+09: must be a whole number from 0 to 4294967295"},
		{"local_as", "-1", "local_as: -1: must be a whole number"},
		{"local_as", "1.5", "local_as: 1.5: must be a whole number"},
		{"local_as", `"x"`, `local_as: "x" is not a number`},
		{"router_id", "", `: the attribute "router_id" is required`},
		{"router_id", `"fd00::1"`, `router_id: "fd00::1" is not an IPv4 address`},
		{"router_id", `"0.0.0.0"`, "router_id: 0.0.0.0 cannot be a BGP identifier"},
		{"router_id", `"bogus"`, `router_id: "bogus" is not an IPv4 address`},
		{"router_id", "7", "router_id: must be a string"},
		{"listen_port", "65536", "listen_port: 65536: must be a whole number from 0 to 65535"},
		{"graceful_restart_time", `"2h"`, "graceful_restart_time: 2h0m0s is more than BGP can say (4095s)"},
		{"graceful_restart_time", `"1.5s"`, "graceful_restart_time: 1.5s: must be whole seconds"},
		{"graceful_restart_time", `"soon"`, `graceful_restart_time: "soon" is not a duration`},
		{"next_hop_ipv4", `"fd00::1"`, `next_hop_ipv4: "fd00::1" is not a unicast IPv4 address`},
		{"next_hop_ipv6", `"10.0.0.1"`, `next_hop_ipv6: "10.0.0.1" is not a unicast IPv6 address`},
		{"communities", `["65000:100", "70000:1"]`, `communities[1]: "70000:1" is not a community`},
		{"communities", `"65000:100"`, "communities: must be a list of strings"},
		{"large_communities", `["1:2"]`, `large_communities[0]: "1:2" is not a large community`},
		{"bogus", "1", "bogus: not expected here"},
		{"neighbors", "", `: the attribute "neighbors" is required`},
		{"neighbors", "[]", "neighbors: lists no neighbor"},
		{"neighbors", `{"address": "10.90.2.1"}`, "neighbors: must be a list of objects"},
		{"neighbors", many, "neighbors: 100000 neighbors, at most 64"},
		{"neighbors", `[` + goodNeighbor + `, "10.90.2.2"]`, "neighbors[1]: must be an object"},
		{"neighbors", `[` + goodNeighbor + `, {"peer_as": 65000}]`, `neighbors[1]: the attribute "address" is required`},
		{"neighbors", `[` + goodNeighbor + `, {"address": "10.90.2.2"}]`, `neighbors[1]: the attribute "peer_as" is required`},
		{"neighbors", `[` + goodNeighbor + `, {"address": "10.90.2.2", "peer_as": 0}]`, "neighbors[1].peer_as: AS 0 is reserved"},
		{"neighbors", `[` + goodNeighbor + `, {"address": "10.90.2.300", "peer_as": 1}]`, `neighbors[1].address: "10.90.2.300" is not an IP address`},
		{"neighbors", `[` + goodNeighbor + `, {"address": "::", "peer_as": 1}]`, "neighbors[1].address: :: cannot be a neighbor"},
		{"neighbors", `[` + goodNeighbor + `, {"address": "10.90.2.1", "peer_as": 1}]`, "neighbors[1].address: 10.90.2.1 is already neighbors[0]"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "hold_time": "1s"}]`, "neighbors[0].hold_time: 1s: BGP forbids a hold time of 1 or 2 seconds"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "hold_time": 2}]`, "neighbors[0].hold_time: 2s: BGP forbids"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "hold_time": "0s"}]`, "neighbors[0].hold_time: 0s: BGP forbids"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "hold_time": "20h"}]`, "neighbors[0].hold_time: 20h0m0s is more than BGP can say"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "hold_time": "3s", "keepalive": "3s"}]`, "neighbors[0].keepalive: 3s: must be at least 1s and less than the hold time (3s)"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "connect_retry": "0s"}]`, "neighbors[0].connect_retry: 0s: must be between 1s and 1h"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "connect_retry": "10s", "connect_retry_max": "5s"}]`, "neighbors[0].connect_retry_max: 5s: must be between connect_retry (10s) and 1h"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "connect_retry_max": "2h"}]`, "neighbors[0].connect_retry_max: 2h0m0s: must be between connect_retry (5s) and 1h"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "multihop_ttl": 256}]`, "neighbors[0].multihop_ttl: 256: must be a whole number from 0 to 255"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "password": "` + strings.Repeat("x", 81) + `"}]`, "neighbors[0].password: 81 bytes, TCP MD5 keys are at most 80"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "pasword": "x"}]`, "neighbors[0].pasword: not expected here; a neighbor takes address, peer_as, password"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "bfd": true}]`, "neighbors[0].bfd: must be an object"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "bfd": {"min_rx": "1ms"}}]`, `neighbors[0].bfd.min_rx: "1ms": must be a duration of whole milliseconds from 10ms to 10s`},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "bfd": {"min_tx": "1m"}}]`, `neighbors[0].bfd.min_tx: "1m": must be a duration`},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "bfd": {"multiplier": 0}}]`, "neighbors[0].bfd.multiplier: 0: must be a whole number from 1 to 255"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "bfd": {"echo": true}}]`, "neighbors[0].bfd.echo: not expected here; bfd takes min_rx, min_tx, multiplier"},
		{"neighbors", `[{"address": "10.90.2.1", "peer_as": 1, "multihop_ttl": 2, "bfd": {}}]`, "neighbors[0].bfd: BFD here is single hop"},
	} {
		js := settingsWith(tc.attr, tc.value)
		_, err := parseSettings([]byte(js))
		got := refusals(err)
		if len(got) != 1 || !strings.HasPrefix(got[0], strings.SplitN(tc.want, ": ", 2)[0]+": ") || !strings.Contains(got[0], strings.SplitN(tc.want, ": ", 2)[1]) {
			t.Errorf("%s = %.80s: refused with %q, want one refusal %q", tc.attr, tc.value, got, tc.want)
		}
	}
}

// TestSettingsAllAtOnce: every problem of a block is reported, each at its
// path.
func TestSettingsAllAtOnce(t *testing.T) {
	_, err := parseSettings([]byte(`{"local_as": 0, "router_id": "::1", "neighbors": [
		{"address": "10.90.2.1", "peer_as": 65000}, {"address": "10.90.2.2", "peer_as": 0, "hold_time": "1s"}]}`))
	var paths []string
	for _, r := range refusals(err) {
		paths = append(paths, strings.SplitN(r, ": ", 2)[0])
	}
	if want := []string{"local_as", "router_id", "neighbors[1].peer_as", "neighbors[1].hold_time"}; !slices.Equal(paths, want) {
		t.Errorf("refused at %q, want %q", paths, want)
	}
}

func TestSettingsDefaults(t *testing.T) {
	s, err := parseSettings([]byte(`{"local_as": 65001, "router_id": "10.90.2.10", "listen_port": 0,
		"communities": ["65001:7"], "large_communities": ["65001:1:2"], "neighbors": [
		{"address": "10.90.2.1", "peer_as": "65000"},
		{"address": "fd00:90:2::1", "peer_as": 65000, "hold_time": "3s", "password": "s3cret", "multihop_ttl": 2, "keepalive": 1},
		{"address": "10.90.2.2", "peer_as": 65000, "bfd": {"min_rx": "100ms", "multiplier": 5, "min_tx": null}},
		{"address": "10.90.2.3", "peer_as": 65000, "bfd": null, "password": null},
		{"address": "10.90.2.4", "peer_as": 65000, "connect_retry": "2m"},
		{"address": "10.90.2.5", "peer_as": 65000, "connect_retry": "2s", "connect_retry_max": "10s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &settings{
		LocalAS: 65001, RouterID: netip.MustParseAddr("10.90.2.10"), ListenPort: -1, RestartTime: defaultRestartTime,
		Communities: attrs{Communities: []uint32{65001<<16 | 7}, Large: []bgp.LargeCommunity{{ASN: 65001, LocalData1: 1, LocalData2: 2}}},
		Neighbors: []neighbor{
			{Address: netip.MustParseAddr("10.90.2.1"), PeerAS: 65000, HoldTime: 90 * time.Second, Keepalive: 30 * time.Second, ConnectRetry: 5 * time.Second, ConnectRetryMax: time.Minute, Port: 179},
			{Address: netip.MustParseAddr("fd00:90:2::1"), PeerAS: 65000, Password: "s3cret", HoldTime: 3 * time.Second, Keepalive: time.Second, ConnectRetry: 5 * time.Second, ConnectRetryMax: time.Minute, MultihopTTL: 2, Port: 179},
			{Address: netip.MustParseAddr("10.90.2.2"), PeerAS: 65000, HoldTime: 90 * time.Second, Keepalive: 30 * time.Second, ConnectRetry: 5 * time.Second, ConnectRetryMax: time.Minute, Port: 179,
				BFD: bfdSettings{Enabled: true, MinRx: 100 * time.Millisecond, MinTx: 300 * time.Millisecond, Multiplier: 5}},
			// null is left out, as HCL leaves out an attribute set to null.
			{Address: netip.MustParseAddr("10.90.2.3"), PeerAS: 65000, HoldTime: 90 * time.Second, Keepalive: 30 * time.Second, ConnectRetry: 5 * time.Second, ConnectRetryMax: time.Minute, Port: 179},
			// The default cap is never below connect_retry.
			{Address: netip.MustParseAddr("10.90.2.4"), PeerAS: 65000, HoldTime: 90 * time.Second, Keepalive: 30 * time.Second, ConnectRetry: 2 * time.Minute, ConnectRetryMax: 2 * time.Minute, Port: 179},
			{Address: netip.MustParseAddr("10.90.2.5"), PeerAS: 65000, HoldTime: 90 * time.Second, Keepalive: 30 * time.Second, ConnectRetry: 2 * time.Second, ConnectRetryMax: 10 * time.Second, Port: 179},
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", s, want)
	}
}

// TestParamsRefused: a VIP's announce block is checked like the settings.
func TestParamsRefused(t *testing.T) {
	for js, want := range map[string]string{
		`{"med": -1}`:                               "med: -1: must be a whole number from 0 to 4294967295",
		`{"med": 4294967296}`:                       "med: 4.294967296e+09: must be a whole number",
		`{"communities": ["65000"]}`:                `communities[0]: "65000" is not a community`,
		`{"large_communities": ["1:2:x"]}`:          `large_communities[0]: "1:2:x" is not a large community`,
		`{"local_pref": 100}`:                       "local_pref: not expected here",
		`{"communities": [1]}`:                      "communities[0]: must be a string",
		`{"large_communities": ["1:2:3:4"]}`:        `large_communities[0]: "1:2:3:4" is not a large community`,
		`{"communities": ["65536:1", "1:1"]}`:       `communities[0]: "65536:1" is not a community`,
		`{"large_communities": ["4294967296:0:0"]}`: `large_communities[0]: "4294967296:0:0" is not a large community`,
	} {
		_, err := parseParams([]byte(js))
		got := refusals(err)
		if len(got) != 1 || !strings.HasPrefix(got[0], want) {
			t.Errorf("%s: refused with %q, want %q", js, got, want)
		}
	}
	a, err := parseParams([]byte(`{"communities": ["65000:100"], "large_communities": ["4200000000:1:2"], "med": 0}`))
	if err != nil || !reflect.DeepEqual(*a, attrs{Communities: []uint32{65000<<16 | 100}, Large: []bgp.LargeCommunity{{ASN: 4200000000, LocalData1: 1, LocalData2: 2}}, HasMED: true}) {
		t.Errorf("parseParams = %+v, %v", a, err)
	}
}

// TestWant: a route's attributes merge the settings', the VIP block's and
// the route's own; the next hop falls back to the family's setting.
func TestWant(t *testing.T) {
	s := newSpeaker(nil)
	var err error
	if s.cfg, err = parseSettings([]byte(settingsWith("communities", `["1:1"]`))); err != nil {
		t.Fatal(err)
	}
	s.cfg.NextHop6 = netip.MustParseAddr("fd00::9")
	p, _ := parseParams([]byte(`{"communities": ["1:1", "2:2"], "med": 5}`))
	s.desired = []sdk.Route{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Params: p, Communities: []string{"3:3", "7:8:9"}, Attributes: map[string]string{"med": "6"}},
		{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Params: p},
		{Prefix: netip.MustParsePrefix("192.0.2.2/32"), NextHop: netip.MustParseAddr("10.0.0.9")},
		{Prefix: netip.MustParsePrefix("192.0.2.3/32"), VIP: "bad", Communities: []string{"x"}},
	}
	want, err := s.want()
	if err == nil || !strings.Contains(err.Error(), `VIP "bad"`) {
		t.Errorf("a route with a bad community: %v", err)
	}
	var got []string
	for _, pfx := range slices.SortedFunc(func(yield func(netip.Prefix) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}, netip.Prefix.Compare) {
		got = append(got, pfx.String()+" "+want[pfx].key())
	}
	exp := []string{
		"192.0.2.1/32 invalid IP|[65537 131074 196611] [{7 8 9}] med 6",
		"192.0.2.2/32 10.0.0.9|[65537] []",
		"2001:db8::1/128 fd00::9|[65537 131074] [] med 5",
	}
	if !slices.Equal(got, exp) {
		t.Errorf("want() =\n\t%s\nexpected\n\t%s", strings.Join(got, "\n\t"), strings.Join(exp, "\n\t"))
	}
}
