package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/admin"
)

const examplePcap = "../../examples/offline/input.pcap"

// trafficConfig writes the offline example's graph with a second, idle
// source: xlbd replays the example's capture once through it and keeps
// running, with traffic on every backend of web4 and counted drops.
func trafficConfig(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	input, err := filepath.Abs(examplePcap)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(src), `file = "input.pcap"`, "file = "+strconv.Quote(input), 1)
	s = strings.Replace(s, "connect = default_graph()", `element "TestIdle" "idle" {}
  connect = ["rx -> parse", "idle -> drop", "parse.out -> ct.lookup", "parse.bad -> drop", "ct.hit -> encap", "ct.miss -> sel",
    "sel.out -> ct.learn", "sel.nobackend -> drop", "encap.out -> tx", "encap.bad -> drop"]`, 1)
	path := filepath.Join(dir, "x.hcl")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startTCP starts xlbd on the traffic configuration with the admin API on
// a loopback port and no socket, and returns the API's URL and client
// once the capture was replayed.
func startTCP(t *testing.T) (*child, string, *admin.Client) {
	t.Helper()
	dir := t.TempDir()
	c := startRun(t, nil, "-metrics-addr", "", "-admin-socket", "", "-admin-listen", "127.0.0.1:0", "-config", trafficConfig(t, dir),
		"-var", "output="+filepath.Join(dir, "out.pcap"), "-node", "lb1")
	listening := regexp.MustCompile(`admin API listening" addr=(\S+) tls=false`)
	waitUntil(t, "the admin API listening on TCP", &c.stderr, func() bool { return listening.MatchString(c.stderr.String()) })
	base := "http://" + listening.FindStringSubmatch(c.stderr.String())[1]
	cl, err := admin.NewTCPClient(base, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	// The capture is replayed when every packet of it left the graph.
	want := uint64(pcapPackets(t, examplePcap))
	waitUntil(t, "the capture replayed", &c.stderr, func() bool {
		var cs admin.Counters
		if err := cl.Get(context.Background(), "/v1/counters", &cs); err != nil {
			return false
		}
		var ended uint64
		for _, e := range cs.Elements {
			ended += e.Consumed + e.Dropped
		}
		return ended == want
	})
	return c, base, cl
}

// TestAdminTCP serves the API on a loopback TCP port: /v1/graph is the
// running graph with each edge's packets equal to its output port's in
// /v1/counters and each element's drops on its node; a non-loopback
// address without TLS is refused at start, naming the TLS flags.
func TestAdminTCP(t *testing.T) {
	_, _, cl := startTCP(t)
	ctx := context.Background()
	var dot []byte
	if err := cl.Get(ctx, "/v1/graph", &dot); err != nil {
		t.Fatal(err)
	}
	var cs admin.Counters
	if err := cl.Get(ctx, "/v1/counters", &cs); err != nil {
		t.Fatal(err)
	}
	edges := regexp.MustCompile(`"(\w+)" -> "\w+" \[taillabel="(\w+)", headlabel="\w+", label="(\d+)"\];`).FindAllStringSubmatch(string(dot), -1)
	if len(edges) != 10 {
		t.Fatalf("%d edges with counts, want 10:\n%s", len(edges), dot)
	}
	var counted uint64
	for _, e := range edges {
		for _, s := range cs.Elements {
			for _, p := range s.Out {
				if s.Name == e[1] && p.Port == e[2] && e[3] != strconv.FormatUint(p.Packets, 10) {
					t.Errorf("edge %s.%s: %s packets, /v1/counters says %d", e[1], e[2], e[3], p.Packets)
				}
			}
		}
		n, _ := strconv.ParseUint(e[3], 10, 64)
		counted += n
	}
	if counted == 0 {
		t.Errorf("no packets on any edge:\n%s", dot)
	}
	for _, s := range cs.Elements {
		if s.Dropped > 0 && !strings.Contains(string(dot), "dropped "+strconv.FormatUint(s.Dropped, 10)+`\l`) {
			t.Errorf("%s's %d drops are not on its node:\n%s", s.Name, s.Dropped, dot)
		}
	}

	dir := t.TempDir()
	refused := startRun(t, nil, "-metrics-addr", "", "-admin-socket", "", "-admin-listen", "0.0.0.0:0", "-config", trafficConfig(t, dir),
		"-var", "output="+filepath.Join(dir, "out.pcap"))
	if err := refused.Wait(); err == nil || !strings.Contains(refused.stderr.String(), "-admin-listen 0.0.0.0:0 is not a loopback address") ||
		!strings.Contains(refused.stderr.String(), "-admin-tls-client-ca") {
		t.Errorf("-admin-listen 0.0.0.0:0 without TLS: %v\n%s", err, refused.stderr.String())
	}
}
