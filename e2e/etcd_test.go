package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/etcdtest"
)

// The etcd tests run examples/cluster/etcd on the cluster lab: the nodes'
// services are the keys under /xlb/services/ of an etcd that runs in the
// router namespace (a real etcd-server, at 10.90.2.1:2379), and every node
// publishes what it applied under /xlb/status/ (docs/sources.md). Lines
// starting "etcd:" are the measurements docs/benchmarks.md reports.

// etcdPrefix is where examples/cluster/etcd/main.hcl reads services.
const etcdPrefix = "/xlb/services/"

// etcdLab is a cluster lab with an etcd in its router namespace and a
// client of it for the test.
type etcdLab struct {
	*cluster
	etcd *etcdtest.Server
	cli  *clientv3.Client
	dir  string // the nodes' status files
}

// newEtcdLab builds the cluster lab, starts etcd in the router namespace
// with examples/cluster/etcd/services/*.hcl loaded, and starts xlbd on
// the given nodes, each with -node lbN and a status file.
func newEtcdLab(t *testing.T, nodes ...int) *etcdLab {
	t.Helper()
	main, err := filepath.Abs("../examples/cluster/etcd/main.hcl")
	if err != nil {
		t.Fatal(err)
	}
	// The status files' directory first: removed after the lab, whose
	// xlbds write there until they stop.
	dir := t.TempDir()
	e := &etcdLab{cluster: newClusterLab(t, lab.BGP{}, main), dir: dir}
	router := e.l.Router()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := e.l.Do(router.NS, func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	e.etcd = etcdtest.Start(t, etcdtest.InNamespace(func(name string, args ...string) *exec.Cmd {
		return e.l.Exec(router.NS, name, args...)
	}, router.BridgeAddr4.String(), dial))
	e.cli = e.etcd.Client(t)
	for _, name := range []string{"web", "api"} {
		src, err := os.ReadFile(filepath.Join(filepath.Dir(main), "services", name+".hcl"))
		if err != nil {
			t.Fatal(err)
		}
		e.put(name, string(src))
	}
	e.extra = func(i int) []string {
		name := e.l.LB(i).Name
		return []string{"-node", name, "-status", e.statusFile(i)}
	}
	for _, i := range nodes {
		e.start(i)
	}
	e.waitRoutes(nodes...)
	return e
}

// put sets the key etcdPrefix+name and returns the revision it made.
func (e *etcdLab) put(name, value string) int64 {
	e.t.Helper()
	return etcdtest.Put(e.t, e.cli, etcdPrefix+name, value)
}

// del deletes the key etcdPrefix+name.
func (e *etcdLab) del(name string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.cli.Delete(ctx, etcdPrefix+name); err != nil {
		e.t.Fatal(err)
	}
}

func (e *etcdLab) statusFile(i int) string {
	return filepath.Join(e.dir, e.l.LB(i).Name+".json")
}

// nodeStatus is the part of xlbd's status file (docs/sources.md) the
// tests read.
type nodeStatus struct {
	Node         string `json:"node"`
	Generation   uint64 `json:"generation"`
	ConfigDigest string `json:"config_digest"`
	Sources      []struct {
		Name        string `json:"name"`
		State       string `json:"state"`
		Revision    string `json:"revision"`
		Unavailable string `json:"unavailable"`
	} `json:"sources"`
	Rejected *struct {
		Revision    string `json:"revision"`
		Diagnostics string `json:"diagnostics"`
	} `json:"rejected"`
	Cluster struct {
		Checked   bool     `json:"checked"`
		Agree     bool     `json:"agree"`
		Withdrawn bool     `json:"withdrawn"`
		Problems  []string `json:"problems"`
	} `json:"cluster"`
}

// status reads node i's status file.
func (e *etcdLab) status(i int) (nodeStatus, error) {
	var s nodeStatus
	b, err := os.ReadFile(e.statusFile(i))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// waitStatus waits until node i's status satisfies ok, and returns it.
func (e *etcdLab) waitStatus(i int, what string, ok func(nodeStatus) bool) nodeStatus {
	e.t.Helper()
	deadline := time.Now().Add(converge)
	var s nodeStatus
	var err error
	for time.Now().Before(deadline) {
		if s, err = e.status(i); err == nil && ok(s) {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("%s: status never showed %s: %+v (%v)\nlog:\n%s", e.l.LB(i).Name, what, s, err, e.nodes[i].Log())
	return s
}

// TestEtcdSource runs two nodes on the services in etcd while 300
// connections are held through them, and checks in turn that: they
// converge on identical digests; a change reaches both; a bad value is
// rejected by both, naming its key and line, while they keep serving;
// both keep serving through an etcd crash, report it, and pick up on
// restart a change made meanwhile; a third node whose tables differ
// (another hash seed) is told so and never announces, and the first two
// keep their routes. Every held connection keeps its backend throughout.
func TestEtcdSource(t *testing.T) {
	e := newEtcdLab(t, 0, 1)
	h, before := e.hold()
	at := h.Snapshot()

	// Converged: same sources, same digests, and each says so.
	var digest string
	for i := range 2 {
		s := e.waitStatus(i, "agreement with the other node", func(s nodeStatus) bool { return s.Cluster.Checked && s.Cluster.Agree })
		if digest == "" {
			digest = s.ConfigDigest
		} else if s.ConfigDigest != digest {
			t.Errorf("lb2 applied config digest %s, lb1 %s", s.ConfigDigest, digest)
		}
	}

	// A change: api's pool gains a backend on be3. Both apply it. (Not web's pool: a
	// flow ECMP moves to the third node below must find the same backend
	// there as in the ConnTrack of the node it left.)
	marks := []int{e.nodes[0].LogMark(), e.nodes[1].LogMark()}
	api, err := os.ReadFile(filepath.Join(filepath.Dir(e.config), "services", "api.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(api), `backend "be4" { address = "10.90.2.24" }`,
		`backend "be4" { address = "10.90.2.24" }
  backend "api2" { address = "10.90.2.23" }`, 1)
	if changed == string(api) {
		t.Fatal("examples/cluster/etcd/services/api.hcl no longer has be4's line; update this test")
	}
	put := time.Now()
	rev := e.put("api", changed)
	var took [2]time.Duration
	var digests [2]string
	for i := range 2 {
		s := e.waitStatus(i, fmt.Sprintf("revision %d applied", rev), func(s nodeStatus) bool {
			return s.ConfigDigest != digest && s.Cluster.Agree && s.Rejected == nil
		})
		took[i] = time.Since(put)
		digests[i] = s.ConfigDigest
		if _, err := e.nodes[i].WaitLog(marks[i], time.Second, `msg="configuration applied"`); err != nil {
			t.Error(err)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("after the change, lb1 applied %s and lb2 %s", digests[0], digests[1])
	}
	digest = digests[0]
	t.Logf("etcd: a put reached lb1's and lb2's data plane (status written after the snapshot is published) %v and %v after it was made",
		took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))

	// A bad value: rejected by both at its key and line; nothing changes.
	marks = []int{e.nodes[0].LogMark(), e.nodes[1].LogMark()}
	e.put("broken", "vip \"bad\" {\n  address = \"10.90.100.12\"\n  ports = [80,\n}\n")
	for i := range 2 {
		s := e.waitStatus(i, "the bad value rejected", func(s nodeStatus) bool { return s.Rejected != nil })
		if !strings.Contains(s.Rejected.Diagnostics, "etcd:/xlb/services/broken:") {
			t.Errorf("%s: rejection does not name the key and line: %q", e.l.LB(i).Name, s.Rejected.Diagnostics)
		}
		if s.ConfigDigest != digest {
			t.Errorf("%s: config digest %s after a rejected change, want %s", e.l.LB(i).Name, s.ConfigDigest, digest)
		}
		if _, err := e.nodes[i].WaitLog(marks[i], converge, "etcd:/xlb/services/broken:4"); err != nil {
			t.Error(err)
		}
	}
	e.del("broken")
	for i := range 2 {
		e.waitStatus(i, "the rejection cleared", func(s nodeStatus) bool { return s.Rejected == nil && s.ConfigDigest == digest })
	}

	// etcd crashes: both keep serving the last good configuration and say
	// so; on restart both resume and take a change made meanwhile.
	marks = []int{e.nodes[0].LogMark(), e.nodes[1].LogMark()}
	e.etcd.Kill()
	for i := range 2 {
		e.waitStatus(i, "etcd unavailable", func(s nodeStatus) bool {
			return len(s.Sources) == 1 && s.Sources[0].State == "unavailable"
		})
		if _, err := e.nodes[i].WaitLog(marks[i], converge, "serving the last good configuration"); err != nil {
			t.Error(err)
		}
	}
	e.spread(0, 1)
	e.etcd.Restart()
	e.del("api")
	for i := range 2 {
		e.waitStatus(i, "the change made during the outage", func(s nodeStatus) bool {
			return s.Sources[0].State == "ok" && s.ConfigDigest != digest
		})
	}
	e.waitHops(api4)
	e.waitHops(web4, 0, 1)

	// A third node with another hash seed: same keys, other tables. It is
	// the minority, so it says so and withdraws; the two others say so and
	// keep their routes.
	w := e.bird.Watch(web4, web6)
	defer w.Close()
	marks = []int{e.nodes[0].LogMark(), e.nodes[1].LogMark()}
	extra := e.extra
	e.extra = func(i int) []string { return append(extra(i), "-var", "hash_seed=7") }
	e.start(2)
	e.extra = extra
	s := e.waitStatus(2, "disagreement", func(s nodeStatus) bool { return s.Cluster.Checked && !s.Cluster.Agree && s.Cluster.Withdrawn })
	t.Logf("lb3: %s", strings.Join(s.Cluster.Problems, "; "))
	if _, err := e.nodes[2].WaitLog(0, converge, "withdrawing every route until it agrees"); err != nil {
		t.Error(err)
	}
	for i := range 2 {
		s := e.waitStatus(i, "disagreement seen", func(s nodeStatus) bool { return s.Cluster.Checked && !s.Cluster.Agree })
		if s.Cluster.Withdrawn {
			t.Errorf("%s withdrew its routes although it is in the majority", e.l.LB(i).Name)
		}
		if _, err := e.nodes[i].WaitLog(marks[i], converge, "keeping the routes: no larger group of nodes agrees without this one"); err != nil {
			t.Error(err)
		}
	}
	// Its sessions are up, so a route it announced would be at the router
	// by now; a second more for one in flight.
	e.established(2)
	time.Sleep(time.Second)
	for _, ch := range w.Changes() {
		for _, hop := range ch.NextHops {
			if hop == e.l.LB(2).Addr4 || hop == e.l.LB(2).Addr6 {
				t.Errorf("the router routed %s via lb3, which disagrees: %v", ch.Prefix, ch.NextHops)
			}
		}
	}
	// Restarted with the fleet's seed, it agrees and announces.
	if _, err := e.nodes[2].Stop(); err != nil {
		t.Error(err)
	}
	e.start(2)
	e.waitStatus(2, "agreement", func(s nodeStatus) bool { return s.Cluster.Checked && s.Cluster.Agree })
	e.waitHops(web4, 0, 1, 2)

	s2 := e.survived(h, before, at)
	e.report("etcd source", s2, "a change, a rejected value, an etcd crash and a disagreeing node")
}
