package control

import (
	"slices"
	"strings"
	"testing"
)

// node returns a state at sources digest "s1" with config digest config
// and VIP web's table (backends "b1"); with opts applied.
func node(name, config, table string, opts ...func(*NodeState)) NodeState {
	n := NodeState{Node: name, Revision: "57", SourcesDigest: "s1", ConfigDigest: config,
		VIPs: []VIPDigest{{Name: "web", Table: table, Backends: "b1"}, {Name: "dns", Table: "d", Backends: "b2"}}}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func atRevision(rev, digest string) func(*NodeState) {
	return func(n *NodeState) { n.Revision, n.SourcesDigest = rev, digest }
}

func rejecting(rev string) func(*NodeState) {
	return func(n *NodeState) {
		n.RejectedRevision, n.Rejected = rev, "etcd:/xlb/services/web:3:5: error: Unknown pool\n  3 | ..."
	}
}

// backends makes web's backends digest b (another set of healthy backends).
func backends(b string) func(*NodeState) {
	return func(n *NodeState) { n.VIPs[0].Backends = b }
}

func TestAgree(t *testing.T) {
	for _, tc := range []struct {
		name     string
		self     NodeState
		peers    []NodeState
		agree    []string
		disagree []string
		other    []string
		rejected []string
		vips     []string
		withdraw bool
		problems []string // substrings, one per problem, in order
	}{
		{name: "alone", self: node("lb1", "c", "t"), agree: []string{"lb1"}},
		{name: "alone, its own entry among the peers", self: node("lb1", "c", "t"),
			peers: []NodeState{node("lb1", "c", "t")}, agree: []string{"lb1"}},
		{name: "two agree", self: node("lb1", "c", "t"), peers: []NodeState{node("lb1", "c", "t"), node("lb2", "c", "t")},
			agree: []string{"lb1", "lb2"}},
		{name: "two, config differs: a tie, nobody withdraws", self: node("lb1", "c", "t"), peers: []NodeState{node("lb2", "x", "t")},
			agree: []string{"lb1"}, disagree: []string{"lb2"}, problems: []string{"lb2 disagrees at revision 57: config digest x, this node c"}},
		{name: "two, table differs: a tie", self: node("lb2", "c", "bad"), peers: []NodeState{node("lb1", "c", "t")},
			agree: []string{"lb2"}, disagree: []string{"lb1"}, vips: []string{"web"},
			problems: []string{"lb1 disagrees at revision 57: the tables of VIP web differ, built from the same backends"}},
		{name: "two, tables differ rightly: other backends healthy", self: node("lb1", "c", "t"),
			peers: []NodeState{node("lb2", "c", "t2", backends("b9"))}, agree: []string{"lb1", "lb2"}},
		{name: "a VIP only one node has is not compared", self: node("lb1", "c", "t"),
			peers: []NodeState{{Node: "lb2", Revision: "57", SourcesDigest: "s1", ConfigDigest: "c"}}, agree: []string{"lb1", "lb2"}},
		{name: "three, the odd one withdraws", self: node("lb3", "c", "bad"),
			peers: []NodeState{node("lb1", "c", "t"), node("lb2", "c", "t")},
			agree: []string{"lb3"}, disagree: []string{"lb1", "lb2"}, vips: []string{"web"}, withdraw: true,
			problems: []string{"lb1 disagrees", "lb2 disagrees"}},
		{name: "three, the majority keeps its routes", self: node("lb1", "c", "t"),
			peers: []NodeState{node("lb2", "c", "t"), node("lb3", "c", "bad")},
			agree: []string{"lb1", "lb2"}, disagree: []string{"lb3"}, vips: []string{"web"}, problems: []string{"lb3 disagrees"}},
		{name: "three, all different: ties everywhere", self: node("lb1", "a", "t"),
			peers: []NodeState{node("lb2", "b", "t"), node("lb3", "c", "t")},
			agree: []string{"lb1"}, disagree: []string{"lb2", "lb3"}, problems: []string{"lb2 disagrees", "lb3 disagrees"}},
		{name: "five, two against three: the two withdraw", self: node("lb4", "x", "t"),
			peers: []NodeState{node("lb1", "c", "t"), node("lb2", "c", "t"), node("lb3", "c", "t"), node("lb5", "x", "t")},
			agree: []string{"lb4", "lb5"}, disagree: []string{"lb1", "lb2", "lb3"}, withdraw: true,
			problems: []string{"lb1 disagrees", "lb2 disagrees", "lb3 disagrees"}},
		{name: "five, three against two: the three stay", self: node("lb1", "c", "t"),
			peers: []NodeState{node("lb2", "c", "t"), node("lb3", "c", "t"), node("lb4", "x", "t"), node("lb5", "x", "t")},
			agree: []string{"lb1", "lb2", "lb3"}, disagree: []string{"lb4", "lb5"}, problems: []string{"lb4 disagrees", "lb5 disagrees"}},
		{name: "five, split 2/2/1: the lone node withdraws", self: node("lb5", "z", "t"),
			peers: []NodeState{node("lb1", "c", "t"), node("lb2", "c", "t"), node("lb3", "x", "t"), node("lb4", "x", "t")},
			agree: []string{"lb5"}, disagree: []string{"lb1", "lb2", "lb3", "lb4"}, withdraw: true,
			problems: []string{"lb1 disagrees", "lb2 disagrees", "lb3 disagrees", "lb4 disagrees"}},
		{name: "five, split 2/2/1: a pair ties with the other pair", self: node("lb1", "c", "t"),
			peers: []NodeState{node("lb2", "c", "t"), node("lb3", "x", "t"), node("lb4", "x", "t"), node("lb5", "z", "t")},
			agree: []string{"lb1", "lb2"}, disagree: []string{"lb3", "lb4", "lb5"},
			problems: []string{"lb3 disagrees", "lb4 disagrees", "lb5 disagrees"}},
		{name: "five, the disagreeing peers do not agree among themselves", self: node("lb1", "c", "t"),
			peers: []NodeState{node("lb2", "w", "t"), node("lb3", "x", "t"), node("lb4", "y", "t"), node("lb5", "z", "t")},
			agree: []string{"lb1"}, disagree: []string{"lb2", "lb3", "lb4", "lb5"},
			problems: []string{"lb2 disagrees", "lb3 disagrees", "lb4 disagrees", "lb5 disagrees"}},
		{name: "another revision is not compared", self: node("lb1", "c", "t"),
			peers: []NodeState{node("lb2", "x", "t", atRevision("58", "s2")), node("lb3", "x", "t", atRevision("58", "s2"))},
			agree: []string{"lb1"}, other: []string{"lb2", "lb3"},
			problems: []string{"lb2 is at another revision (58; this node 57): not compared", "lb3 is at another revision"}},
		{name: "the same documents at another revision are compared", self: node("lb1", "c", "t"),
			peers: []NodeState{node("lb2", "c", "t", atRevision("60", "s1"))}, agree: []string{"lb1", "lb2"}},
		{name: "a rejected peer is reported, not compared", self: node("lb1", "c", "t", atRevision("58", "s2")),
			peers: []NodeState{node("lb2", "x", "t", rejecting("58")), node("lb3", "x", "t", rejecting("58"))},
			agree: []string{"lb1"}, rejected: []string{"lb2", "lb3"},
			problems: []string{"lb2 rejected revision 58: etcd:/xlb/services/web:3:5: error: Unknown pool", "lb3 rejected revision 58"}},
		{name: "nodes that rejected the same revision are compared", self: node("lb1", "c", "t", rejecting("58")),
			peers: []NodeState{node("lb2", "c", "t", rejecting("58")), node("lb3", "x", "t", rejecting("58"))},
			agree: []string{"lb1", "lb2"}, disagree: []string{"lb3"}, problems: []string{"lb3 disagrees"}},
		{name: "a table that differs where backends differ does not break a group", self: node("lb3", "c", "bad"),
			peers: []NodeState{node("lb1", "c", "t"), node("lb2", "c", "t2", backends("b9"))},
			agree: []string{"lb2", "lb3"}, disagree: []string{"lb1"}, vips: []string{"web"}, problems: []string{"lb1 disagrees"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers := slices.Clone(tc.peers)
			slices.Reverse(peers) // the order peers come in does not matter
			a := Agree(tc.self, peers)
			check := func(what string, got, want []string) {
				if !slices.Equal(got, want) {
					t.Errorf("%s: %q, want %q", what, got, want)
				}
			}
			check("agree", a.Agree, tc.agree)
			check("disagree", a.Disagree, tc.disagree)
			check("other", a.Other, tc.other)
			check("rejected", a.Rejected, tc.rejected)
			check("vips", a.VIPs, tc.vips)
			if a.Withdraw != tc.withdraw {
				t.Errorf("withdraw %v, want %v", a.Withdraw, tc.withdraw)
			}
			if a.Agreed() != (len(tc.disagree) == 0) {
				t.Errorf("Agreed() %v with disagreeing %q", a.Agreed(), a.Disagree)
			}
			if len(a.Problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d like %q", a.Problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(a.Problems[i], want) {
					t.Errorf("problem %d is %q, want it to contain %q", i, a.Problems[i], want)
				}
			}
		})
	}
}

