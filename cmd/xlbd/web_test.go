package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/internal/testenv"
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
    "sel.out -> ct.learn", "sel.nobackend -> drop", "encap.out -> tx", "encap.icmp -> tx", "encap.bad -> drop"]`, 1)
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
	// The capture is replayed when every packet of it, and every packet
	// an element emitted (a held fragment sent on), left the graph.
	want := uint64(pcapPackets(t, examplePcap))
	waitUntil(t, "the capture replayed", &c.stderr, func() bool {
		var cs admin.Counters
		if err := cl.Get(context.Background(), "/v1/counters", &cs); err != nil {
			return false
		}
		var ended, emitted uint64
		for _, e := range cs.Elements {
			ended += e.Consumed + e.Dropped
			emitted += e.Emitted
		}
		return ended == want+emitted
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
	if len(edges) != 11 {
		t.Fatalf("%d edges with counts, want 11:\n%s", len(edges), dot)
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

// TestStatusPage opens the status page of a running xlbd in headless
// Chromium: its rows are the API's values (status, VIPs, backends,
// drops), with rates once it read twice; a drain through the API shows on
// the page without a reload; a stopped xlbd is said. The page logs no
// error (a script or style the page's Content-Security-Policy refused
// would be one).
func TestStatusPage(t *testing.T) {
	chromium := testenv.RequireTool(t, "chromium")
	c, base, cl := startTCP(t)
	api := context.Background()

	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.UserDataDir(t.TempDir()))...)
	defer cancel()
	browser, cancel := chromedp.NewContext(alloc)
	defer cancel()
	var console testenv.Buffer
	messages := chromedp.Console(browser)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				fmt.Fprintln(&console, m.String())
			}
		}
	}()
	if err := chromedp.Do(browser, chromedp.Navigate(base+"/?refresh=0.5")); err != nil {
		t.Fatal(err)
	}
	// The browser lives as long as browser; each step has its own limit.
	run := func(expr string, out any) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
		if err == nil {
			err = json.Unmarshal(v, out)
		}
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
	}
	poll := func(what, expr string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			var body string
			run("document.body.innerText", &body)
			t.Fatalf("the page: not %s: %v\n%s", what, err, body)
		}
	}
	// Twice read: the rates are there.
	poll("read twice", "document.body.dataset.updates >= 2")

	const rows = `(sel => [...document.querySelectorAll(sel + " tbody tr")].map(tr => Object.fromEntries([...tr.cells].map(td => [td.dataset.field, td.textContent]))))`
	var st admin.Status
	if err := cl.Get(api, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	var status map[string]string
	run(`Object.fromEntries([...document.querySelectorAll("#status td")].map(td => [td.dataset.field, td.textContent]))`, &status)
	if status["node"] != "lb1" || status["generation"] != fmt.Sprint(st.Generation) || status["config"] != st.Config ||
		status["version"] != st.Version[0] || !strings.HasPrefix(st.ConfigDigest, status["config_digest"]) || status["workers"] != "1" {
		t.Errorf("status on the page %v, the API's %+v", status, st)
	}
	backends := func() []map[string]string {
		var bs []admin.Backend
		if err := cl.Get(api, "/v1/backends", &bs); err != nil {
			t.Fatal(err)
		}
		var out []map[string]string
		for _, b := range bs {
			out = append(out, map[string]string{"vip": b.VIP, "backend": b.Backend, "address": b.Address, "state": b.State,
				"health": b.Health, "weight": fmt.Sprint(b.Weight), "packets": fmt.Sprint(b.Packets), "bytes": fmt.Sprint(b.Bytes)})
		}
		return out
	}
	// Only the fields the API has; the rates are the page's.
	pageBackends := func() []map[string]string {
		var page []map[string]string
		run(rows+`("#backends")`, &page)
		for _, r := range page {
			delete(r, "override")
			delete(r, "pps")
			delete(r, "bps")
		}
		return page
	}
	want := backends()
	if got := pageBackends(); !reflect.DeepEqual(got, want) {
		t.Errorf("backends on the page:\n%v\nthe API's:\n%v", got, want)
	}
	var sent uint64
	for _, b := range want {
		n, _ := strconv.ParseUint(b["packets"], 10, 64)
		sent += n
	}
	if sent == 0 {
		t.Error("no traffic on any backend")
	}
	var page []map[string]string
	run(rows+`("#backends")`, &page)
	for _, r := range page {
		if r["pps"] != "0.0" || r["bps"] != "0.0" {
			t.Errorf("rates of %v, want 0.0 once the traffic stopped", r)
		}
	}

	var vips []admin.VIP
	if err := cl.Get(api, "/v1/vips", &vips); err != nil {
		t.Fatal(err)
	}
	run(rows+`("#vips")`, &page)
	if len(page) != len(vips) {
		t.Fatalf("%d VIPs on the page, %d in the API", len(page), len(vips))
	}
	for i, v := range vips {
		var packets uint64
		for _, b := range want {
			if b["vip"] == v.Name {
				n, _ := strconv.ParseUint(b["packets"], 10, 64)
				packets += n
			}
		}
		if r := page[i]; r["name"] != v.Name || r["address"] != v.Address || r["backends"] != fmt.Sprint(v.Backends) || r["packets"] != fmt.Sprint(packets) {
			t.Errorf("VIP on the page %v, the API's %+v with %d packets", r, v, packets)
		}
	}

	var cs admin.Counters
	if err := cl.Get(api, "/v1/counters", &cs); err != nil {
		t.Fatal(err)
	}
	run(rows+`("#drops")`, &page)
	if len(page) != len(cs.Drops) || len(page) == 0 {
		t.Fatalf("drops on the page %v, the API's %+v", page, cs.Drops)
	}
	for i, d := range cs.Drops {
		if r := page[i]; r["element"] != d.Element || r["reason"] != d.Reason || r["packets"] != fmt.Sprint(d.Packets) {
			t.Errorf("drop on the page %v, the API's %+v", r, d)
		}
	}

	// A drain shows without a reload: the mark set in the page stays.
	run(`window.xlbMark = 1`, new(int))
	var res admin.Result
	if err := cl.Post(api, "/v1/backends/web-1/drain", nil, &res); err != nil || !res.Applied {
		t.Fatalf("drain: %+v %v", res, err)
	}
	poll("showing web-1 drained", fmt.Sprintf(`document.body.dataset.generation == "%d" && window.xlbMark === 1 &&
		document.querySelector('#backends tr[data-vip="web4"][data-backend="web-1"] td[data-field=state]').textContent == "draining"`, res.Generation))
	want = backends()
	if got := pageBackends(); !reflect.DeepEqual(got, want) {
		t.Errorf("backends on the page after the drain:\n%v\nthe API's:\n%v", got, want)
	}
	if console.Len() > 0 {
		t.Errorf("the page logged errors:\n%s", console.String())
	}

	// A stopped xlbd is said; the last answer stays.
	_ = c.Process.Kill()
	_ = c.Wait()
	poll("saying xlbd does not answer", `!document.getElementById("error").hidden &&
		document.getElementById("error").textContent.startsWith("xlbd is not answering") && document.querySelectorAll("#backends tbody tr").length > 0`)
}
