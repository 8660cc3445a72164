package control

import (
	"fmt"
	"slices"
	"strings"

	"github.com/xlbproject/xlb/control/snapshot"
)

// Nodes of a fleet that read the same documents must build the same
// configuration and the same tables: Agree checks it from the states the
// nodes publish (through a config source every node shares, etcd). See
// docs/cluster.md, "Nodes prove they agree".

// NodeState is what one node applied, as it publishes it.
type NodeState struct {
	Node string
	// Revision is the source revision of the documents it applied, for
	// people; SourcesDigest (SourcesDigest) says whether two nodes had the
	// same inputs.
	Revision      string
	SourcesDigest string
	ConfigDigest  string
	VIPs          []VIPDigest
	// RejectedRevision is the latest change the node rejected, when newer
	// than what it applied, and Rejected its diagnostics.
	RejectedRevision, Rejected string
	// Shards are the node's shards; none: it serves every VIP (see
	// UnservedShards).
	Shards []string
}

// VIPDigest is one VIP's table digest and the digest of the backends the
// table was built from (VIPDigests).
type VIPDigest struct {
	Name, Table, Backends string
}

// Agreement is what Agree found, each list in node name order.
type Agreement struct {
	// Agree is this node and the peers that agree with it.
	Agree []string
	// Disagree are the compared peers that disagree with this node, and
	// VIPs the first VIPs whose tables differ (by VIP name, for the log).
	Disagree []string
	VIPs     []string
	// Other are the peers at another revision (other sources digest), and
	// Rejected those whose latest change was rejected: neither compared.
	Other, Rejected []string
	// Problems says, one sentence each, what disagrees or was not compared.
	Problems []string
	// Withdraw is set when this node must withdraw its routes: a larger
	// group of peers agrees among itself and not with it.
	Withdraw bool
}

// Agreed reports whether every compared peer agrees with this node.
func (a Agreement) Agreed() bool { return len(a.Disagree) == 0 }

// maxVIPsNamed bounds the VIPs a problem names.
const maxVIPsNamed = 3

// Agree compares this node's state with its peers' (this node's own entry
// among peers, by name, is skipped):
//   - a peer whose latest change was rejected is reported and not
//     compared, unless this node rejected the same revision: then both
//     still run the same older inputs and are compared;
//   - a peer with another sources digest is at another revision: listed,
//     not compared, since different inputs rightly give different tables;
//   - two nodes with the same inputs disagree when their config digests
//     differ, or a VIP both have, built from equal backends (the same ones
//     in service), has different table digests.
//
// This node withdraws when its group (itself and the peers that agree
// with it) is strictly smaller than a group of peers that agree with each
// other and disagree with it. Where only tables differ, its group leaves
// out the peers that serve none of its VIPs (other shards'), which agree
// with it on the config digest alone. A tie withdraws nobody: withdrawing both
// halves would take the VIPs down everywhere, for a fault that one half
// has; both keep their routes and say so loudly.
func Agree(self NodeState, peers []NodeState) Agreement {
	var a Agreement
	a.Agree = []string{self.Node}
	var compared []*NodeState // the peers that disagree with self
	// apart counts the agreeing peers that serve none of self's VIPs (of
	// other shards): they agree on the config digest alone.
	apart := 0
	mine := make(map[string]bool, len(self.VIPs))
	for _, v := range self.VIPs {
		mine[v.Name] = true
	}
	sorted := byName(peers, func(n *NodeState) string { return n.Node })
	for _, p := range sorted {
		switch {
		case p.Node == self.Node:
			continue
		case p.RejectedRevision != "" && p.RejectedRevision != self.RejectedRevision:
			a.Rejected = append(a.Rejected, p.Node)
			a.Problems = append(a.Problems, fmt.Sprintf("%s rejected revision %s: %s", p.Node, p.RejectedRevision, firstLine(p.Rejected)))
			continue
		case p.SourcesDigest != self.SourcesDigest:
			a.Other = append(a.Other, p.Node)
			a.Problems = append(a.Problems, fmt.Sprintf("%s is at another revision (%s; this node %s): not compared", p.Node, p.Revision, self.Revision))
			continue
		}
		why, vips := differ(&self, p)
		if why == "" {
			a.Agree = append(a.Agree, p.Node)
			if !slices.ContainsFunc(p.VIPs, func(v VIPDigest) bool { return mine[v.Name] }) {
				apart++
			}
			continue
		}
		a.Disagree = append(a.Disagree, p.Node)
		for _, v := range vips {
			if len(a.VIPs) < maxVIPsNamed && !slices.Contains(a.VIPs, v) {
				a.VIPs = append(a.VIPs, v)
			}
		}
		a.Problems = append(a.Problems, fmt.Sprintf("%s disagrees at revision %s: %s", p.Node, p.Revision, why))
		compared = append(compared, p)
	}
	slices.Sort(a.Agree)
	// Where only tables differ, the nodes of other shards have no say:
	// they would make a node with a wrong table outnumber its own
	// shard's nodes, which agree among themselves.
	support := len(a.Agree)
	if !slices.ContainsFunc(compared, func(p *NodeState) bool { return p.ConfigDigest != self.ConfigDigest }) {
		support -= apart
	}
	a.Withdraw = largestGroup(compared) > support
	return a
}

// differ says how two nodes with the same inputs disagree ("" when they
// agree), and the VIPs whose tables differ.
func differ(a, b *NodeState) (string, []string) {
	if a.ConfigDigest != b.ConfigDigest {
		return fmt.Sprintf("config digest %s, this node %s", snapshot.ShortDigest(b.ConfigDigest), snapshot.ShortDigest(a.ConfigDigest)), nil
	}
	theirs := make(map[string]*VIPDigest, len(b.VIPs))
	for i := range b.VIPs {
		theirs[b.VIPs[i].Name] = &b.VIPs[i]
	}
	var vips []string
	for i := range a.VIPs {
		v := &a.VIPs[i]
		if w := theirs[v.Name]; w != nil && w.Backends == v.Backends && w.Table != v.Table {
			vips = append(vips, v.Name)
		}
	}
	if len(vips) == 0 {
		return "", nil
	}
	slices.Sort(vips)
	named := vips[:min(len(vips), maxVIPsNamed)]
	more := ""
	if len(vips) > len(named) {
		more = fmt.Sprintf(" and %d more", len(vips)-len(named))
	}
	return fmt.Sprintf("the tables of VIP %s%s differ, built from the same backends", strings.Join(named, ", "), more), vips
}

// largestGroup is the size of the largest group of nodes that agree with
// each other pairwise. Agreement is not transitive (tables are compared
// only where the backends are equal), so each node seeds a group that
// takes, in name order, every node agreeing with all it holds; fleets are
// small, and the order makes the answer the same on every node.
func largestGroup(nodes []*NodeState) int {
	best := 0
	for i, seed := range nodes {
		group := []*NodeState{seed}
		for j, n := range nodes {
			if j == i {
				continue
			}
			if !slices.ContainsFunc(group, func(g *NodeState) bool { w, _ := differ(g, n); return w != "" }) {
				group = append(group, n)
			}
		}
		best = max(best, len(group))
	}
	return best
}

// firstLine is the first line of s, for a problem sentence.
func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
