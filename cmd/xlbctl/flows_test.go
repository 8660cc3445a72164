package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// flowDaemon serves a drain and then, for /v1/conntrack?backend=a, the
// counts of flows in turn (the last one repeated).
func flowDaemon(t *testing.T, counts ...string) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/backends/a/drain", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"applied": true, "generation": 8}`)
	})
	mux.HandleFunc("GET /v1/conntrack", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Query().Get("backend") != "a" {
			w.WriteHeader(404)
			io.WriteString(w, `{"error": "no backend"}`)
			return
		}
		n := counts[0]
		if len(counts) > 1 {
			counts = counts[1:]
		}
		io.WriteString(w, `{"workers": [{"worker": 0, "element": "ct", "entries": 9, "capacity": 1024}],
			"flows": [{"vip": "web", "backend": "a", "flows": `+n+`}, {"vip": "dns", "backend": "a", "flows": 0}]}`)
	})
	mux.HandleFunc("GET /v1/lookup", func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query(); q.Get("proto") != "tcp" || q.Get("src") != "[2001:db8::1]:4000" || q.Get("dst") != "192.0.2.10:80" {
			t.Errorf("lookup query %v", q)
		}
		io.WriteString(w, `{"proto": "tcp", "src": "[2001:db8::1]:4000", "dst": "192.0.2.10:80", "hash": "0x00000000000000ff",
			"selected": {"vip": "web", "backend": "b", "slot": 7, "table_size": 251},
			"workers": [{"worker": 0, "element": "ct", "held": true, "vip": "web", "backend": "a"}, {"worker": 1, "element": "ct", "held": false, "ignored": "idle"}],
			"backend": "a", "tracked": true}`)
	})
	mux.HandleFunc("POST /v1/plan", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Name, Text string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Text == "" {
			t.Errorf("plan request: %+v %v", req, err)
		}
		if strings.Contains(req.Text, "broken") {
			w.WriteHeader(400)
			io.WriteString(w, `{"error": "new.hcl: 1 error; nothing planned", "diagnostics": "Error: Unsupported argument\n  on new.hcl line 2:\n"}`)
			return
		}
		io.WriteString(w, `{"config": "`+req.Name+`", "against": "/etc/xlb/xlb.hcl as running (generation 8)", "health": "assumed",
			"old_hash_seed": 1, "new_hash_seed": 1, "flows_counted": true, "affected": [{"vip": "web", "flows": 5}],
			"vips": [{"name": "web", "action": "change", "old": {"address": "192.0.2.10", "protocol": "tcp", "ports": [80], "pool": "web", "table_size": 251, "backends": 2},
			  "new": {"address": "192.0.2.10", "protocol": "tcp", "ports": [80], "pool": "web", "table_size": 251, "backends": 1},
			  "moved_share": 0.5, "moved_slots": 125, "slots": 251,
			  "backends": [{"name": "a", "action": "remove", "old": {"address": "198.51.100.1", "weight": 1, "state": "up", "share": 0.5}}]}],
			"total": {"vips_changed": 1, "backends_removed": 1, "changed": true}}`)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return socket
}

// TestDrainWaits: drain reports the flows as they fall, a line per
// change, and the time they reached 0. A count that stays is repeated
// every 10 intervals, which a poll slowed by a loaded machine can reach:
// repeats of a line are not changes, so they are left out here.
func TestDrainWaits(t *testing.T) {
	sock := flowDaemon(t, "3", "3", "1", "0")
	out, errs, rc := xlbctl("-s", sock, "drain", "a", "--interval", "1ms")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		count, _, _ := strings.Cut(l, " after ")
		if len(lines) > 0 && strings.HasPrefix(lines[len(lines)-1], count+" after ") {
			continue
		}
		lines = append(lines, l)
	}
	if rc != 0 || len(lines) != 4 || lines[0] != "applied: generation 8" ||
		!strings.HasPrefix(lines[1], "draining a: 3 flows after ") || !strings.HasPrefix(lines[2], "draining a: 1 flows after ") ||
		!strings.HasPrefix(lines[3], "drained: 0 flows after ") {
		t.Errorf("rc %d\n%s%s", rc, out, errs)
	}
}

