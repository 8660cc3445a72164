package control

import (
	"fmt"
	"slices"
	"strings"
)

// ShardGap is a VIP that names shards no live node serves (VIP sharding,
// docs/cluster.md): its shard's nodes all died, or none was ever started
// with the shard.
type ShardGap struct {
	VIP string
	// Shards are those of the VIP's shards that no live node serves, in
	// name order.
	Shards []string
	// Served is false when no live node serves the VIP at all: no node
	// announces it, and its clients reach nothing.
	Served bool
}

// String is the gap as a problem sentence.
func (g ShardGap) String() string {
	what := "shard " + g.Shards[0] + ", which no live node serves"
	if len(g.Shards) > 1 {
		what = "shards " + strings.Join(g.Shards, ", ") + ", which no live node serves"
	}
	if !g.Served {
		return fmt.Sprintf("VIP %s names %s: no node serves the VIP", g.VIP, what)
	}
	return fmt.Sprintf("VIP %s names %s (the nodes of its other shards serve it)", g.VIP, what)
}

// UnservedShards returns, in VIP name order, the VIPs among vips that name
// shards no node of nodes serves. nodes are the live ones: this node and
// the peers whose states a publishing source holds (a node's state leaves
// it when the node stops, as etcd's lease ends). A node with shards serves
// those; a node without serves every VIP, so every shard (a node of a
// version that did not publish its shards counts so too: it can hide a
// gap, never make one up).
func UnservedShards(vips []VIP, nodes []NodeState) []ShardGap {
	all := false
	live := map[string]bool{}
	for _, n := range nodes {
		all = all || len(n.Shards) == 0
		for _, s := range n.Shards {
			live[s] = true
		}
	}
	if all {
		return nil
	}
	var gaps []ShardGap
	for i := range vips {
		v := &vips[i]
		g := ShardGap{VIP: v.Name}
		for _, s := range v.Shards {
			if live[s] {
				g.Served = true
			} else if !slices.Contains(g.Shards, s) {
				g.Shards = append(g.Shards, s)
			}
		}
		if len(g.Shards) > 0 {
			slices.Sort(g.Shards)
			gaps = append(gaps, g)
		}
	}
	slices.SortFunc(gaps, func(a, b ShardGap) int { return strings.Compare(a.VIP, b.VIP) })
	return gaps
}
