package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

// flowsLab starts xlbd on the lab's LB node with the counted stream's UDP
// VIPs added to examples/lab/lab.hcl, edited by edit, and returns the lab,
// the binaries and the admin socket.
func flowsLab(t *testing.T, edit func(string) string) (*lab.Lab, map[string]string, string) {
	t.Helper()
	l, b := serving(t, true)
	src, err := os.ReadFile(labConfig(t, "GREEncap"))
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "flows.hcl")
	if err := os.WriteFile(config, []byte(edit(reloadConfig(t, string(src), 0))), 0o644); err != nil {
		t.Fatal(err)
	}
	x, err := l.StartXLBD(l.LB(0), b["xlbd"], config, "-var", "interface="+l.LB(0).Iface)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = x.Stop() })
	return l, b, filepath.Join(l.Dir(), l.LB(0).Name+".admin.sock")
}

// waitFlows waits until every flow of s reached a backend, and returns
// each flow's backend.
func waitFlows(t *testing.T, s *stream) []string {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s.mu.Lock()
		seen := len(s.got)
		s.mu.Unlock()
		if seen == len(s.flows) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%d of %d flows reached a backend within 10s", seen, len(s.flows))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.flows))
	for flow, bes := range s.got {
		for be := range bes {
			out[flow] = be
		}
	}
	return out
}

// lookupOf asks the admin API where flow i of s goes.
func lookupOf(ctx context.Context, c *admin.Client, s *stream, i int) (admin.Lookup, error) {
	q := url.Values{"proto": {"udp"}, "src": {s.flows[i].LocalAddr().String()}, "dst": {s.flows[i].RemoteAddr().String()}}
	var l admin.Lookup
	err := c.Get(ctx, "/v1/lookup?"+q.Encode(), &l)
	return l, err
}