// TestDrainTimeout: flows that do not end make drain fail, saying how
// many remain; --no-wait only drains.
func TestDrainTimeout(t *testing.T) {
	sock := flowDaemon(t, "2")
	out, errs, rc := xlbctl("-s", sock, "drain", "a", "--interval", "5ms", "--timeout", "30ms")
	if rc != 1 || !strings.Contains(errs, "a still has 2 established flows after") || !strings.Contains(errs, "it stays drained") ||
		!strings.Contains(out, "draining a: 2 flows") {
		t.Errorf("rc %d\n%s%s", rc, out, errs)
	}
	out, errs, rc = xlbctl("-s", sock, "drain", "a", "--no-wait")
	if rc != 0 || out != "applied: generation 8\n" {
		t.Errorf("--no-wait: rc %d\n%s%s", rc, out, errs)
	}
}

func TestLookupAndConntrackTables(t *testing.T) {
	sock := flowDaemon(t, "4")
	out, errs, rc := xlbctl("-s", sock, "lookup", "tcp", "[2001:db8::1]:4000", "192.0.2.10:80")
	want := "field        value\n" +
		"flow         tcp [2001:db8::1]:4000 -> 192.0.2.10:80\n" +
		"hash         0x00000000000000ff\n" +
		"vip          web\n" +
		"new flows    b (slot 7 of 251)\n" +
		"worker 0 ct  holds it: a\n" +
		"worker 1 ct  not held (idle entry)\n" +
		"goes to      a (ConnTrack)\n"
	if rc != 0 || out != want {
		t.Errorf("lookup: rc %d\n%s%s\nwant\n%s", rc, out, errs, want)
	}
	out, errs, rc = xlbctl("-s", sock, "conntrack", "--backend", "a")
	want = "worker  element  entries  capacity  used\n" +
		"0       ct       9        1024      0.9%\n\n" +
		"vip  backend  flows\n" +
		"web  a        4\n" +
		"dns  a        0\n"
	if rc != 0 || out != want {
		t.Errorf("conntrack: rc %d\n%s%s\nwant\n%s", rc, out, errs, want)
	}
}

// TestPlan: xlbctl plan sends the file and prints the plan as xlbd plan
// does, with the established flows it moves; a broken file exits 1 with
// its diagnostics.
func TestPlan(t *testing.T) {
	sock := flowDaemon(t, "0")
	dir := t.TempDir()
	good, broken := filepath.Join(dir, "new.hcl"), filepath.Join(dir, "broken.hcl")
	if err := os.WriteFile(good, []byte("vip \"web\" {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte("broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, rc := xlbctl("-s", sock, "plan", good)
	for _, want := range []string{
		"xlbd plan: " + good + " against /etc/xlb/xlb.hcl as running (generation 8)\n",
		"    - a  removed (weight 1, 50.0% of new flows); its established flows are re-selected\n",
		"    established flows leaving their backend now: 5\n",
		"Established flows (ConnTrack, every worker) leaving their backend: 5.\n",
		"Largest move: VIP \"web\", 50.0% of its new flows go to another backend.\n",
	} {
		if rc != 0 || !strings.Contains(out, want) {
			t.Errorf("plan: rc %d, no %q in\n%s%s", rc, want, out, errs)
		}
	}
	_, errs, rc = xlbctl("-s", sock, "plan", broken)
	// The diagnostics first: the error line says they are printed above.
	if want := "Error: Unsupported argument\n  on new.hcl line 2:\nxlbctl: new.hcl: 1 error; nothing planned\n"; rc != 1 || errs != want {
		t.Errorf("plan of a broken file: rc %d\n%s\nwant\n%s", rc, errs, want)
	}
}
