package control

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// shardedConfig is digestConfig with web in shard a, dns in shard b and a
// third VIP, all, in none (served by every node), as node shards holds.
func shardedConfig(shards ...string) *Config {
	c := digestConfig()
	c.ShardNames = []string{"a", "b"}
	c.Shards = shards
	c.VIPs[0].Shards = []string{"a"}
	c.VIPs[1].Shards = []string{"b"}
	c.VIPs = append(c.VIPs, vip(70, "all", "192.0.2.3", "tcp", nil, "dns", 0))
	return c
}

func vipNames(s *snapshot.Snapshot) []string {
	var out []string
	for _, v := range s.VIPs {
		out = append(out, v.Name)
	}
	return out
}

// A node serves, and announces, only its shards' VIPs and those of no
// shard; a VIP's table and the config digest are the same whichever node
// builds them, so nodes of different shards agree on what they share.
func TestShardsServe(t *testing.T) {
	snaps := map[string]*snapshot.Snapshot{}
	for _, tc := range []struct {
		node   string
		shards []string
		vips   []string
		routes []string
		others []netip.Addr // passed to the kernel by the XDP program, counted
	}{
		{"lb-a", []string{"a"}, []string{"all", "web"}, []string{"192.0.2.3/32", "192.0.2.1/32"}, []netip.Addr{addr("192.0.2.2")}},
		{"lb-b", []string{"b"}, []string{"all", "dns"}, []string{"192.0.2.3/32", "192.0.2.2/32"}, []netip.Addr{addr("192.0.2.1")}},
		{"lb-ab", []string{"b", "a"}, []string{"all", "dns", "web"}, []string{"192.0.2.3/32", "192.0.2.2/32", "192.0.2.1/32"}, nil},
		{"lb", nil, []string{"all", "dns", "web"}, []string{"192.0.2.3/32", "192.0.2.2/32", "192.0.2.1/32"}, nil},
	} {
		s := mustApply(t, New(), shardedConfig(tc.shards...))
		snaps[tc.node] = s
		if got := vipNames(s); !slices.Equal(got, tc.vips) {
			t.Errorf("%s: VIPs %v, want %v", tc.node, got, tc.vips)
		}
		var routes []string
		for _, r := range DesiredRoutes(s, nil) {
			routes = append(routes, r.Prefix.String())
		}
		if !slices.Equal(routes, tc.routes) {
			t.Errorf("%s: routes %v, want %v", tc.node, routes, tc.routes)
		}
		if !slices.Equal(s.OtherShards, tc.others) {
			t.Errorf("%s: other shards' addresses %v, want %v", tc.node, s.OtherShards, tc.others)
		}
	}
	var states []NodeState
	for node, s := range snaps {
		if s.ConfigDigest != snaps["lb"].ConfigDigest {
			t.Errorf("%s: config digest %s, lb's %s: the node's shards must not enter it", node, s.ConfigDigest, snaps["lb"].ConfigDigest)
		}
		for _, v := range s.VIPs {
			if want := tableDigests(snaps["lb"])[v.Name]; v.TableDigest != want {
				t.Errorf("%s: VIP %s's table digest %s, lb's %s", node, v.Name, v.TableDigest, want)
			}
		}
		states = append(states, NodeState{Node: node, SourcesDigest: "s1", ConfigDigest: s.ConfigDigest, VIPs: VIPDigests(s)})
	}
	for _, self := range states {
		if a := Agree(self, states); !a.Agreed() || len(a.Agree) != len(states) || a.Withdraw {
			t.Errorf("%s: %+v, want every node agreeing", self.Node, a)
		}
	}
}

// Changing a node's shards, or a VIP's, is a reload like any other: the
// snapshot, and so the routes and the XDP program's VIPs, follow.
func TestShardsReload(t *testing.T) {
	c := New()
	if got := vipNames(mustApply(t, c, shardedConfig("a"))); !slices.Equal(got, []string{"all", "web"}) {
		t.Fatalf("shard a: %v", got)
	}
	if got := vipNames(mustApply(t, c, shardedConfig("b"))); !slices.Equal(got, []string{"all", "dns"}) {
		t.Errorf("node moved to shard b: %v", got)
	}
	cfg := shardedConfig("b")
	cfg.VIPs[0].Shards = []string{"a", "b"}
	if got := vipNames(mustApply(t, c, cfg)); !slices.Equal(got, []string{"all", "dns", "web"}) {
		t.Errorf("web added to shard b: %v", got)
	}
	if got := vipNames(mustApply(t, c, digestConfig())); !slices.Equal(got, []string{"dns", "web"}) {
		t.Errorf("shards removed: %v", got)
	}
}

// A configuration without shards keeps the config digest it had before
// shards existed, so that nodes of two versions agree during an upgrade;
// the fleet's shards and a VIP's enter it.
func TestShardsDigest(t *testing.T) {
	const before = "3d6a1d5c61631d8c46ed6d68cc2b15d9337ee201fc9fad5c160a7119eb17ccfe"
	if got := digestConfig().Digest(); got != before {
		t.Errorf("digest without shards %s, want %s as before shards", got, before)
	}
	base := shardedConfig().Digest()
	for name, change := range map[string]func(*Config){
		"fleet's shards": func(c *Config) { c.ShardNames = append(c.ShardNames, "c") },
		"a VIP's shards": func(c *Config) { c.VIPs[1].Shards = []string{"a"} },
		"VIP unsharded":  func(c *Config) { c.VIPs[0].Shards = nil },
	} {
		c := shardedConfig()
		change(c)
		if c.Digest() == base {
			t.Errorf("%s changed, digest did not", name)
		}
	}
	c := shardedConfig()
	c.VIPs[0].Shards = []string{"a", "a"}
	if c.Digest() != base {
		t.Error("a shard listed twice changed the digest")
	}
}