// TestLookupAgrees: 1,000 UDP flows (half IPv4, half IPv6, one datagram
// a second each) go through xlbd; for every one, `lookup` over the admin
// API names the backend that received it, and says ConnTrack holds it;
// `xlbctl lookup -o json`, run as a binary, agrees for a few. Then the
// metrics scraped over HTTP from -metrics-addr match the traffic sent
// (packets per backend, ConnTrack entries over the workers, no drop), and
// `xlbctl status` and `xlbctl backends` describe the lab's xlbd.
func TestLookupAgrees(t *testing.T) {
	const n = 1000
	l, b, sock := flowsLab(t, func(s string) string { return s })
	s := startStream(t, l, n)
	got := waitFlows(t, s)

	c := admin.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				lk, err := lookupOf(ctx, c, s, i)
				switch {
				case err != nil:
					errs <- fmt.Sprintf("flow %d: %v", i, err)
				case lk.Backend != got[i] || !lk.Tracked || lk.Selected.Backend != got[i] || !strings.HasPrefix(lk.Selected.VIP, "count"):
					errs <- fmt.Sprintf("flow %d %s reached %s; lookup says %+v", i, s.flows[i].LocalAddr(), got[i], lk)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	bad := 0
	for e := range errs {
		if bad++; bad <= 10 {
			t.Error(e)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d lookups disagree with where the packets went", bad, n)
	}
	for i := range 4 {
		out, err := exec.Command(b["xlbctl"], "-s", sock, "-o", "json", "lookup", "udp", s.flows[i].LocalAddr().String(), s.flows[i].RemoteAddr().String()).Output()
		var lk admin.Lookup
		if err != nil || json.Unmarshal(out, &lk) != nil || lk.Backend != got[i] {
			t.Errorf("xlbctl lookup of flow %d (to %s): %v\n%s", i, got[i], err, out)
		}
	}

	summary := s.stop(t)
	t.Log(summary)
	per := map[string]uint64{}
	s.mu.Lock()
	for _, bes := range s.got {
		for be, k := range bes {
			per[be] += k
		}
	}
	s.mu.Unlock()

	m := scrape(t, l)
	for _, be := range []string{"be1", "be2", "be3"} {
		if sent := m.sum("xlb_encap_backend_packets_total", "backend", be); sent != float64(per[be]) {
			t.Errorf("xlb_encap_backend_packets_total{backend=%q} = %v, the backend received %d", be, sent, per[be])
		}
	}
	if e := m.sum("xlb_conntrack_entries", "", ""); e != n || len(m.series("xlb_conntrack_entries")) == 0 {
		t.Errorf("xlb_conntrack_entries over the workers = %v, want %d: %v", e, n, m.series("xlb_conntrack_entries"))
	}
	if d := m.sum("xlb_drop_packets_total", "", ""); d != 0 {
		t.Errorf("xlb_drop_packets_total = %v: %v", d, m.series("xlb_drop_packets_total"))
	}

	out, err := exec.Command(b["xlbctl"], "-s", sock, "status").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "generation") || !strings.Contains(string(out), "workers") {
		t.Errorf("xlbctl status: %v\n%s", err, out)
	}
	out, err = exec.Command(b["xlbctl"], "-s", sock, "-o", "json", "backends", "count4").Output()
	var bs []admin.Backend
	if err != nil || json.Unmarshal(out, &bs) != nil || len(bs) != 3 {
		t.Fatalf("xlbctl backends count4: %v\n%s", err, out)
	}
	for _, x := range bs {
		if x.State != "up" || x.Health != "up" || x.Packets == 0 {
			t.Errorf("xlbctl backends count4: %+v", x)
		}
	}
}

// TestDrainSequenced: 24 UDP flows keep sending; `xlbctl drain` of the
// backend with the most of them, run as a binary, drains it and waits:
// 200 new HTTP connections avoid it, its flows keep reaching it (none
// moves), and once they stop (udp_timeout 2s) it reports "drained: 0
// flows", after progress lines that counted them.
func TestDrainSequenced(t *testing.T) {
	l, b, sock := flowsLab(t, func(s string) string {
		return strings.Replace(s, "capacity = 65536", "capacity = 65536\n    udp_timeout = \"2s\"", 1)
	})
	s := startStream(t, l, 24)
	got := waitFlows(t, s)
	count := map[string]int{}
	be := ""
	for _, x := range got {
		if count[x]++; be == "" || count[x] > count[be] {
			be = x
		}
	}

	drain := exec.Command(b["xlbctl"], "-s", sock, "drain", be, "--interval", "100ms", "--timeout", "30s")
	var out testenv.Buffer
	drain.Stdout, drain.Stderr = &out, &out
	if err := drain.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- drain.Wait() }()
	t.Cleanup(func() {
		_ = drain.Process.Kill()
	})
	for end := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "draining "+be); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("xlbctl drain %s printed no progress within 10s:\n%s", be, out.String())
		}
	}
	sum, err := l.RunClient(b["xlb-client"], "-url", "http://"+l.VIP().String()+"/", "-n", "200", "-c", "8")
	if err != nil || sum.OK != 200 || sum.Backends[be] != 0 {
		t.Errorf("new connections while %s drains: %+v %v", be, sum, err)
	}
	time.Sleep(500 * time.Millisecond)
	// s.stop fails the test when a flow reached two backends: none left
	// the drained one.
	t.Log(s.stop(t))
	stopped := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("xlbctl drain %s: %v\n%s", be, err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("xlbctl drain %s still waiting 20s after its flows stopped:\n%s", be, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := fmt.Sprintf("draining %s: %d flows after ", be, count[be])
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "applied: generation ") || !strings.HasPrefix(lines[1], want) ||
		!strings.HasPrefix(lines[len(lines)-1], "drained: 0 flows after ") {
		t.Errorf("xlbctl drain %s (%d flows) printed:\n%s", be, count[be], out.String())
	}
	t.Logf("drained %s (%d flows) %s after its flows stopped:\n%s", be, count[be], time.Since(stopped).Round(100*time.Millisecond), out.String())
}

// metricSet is a scrape: every sample by its series (name{labels}).
type metricSet map[string]float64

// scrape gets xlbd's metrics over HTTP from its -metrics-addr (the
// default, on the LB node's loopback), dialed in the node's namespace.
func scrape(t *testing.T, l *lab.Lab) metricSet {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = l.Do(l.LB(0).NS, func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://127.0.0.1:9810/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := metricSet{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// series returns the samples of metric name.
func (m metricSet) series(name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			out[k] = v
		}
	}
	return out
}

// sum adds the samples of name whose label has value ("" label: all).
func (m metricSet) sum(name, label, value string) float64 {
	var t float64
	for k, v := range m.series(name) {
		if label == "" || strings.Contains(k, label+"="+strconv.Quote(value)) {
			t += v
		}
	}
	return t
}
