package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// daemon is xlbd run's configuration side: one goroutine (loop) applies
// every change, serialized, whatever brought it (SIGHUP, a config
// source's update), reports each in the status, publishes this node's
// applied state and checks that the cluster agrees.
type daemon struct {
	s          *services
	log        *slog.Logger
	path       string
	vars       varFlags
	stderr     io.Writer
	node       string
	statusPath string // "": no status file

	// Owned by the goroutine that applies (start-up, then loop).
	tried       string            // digest of the documents last tried
	triedRevs   map[string]string // their revision, by source
	applied     string            // digest of the documents applied
	appliedRevs map[string]string
	published   string // what publish last handed the sources (publishKey)
	agreement   string // the last agreement logged (agreementKey)
	shardGaps   string // the unserved shards last logged (logShards)

	// requests are the admin API's writes, which loop serves until it
	// returns and closes stopped.
	requests chan adminRequest
	stopped  chan struct{}

	// Reloads applied and rejected after start-up, for the metrics.
	reloadsOK, reloadsFailed atomic.Uint64

	mu     sync.Mutex
	status Status
	// pools and backends are the applied configuration's, for the API.
	pools    map[string]string
	backends map[string]bool
	// service is the applied configuration, overrides included: what a
	// plan over the API is made against.
	service *control.Config
	self    sdk.NodeStatus
	// known is set once the cluster was checked with every source's peers
	// (or peersWait passed since gate was set): see clusterCheck.
	known bool
	gate  time.Time
}

// peersWait bounds how long a starting node waits for its sources to send
// the fleet's states before it announces without having compared them.
const peersWait = 10 * time.Second

func newDaemon(s *services, log *slog.Logger, path string, vars varFlags, stderr io.Writer, node, statusPath string) *daemon {
	return &daemon{s: s, log: log, path: path, vars: vars, stderr: stderr, node: node, statusPath: statusPath,
		requests: make(chan adminRequest), stopped: make(chan struct{}),
		status: Status{Node: node, Config: path, Sources: []SourceStatus{}, Cluster: ClusterStatus{Nodes: []ClusterNode{}, Problems: []string{}}}}
}

// loop applies changes until ctx ends: on SIGHUP (hup) the file is read
// again and every source reads everything anew (Resync); on a source's
// update the documents are applied when they changed. What piles up while
// one change is applied is applied at once as one.
func (d *daemon) loop(ctx context.Context, hup <-chan os.Signal) {
	defer close(d.stopped)
	var updates, peers <-chan struct{}
	if d.s.src != nil {
		updates, peers = d.s.src.Updates(), d.s.src.Peers()
	}
	for {
		_, published := d.s.ctl.Store().Watch()
		reload := false
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload = true
		case <-updates:
		case <-peers:
			d.checkCluster()
			continue
		case r := <-d.requests:
			r.reply <- d.serve(r)
			continue
		case <-published:
			// A health change: the tables this node publishes changed.
			d.publish()
			continue
		}
		for more := true; more; {
			select {
			case <-hup:
				reload = true
			case <-updates:
			default:
				more = false
			}
		}
		if reload && d.s.src != nil {
			d.s.src.Resync()
		}
		_, _ = d.attempt(reload)
	}
}

// attempt applies the file with the sources' current documents; without
// reload, only when the documents changed since the last attempt (else it
// refreshes the sources' states in the status). A rejection is logged and
// reported; the running configuration stays.
func (d *daemon) attempt(reload bool) (*xhcl.File, error) {
	docs := d.s.sourceDocs()
	digest, revs := sourcesDigest(docs), d.revisions()
	if !reload && digest == d.tried {
		d.refresh()
		return nil, nil
	}
	trigger, rev := d.trigger(reload, revs)
	d.tried, d.triedRevs = digest, revs
	var diags bytes.Buffer
	f, err := d.s.transactDocs(d.path, d.vars, docs, io.MultiWriter(d.stderr, &diags), true)
	now := time.Now()
	d.mu.Lock()
	if err != nil {
		d.status.Rejected = &Rejection{Source: trigger, Revision: rev, At: now, Diagnostics: diags.String()}
	} else {
		d.applied, d.appliedRevs = digest, revs
		if len(d.s.tried) != len(docs) {
			// A removed source's documents were dropped (services.check):
			// what was applied is the rest.
			d.applied = sourcesDigest(d.s.tried)
		}
		snap := d.s.ctl.Snapshot()
		d.status.Generation, d.status.ConfigDigest, d.status.AppliedAt, d.status.Rejected = snap.Generation, snap.ConfigDigest, now, nil
		d.status.Shards = f.Service.Shards
	}
	d.mu.Unlock()
	if err == nil {
		d.appliedConfig(&f.Service)
		if d.s.running != nil {
			d.reloadsOK.Add(1)
		}
	}
	if err != nil && d.s.running != nil {
		d.reloadsFailed.Add(1)
		d.log.Error("reload rejected; the running configuration stays", "config", d.path, "source", trigger, "revision", rev, "err", err)
	}
	d.publish()
	return f, err
}