func TestValidateShards(t *testing.T) {
	c := shardedConfig("a")
	c.ShardNames = nil
	c.ShardRanges = []pipeline.Range{rng(3, 12)}
	c.VIPs[0].ShardRanges = []pipeline.Range{rng(6, 14)}
	errs := c.Validate()
	if len(errs) != 3 || errs[0].Range != rng(3, 12) || errs[1].Range != rng(6, 14) {
		t.Fatalf("errors %v, want the node's shard and web's, dns's", errs)
	}
	for _, e := range errs {
		if e.Summary != "Unknown shard" || !strings.Contains(e.Detail, "no shard is declared") {
			t.Errorf("%v", e)
		}
	}

	// A VIP at the address of another of other shards: its routes would
	// draw the other's packets to nodes that do not serve it.
	c = shardedConfig()
	c.VIPs[2].Address = netip.MustParseAddr("192.0.2.1")
	c.VIPs[2].Ports = []uint16{8080}
	errs = c.Validate()
	if len(errs) != 1 || errs[0].Summary != "Shards differ at one address" || !strings.Contains(errs[0].Detail, `VIP "web"`) {
		t.Errorf("errors %v, want all's shards refused at web's address", errs)
	}
}

// The checker's quick path sees a change of shards alone (the pools the
// very same slices).
func TestCheckerShards(t *testing.T) {
	var k Checker
	cfg := shardedConfig("a")
	if errs := k.Validate(cfg); len(errs) > 0 {
		t.Fatal(errs)
	}
	next := *cfg
	next.VIPs = slices.Clone(cfg.VIPs)
	next.VIPs[1].Shards = []string{"c"}
	if errs := k.Validate(&next); len(errs) != 1 || errs[0].Summary != "Unknown shard" {
		t.Errorf("a VIP's unknown shard: %v", errs)
	}
	next = *cfg
	next.Shards = []string{"bb"}
	if errs := k.Validate(&next); len(errs) != 1 || !strings.Contains(errs[0].Detail, `did you mean "b"`) {
		t.Errorf("the node's unknown shard: %v", errs)
	}
}

// TestAgreeShards: a node whose table of a VIP differs from those of the
// other nodes of its shard withdraws, though the nodes of another shard,
// which do not serve the VIP, agree with it (on the config digest alone);
// where the config digest differs, every node has a say.
func TestAgreeShards(t *testing.T) {
	state := func(name, config, table string, vips ...string) NodeState {
		n := NodeState{Node: name, SourcesDigest: "s1", ConfigDigest: config}
		for _, v := range vips {
			tbl := "t-" + v
			if v == "web" {
				tbl = table
			}
			n.VIPs = append(n.VIPs, VIPDigest{Name: v, Table: tbl, Backends: "b-" + v})
		}
		return n
	}
	fleet := []NodeState{
		state("a1", "c1", "t1", "web"), state("a2", "c1", "t1", "web"), state("a3", "c1", "wrong", "web"),
		state("b1", "c1", "", "dns"), state("b2", "c1", "", "dns"),
	}
	for _, tc := range []struct {
		self     int
		withdraw bool
	}{{0, false}, {1, false}, {2, true}, {3, false}} {
		if a := Agree(fleet[tc.self], fleet); a.Withdraw != tc.withdraw {
			t.Errorf("%s: withdraw %v, want %v (%+v)", fleet[tc.self].Node, a.Withdraw, tc.withdraw, a)
		}
	}
	// Another config digest: b1 and b2 count on a1's side.
	odd := state("a3", "c2", "t1", "web")
	if a := Agree(odd, append(fleet[:2:2], fleet[3:]...)); !a.Withdraw {
		t.Errorf("a node of another config digest: %+v, want it withdrawn", a)
	}
	if a := Agree(fleet[0], append(fleet[:2:2], odd, fleet[3], fleet[4])); a.Withdraw {
		t.Errorf("a1 against a3 of another config digest: %+v, want no withdrawal", a)
	}
}

// TestUnservedShards: a VIP that names a shard no live node serves is
// reported, unserved when none of its shards has a live node (no node
// announces it), served by other shards' nodes otherwise; a node without
// shards serves every VIP, so nothing is reported while one lives.
func TestUnservedShards(t *testing.T) {
	c := shardedConfig()
	c.VIPs = append(c.VIPs, vip(71, "both", "192.0.2.4", "tcp", nil, "dns", 0))
	c.VIPs[len(c.VIPs)-1].Shards = []string{"b", "a"}
	nodes := func(shards ...[]string) []NodeState {
		var out []NodeState
		for i, s := range shards {
			out = append(out, NodeState{Node: "lb" + string(rune('1'+i)), Shards: s})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		nodes []NodeState
		want  []string
	}{
		{"both shards live", nodes([]string{"a"}, []string{"b"}), nil},
		{"one node of both", nodes([]string{"b", "a"}), nil},
		{"shard b's nodes gone", nodes([]string{"a"}, []string{"a"}), []string{
			"VIP both names shard b, which no live node serves (the nodes of its other shards serve it)",
			"VIP dns names shard b, which no live node serves: no node serves the VIP"}},
		{"no shard live", nodes([]string{"c"}), []string{
			"VIP both names shards a, b, which no live node serves: no node serves the VIP",
			"VIP dns names shard b, which no live node serves: no node serves the VIP",
			"VIP web names shard a, which no live node serves: no node serves the VIP"}},
		{"a node of every shard", nodes([]string{"c"}, nil), nil},
	} {
		var got []string
		for _, g := range UnservedShards(c.VIPs, tc.nodes) {
			got = append(got, g.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q\nwant %q", tc.name, got, tc.want)
		}
	}
}