// TestAgreeSymmetric: on every node of a fleet, Agree reaches the same
// verdict on who withdraws: never both sides of a disagreement.
func TestAgreeSymmetric(t *testing.T) {
	fleets := [][]NodeState{
		{node("lb1", "c", "t"), node("lb2", "x", "t")},
		{node("lb1", "c", "t"), node("lb2", "c", "t"), node("lb3", "c", "bad")},
		{node("lb1", "c", "t"), node("lb2", "c", "t"), node("lb3", "x", "t"), node("lb4", "x", "t"), node("lb5", "z", "t")},
		{node("lb1", "c", "t"), node("lb2", "c", "t2", backends("b9")), node("lb3", "c", "bad")},
	}
	for i, fleet := range fleets {
		withdrawn := map[string]bool{}
		for _, self := range fleet {
			withdrawn[self.Node] = Agree(self, fleet).Withdraw
		}
		for _, a := range fleet {
			for _, b := range fleet {
				if w, _ := differ(&a, &b); w != "" && withdrawn[a.Node] && withdrawn[b.Node] {
					t.Errorf("fleet %d: %s and %s disagree and both withdraw", i, a.Node, b.Node)
				}
			}
		}
		if len(withdrawn) > 0 && !slices.Contains(mapValues(withdrawn), false) {
			t.Errorf("fleet %d: every node withdraws", i)
		}
	}
}