// revisions returns each source's revision now.
func (d *daemon) revisions() map[string]string {
	revs := map[string]string{}
	if d.s.src != nil {
		for _, st := range d.s.src.States() {
			revs[st.Name] = st.Revision
		}
	}
	return revs
}

// trigger names what brought a change: the config file on SIGHUP, else
// the sources whose revision moved, and the revision.
func (d *daemon) trigger(reload bool, revs map[string]string) (string, string) {
	if reload || d.triedRevs == nil {
		return d.path, ""
	}
	var names, rs []string
	for _, name := range slices.Sorted(maps.Keys(revs)) {
		if revs[name] != d.triedRevs[name] {
			names, rs = append(names, name), append(rs, revs[name])
		}
	}
	if len(names) == 0 {
		return d.path, ""
	}
	return strings.Join(names, ","), strings.Join(rs, ",")
}

// publishKey is what makes a node's state new (Updated aside).
func publishKey(n *sdk.NodeStatus) string {
	return fmt.Sprint(n.Generation, n.SourcesDigest, n.RejectedRevision, n.Revision)
}

// publish hands the sources this node's applied state (those that publish
// store it), then checks the cluster against it.
func (d *daemon) publish() {
	snap := d.s.ctl.Snapshot()
	n := sdk.NodeStatus{Node: d.node, Revision: d.publishedRevision(), SourcesDigest: d.applied,
		Generation: snap.Generation, ConfigDigest: snap.ConfigDigest, Updated: time.Now().UTC()}
	for _, v := range control.VIPDigests(snap) {
		n.VIPs = append(n.VIPs, sdk.VIPDigest{Name: v.Name, Table: v.Table, Backends: v.Backends})
	}
	d.mu.Lock()
	if r := d.status.Rejected; r != nil {
		n.RejectedRevision, n.Rejected = cmpOr(r.Revision, "?"), r.Diagnostics
	}
	if d.service != nil {
		n.Shards = d.service.Shards
	}
	d.self = n
	d.mu.Unlock()
	if key := publishKey(&n); key != d.published && d.s.src != nil {
		d.published = key
		d.s.src.Publish(n)
	}
	d.checkCluster()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// publishedRevision is the revision of the applied documents of the
// sources that publish (all but those known not to): one source's
// revision as it is, several as name=revision pairs.
func (d *daemon) publishedRevision() string {
	if d.s.src == nil {
		return ""
	}
	var pairs, revs []string
	for _, st := range d.s.src.States() {
		if !st.NotPublisher {
			pairs, revs = append(pairs, st.Name+"="+d.appliedRevs[st.Name]), append(revs, d.appliedRevs[st.Name])
		}
	}
	if len(revs) == 1 {
		return revs[0]
	}
	return strings.Join(pairs, ",")
}

// nodeState is a published state as control compares it.
func nodeState(n sdk.NodeStatus) control.NodeState {
	s := control.NodeState{Node: n.Node, Revision: n.Revision, SourcesDigest: n.SourcesDigest, ConfigDigest: n.ConfigDigest,
		RejectedRevision: n.RejectedRevision, Rejected: n.Rejected, Shards: n.Shards}
	for _, v := range n.VIPs {
		s.VIPs = append(s.VIPs, control.VIPDigest{Name: v.Name, Table: v.Table, Backends: v.Backends})
	}
	return s
}

// checkCluster compares this node's state with its peers' (control.Agree),
// logs each change of agreement, sets the withdrawal the route loop reads
// and writes the status.
func (d *daemon) checkCluster() {
	var peers []sdk.NodeStatus
	ok, known := false, true
	if d.s.src != nil {
		// Known first: states sent before it are in PeerStates.
		known = d.s.src.PeersKnown()
		peers, ok = d.s.src.PeerStates()
	}
	d.mu.Lock()
	self, service := d.self, d.service
	d.mu.Unlock()
	cs := ClusterStatus{Checked: ok, Agree: true, Nodes: []ClusterNode{}, Problems: []string{}}
	var a control.Agreement
	var gaps []control.ShardGap
	if ok {
		states := make([]control.NodeState, len(peers))
		for i, p := range peers {
			states[i] = nodeState(p)
		}
		a = control.Agree(nodeState(self), states)
		cs.Agree, cs.Withdrawn, cs.Problems = a.Agreed(), a.Withdraw, append(cs.Problems, a.Problems...)
		cs.Nodes = clusterNodes(self, peers, a)
		if service != nil {
			gaps = control.UnservedShards(service.VIPs, append(states, nodeState(self)))
		}
		for _, g := range gaps {
			cs.Problems = append(cs.Problems, g.String())
		}
	}
	d.mu.Lock()
	d.status.Cluster = cs
	d.known = d.known || known
	d.mu.Unlock()
	d.logAgreement(ok, self, a)
	d.logShards(gaps)
	d.refresh()
}

// logShards logs the VIPs that name shards no live node serves when they
// change, and when there are none again.
func (d *daemon) logShards(gaps []control.ShardGap) {
	problems := make([]string, len(gaps))
	vips := make([]string, len(gaps))
	for i, g := range gaps {
		problems[i], vips[i] = g.String(), g.VIP
	}
	key := strings.Join(problems, "; ")
	if key == d.shardGaps {
		return
	}
	if key != "" {
		d.log.Warn("VIPs name shards no live node serves: "+key, "vips", strings.Join(vips, ","))
	} else {
		d.log.Info("every VIP's shards have a live node again")
	}
	d.shardGaps = key
}

// clusterNodes lists this node and its peers with how each compares.
func clusterNodes(self sdk.NodeStatus, peers []sdk.NodeStatus, a control.Agreement) []ClusterNode {
	state := map[string]string{}
	for _, l := range []struct {
		names []string
		state string
	}{{a.Agree, "agrees"}, {a.Disagree, "disagrees"}, {a.Other, "other revision"}, {a.Rejected, "rejected"}} {
		for _, n := range l.names {
			state[n] = l.state
		}
	}
	state[self.Node] = "self"
	out := []ClusterNode{{Node: self.Node, Revision: self.Revision, ConfigDigest: snapshot.ShortDigest(self.ConfigDigest), State: "self", Shards: self.Shards}}
	for _, p := range peers {
		if p.Node != self.Node {
			out = append(out, ClusterNode{Node: p.Node, Revision: p.Revision, ConfigDigest: snapshot.ShortDigest(p.ConfigDigest), State: state[p.Node], Shards: p.Shards})
		}
	}
	return out
}

// logAgreement logs the agreement when it changed: who agrees, or who
// disagrees on what, and the withdrawal.
func (d *daemon) logAgreement(checked bool, self sdk.NodeStatus, a control.Agreement) {
	key := fmt.Sprint(checked, a.Agree, a.Disagree, a.Other, a.Rejected, a.Withdraw)
	if key == d.agreement {
		return
	}
	d.agreement = key
	switch {
	case !checked:
		return
	case a.Agreed():
		d.log.Info("cluster agrees", "nodes", strings.Join(a.Agree, ","), "revision", self.Revision,
			"config_digest", snapshot.ShortDigest(self.ConfigDigest), "not_compared", strings.Join(append(slices.Clone(a.Other), a.Rejected...), ","))
	default:
		var problems []string
		for _, p := range a.Problems {
			if slices.ContainsFunc(a.Disagree, func(n string) bool { return strings.HasPrefix(p, n+" ") }) {
				problems = append(problems, p)
			}
		}
		d.log.Error("cluster disagrees: "+strings.Join(problems, "; "), "peers", strings.Join(a.Disagree, ","),
			"vips", strings.Join(a.VIPs, ","), "agree", strings.Join(a.Agree, ","), "revision", self.Revision)
		if a.Withdraw {
			d.log.Error("withdrawing every route until it agrees", "agree", strings.Join(a.Agree, ","), "disagree", strings.Join(a.Disagree, ","))
		} else {
			d.log.Error("keeping the routes: no larger group of nodes agrees without this one", "agree", strings.Join(a.Agree, ","))
		}
	}
	for _, r := range a.Rejected {
		for _, p := range a.Problems {
			if strings.HasPrefix(p, r+" rejected") {
				d.log.Warn("a peer rejected a change", "peer", r, "problem", p)
			}
		}
	}
}

// errDisagrees is the route loop's reason to withdraw while this node
// disagrees with a larger group of nodes.
var errDisagrees = errors.New("this node disagrees with a larger group of nodes")

// errPeersUnknown holds a starting node's first announcement until its
// sources have sent the fleet's states, so that a node whose tables
// differ from the fleet's is not routed flows even for the moment the
// comparison takes.
var errPeersUnknown = errors.New("waiting for the fleet's published states, to compare with them first")

// clusterCheck is the agreement as the route loop takes it: errDisagrees
// while this node must withdraw, errPeersUnknown until the first
// comparison could be made (at most peersWait).
func (d *daemon) clusterCheck() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.known && d.s.src != nil {
		if d.gate.IsZero() {
			d.gate = time.Now()
		}
		if time.Since(d.gate) < peersWait {
			return errPeersUnknown
		}
		d.known = true
	}
	if d.status.Cluster.Withdrawn {
		return errDisagrees
	}
	return nil
}

// refresh takes the sources' states into the status and writes it.
func (d *daemon) refresh() {
	var sources []SourceStatus
	if d.s.src != nil {
		for _, st := range d.s.src.States() {
			ss := SourceStatus{Name: st.Name, State: st.State, Revision: st.Revision, Documents: len(st.Documents), Since: st.Since}
			if st.State == "unavailable" {
				ss.Unavailable = st.Reason
			}
			sources = append(sources, ss)
		}
	}
	d.mu.Lock()
	d.status.Sources = append([]SourceStatus{}, sources...)
	st := d.status
	d.mu.Unlock()
	if d.statusPath == "" {
		return
	}
	if err := writeStatus(d.statusPath, &st); err != nil {
		d.log.Warn("cannot write the status file", "path", d.statusPath, "err", err)
	}
}

// Status returns the status as it is now.
func (d *daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}