func mapValues(m map[string]bool) []bool {
	var out []bool
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestSourcesDigest(t *testing.T) {
	a := []SourceDocument{{Source: "etcd", Name: "etcd:/x/a", Format: "hcl", Content: []byte("vip {}")},
		{Source: "file", Name: "b.hcl", Format: "hcl", Content: []byte("pool {}")}}
	b := slices.Clone(a)
	slices.Reverse(b)
	if SourcesDigest(a) != SourcesDigest(b) || len(SourcesDigest(a)) != 64 {
		t.Errorf("the order of the documents changed the digest")
	}
	for _, c := range []func([]SourceDocument){
		func(d []SourceDocument) { d[0].Content = []byte("vip  {}") },
		func(d []SourceDocument) { d[0].Name = "etcd:/x/b" },
		func(d []SourceDocument) { d[0].Source = "etcd2" },
		// Name and content shifted at their border: length-prefixed.
		func(d []SourceDocument) { d[0].Name, d[0].Content = "etcd:/x/av", []byte("ip {}") },
	} {
		d := slices.Clone(a)
		c(d)
		if SourcesDigest(d) == SourcesDigest(a) {
			t.Errorf("%+v has the digest of %+v", d, a)
		}
	}
	if SourcesDigest(a[:1]) == SourcesDigest(a) || SourcesDigest(nil) == SourcesDigest(a) {
		t.Error("a document fewer, same digest")
	}
}

func TestVIPDigests(t *testing.T) {
	c := New()
	snap := mustApply(t, c, digestConfig())
	ds := VIPDigests(snap)
	if len(ds) != 2 || ds[0].Name != "dns" || ds[1].Name != "web" || ds[1].Table != snap.VIPs[1].TableDigest {
		t.Fatalf("VIPDigests %+v", ds)
	}
	// Same backends, weights and health on another controller: equal.
	if other := VIPDigests(mustApply(t, New(), reversed())); !slices.Equal(other, ds) {
		t.Errorf("the same configuration written otherwise: %+v, want %+v", other, ds)
	}
	if err := c.SetHealthy("web-b", false); err != nil {
		t.Fatal(err)
	}
	down := VIPDigests(c.Snapshot())
	if down[1].Backends == ds[1].Backends || down[0] != ds[0] {
		t.Errorf("web-b down: %+v, was %+v; want web's backends digest changed, dns's not", down, ds)
	}
	cfg := digestConfig()
	cfg.Pools[0].Backends[1].Weight = 3
	if w := VIPDigests(mustApply(t, New(), cfg)); w[1].Backends == ds[1].Backends {
		t.Error("a reweighted backend left the backends digest as it was")
	}
}
