package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// asXLBCTL in the environment makes the test binary run as xlbctl.
const asXLBCTL = "XLBCTL_TEST_AS_XLBCTL"

func TestMain(m *testing.M) {
	if os.Getenv(asXLBCTL) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// fakeDaemon serves canned answers on a socket in a new directory and
// records the writes it gets.
func fakeDaemon(t *testing.T) (socket string, posts *[]string) {
	t.Helper()
	dir := t.TempDir()
	socket = filepath.Join(dir, "admin.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	posts = new([]string)
	mux := http.NewServeMux()
	canned := func(path, body string) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) })
	}
	canned("/v1/status", `{"version": ["xlbd v1.2.3"], "node": "lb1", "generation": 7, "config": "/etc/xlb/xlb.hcl", "workers": 2, "uptime_seconds": 61, "shards": ["a", "c"],
		"cluster": {"checked": true, "agree": true, "withdrawn": false, "nodes": [
			{"node": "lb1", "revision": "9", "config_digest": "0123456789ab", "state": "self", "shards": ["a", "c"]},
			{"node": "lb2", "revision": "9", "config_digest": "0123456789ab", "state": "agrees"}],
		"problems": ["VIP dns names shard b, which no live node serves: no node serves the VIP"]}}`)
	canned("/v1/graph", "digraph xlb {\n\t\"rx\" -> \"drop\" [taillabel=\"out\", headlabel=\"in\", label=\"5\"];\n}\n")
	// The n-th read of the counters: rx sent 100n packets, drop dropped 10n.
	var reads atomic.Uint64
	mux.HandleFunc("GET /v1/counters", func(w http.ResponseWriter, _ *http.Request) {
		n := reads.Add(1)
		fmt.Fprintf(w, `{"elements": [{"Name": "rx", "Type": "TestIdle", "Out": [{"Port": "out", "Packets": %d}]},
			{"Name": "drop", "Type": "Discard", "In": [{"Port": "in", "Packets": %d}], "Dropped": %d}],
			"drops": [{"element": "drop", "reason": "discard", "packets": %d}]}`, 100*n, 100*n, 10*n, 10*n)
	})
	canned("/v1/backends", `[{"vip": "web", "backend": "a", "address": "198.51.100.1", "weight": 1, "state": "draining", "health": "up", "packets": 3, "bytes": 300, "override": {"drain": true}}]`)
	canned("/v1/routes", `[{"announcer": "bgp", "routes": 2, "in_sync": true, "sends": 3, "last_error": "", "sessions": [{"peer": "10.0.0.1", "state": "established", "up": true, "prefixes": 2}, {"peer": "10.0.0.2", "state": "active", "up": false, "prefixes": 0}]}]`)
	mux.HandleFunc("POST /v1/backends/{name}/{action}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*posts = append(*posts, r.URL.Path+" "+string(b))
		if r.PathValue("name") != "a" {
			w.WriteHeader(400)
			io.WriteString(w, `{"error": "unknown backend \"x\""}`)
			return
		}
		io.WriteString(w, `{"applied": true, "generation": 8}`)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return socket, posts
}

func xlbctl(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	rc := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), rc
}

func TestOutput(t *testing.T) {
	sock, posts := fakeDaemon(t)
	out, errs, rc := xlbctl("-s", sock, "status")
	if rc != 0 || !strings.Contains(out, "generation     7") || !strings.Contains(out, "version        xlbd v1.2.3") || !strings.Contains(out, "uptime         1m1s") ||
		!strings.Contains(out, "shards         a, c\n") ||
		!strings.Contains(out, "  lb1          self, revision 9, shards a, c\n") || !strings.Contains(out, "  lb2          agrees, revision 9, every VIP\n") ||
		!strings.Contains(out, "  problem      VIP dns names shard b, which no live node serves: no node serves the VIP\n") {
		t.Errorf("status: rc %d\n%s%s", rc, out, errs)
	}
	out, errs, rc = xlbctl("-s", sock, "backends")
	want := "vip  backend  address       weight  state     health  packets  bytes  override\n" +
		"web  a        198.51.100.1  1       draining  up      3        300    drain=true\n"
	if rc != 0 || out != want {
		t.Errorf("backends: rc %d\n%s%s\nwant\n%s", rc, out, errs, want)
	}
	out, _, rc = xlbctl("-s", sock, "-o", "json", "backends")
	var bs []map[string]any
	if err := json.Unmarshal([]byte(out), &bs); rc != 0 || err != nil || len(bs) != 1 || bs[0]["packets"] != 3.0 {
		t.Errorf("backends -o json: rc %d %v\n%s", rc, err, out)
	}
	out, errs, rc = xlbctl("-s", sock, "weight", "a", "5")
	if rc != 0 || out != "applied: generation 8\n" || len(*posts) != 1 || (*posts)[0] != "/v1/backends/a/weight {\"weight\":5}" {
		t.Errorf("weight: rc %d %q %s %q", rc, out, errs, *posts)
	}
	_, errs, rc = xlbctl("-s", sock, "drain", "x")
	if rc != 1 || errs != "xlbctl: unknown backend \"x\"\n" {
		t.Errorf("drain x: rc %d %q", rc, errs)
	}
	_, errs, rc = xlbctl("-s", sock, "weight", "a", "1.5")
	if rc != 1 || !strings.Contains(errs, `weight "1.5": want an integer`) || len(*posts) != 2 {
		t.Errorf("weight a 1.5: rc %d %q %q", rc, errs, *posts)
	}
	_, errs, rc = xlbctl("-s", sock, "-o", "yaml", "status")
	if rc != 1 || !strings.Contains(errs, "want table or json") {
		t.Errorf("-o yaml: rc %d %q", rc, errs)
	}
}

// TestRoutesSessions: routes shows each announcer, then each of its
// sessions with its state and the prefixes announced on it.
func TestRoutesSessions(t *testing.T) {
	sock, _ := fakeDaemon(t)
	out, errs, rc := xlbctl("-s", sock, "routes")
	want := "announcer  routes  in_sync  sends  last_error\n" +
		"bgp        2       true     3      \n" +
		"\n" +
		"announcer  peer      state        prefixes\n" +
		"bgp        10.0.0.1  established  2\n" +
		"bgp        10.0.0.2  active       0\n"
	if rc != 0 || out != want {
		t.Errorf("routes: rc %d\n%s%s\nwant\n%s", rc, out, errs, want)
	}
}

func TestNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	_, errs, rc := xlbctl("-s", sock, "status")
	if want := "xlbctl: xlbd is not running (no socket at " + sock + "): start it, or pass -s\n"; rc != 1 || errs != want {
		t.Errorf("rc %d %q, want %q", rc, errs, want)
	}
	// A socket file left by a daemon that died.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, errs, rc := xlbctl("-s", sock, "status"); rc != 1 || !strings.Contains(errs, "xlbd is not running") {
		t.Errorf("stale socket: rc %d %q", rc, errs)
	}
	// Over TCP: a port nothing listens on (a listener closed).
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + tl.Addr().String()
	tl.Close()
	if _, errs, rc := xlbctl("-s", url, "status"); rc != 1 || errs != "xlbctl: xlbd is not answering on "+url+": start it with -admin-listen, or pass -s\n" {
		t.Errorf("%s: rc %d %q", url, rc, errs)
	}
	if _, errs, rc := xlbctl("-s", sock, "--tls-ca", "ca.pem", "status"); rc != 1 || !strings.Contains(errs, "need -s https://HOST:PORT") {
		t.Errorf("--tls-ca with a socket: rc %d %q", rc, errs)
	}
}

// TestPermissionDenied runs xlbctl as nobody against a socket of mode
// 0660 owned by root.
func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run xlbctl as another user")
	}
	sock, _ := fakeDaemon(t)
	if err := os.Chmod(sock, 0o660); err != nil {
		t.Fatal(err)
	}
	// The test binary where nobody may run it, and the socket where it
	// may look: only the socket's mode refuses it.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(sock)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "xlbctl")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-s", sock, "status")
	cmd.Env = append(os.Environ(), asXLBCTL+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	want := "xlbctl: permission denied on " + sock + ": run as root, or join the admin socket's group (xlbd run -admin-group)\n"
	if err == nil || string(out) != want {
		t.Errorf("%v %q, want %q", err, out, want)
	}
}

// TestComplete: a backend argument completes with the daemon's backend
// names, the second argument with nothing.
func TestComplete(t *testing.T) {
	sock, _ := fakeDaemon(t)
	out, errs, rc := xlbctl("-s", sock, "__complete", "drain", "")
	if rc != 0 || !strings.HasPrefix(out, "a\n:4\n") {
		t.Errorf("drain completion: rc %d %q %q", rc, out, errs)
	}
	if out, _, _ := xlbctl("-s", sock, "__complete", "drain", "a", ""); strings.HasPrefix(out, "a\n") {
		t.Errorf("second argument completed: %q", out)
	}
}

// TestBackendsSNATColumn: the backends table has a snat_ports column when a
// VIP has SNAT ranges, "-" for the backends of VIPs without.
func TestBackendsSNATColumn(t *testing.T) {
	var out strings.Builder
	raw := `[{"vip": "mail", "backend": "m", "address": "198.51.100.9", "weight": 1, "state": "up", "health": "unchecked"},
		{"vip": "web", "backend": "a", "address": "198.51.100.1", "weight": 1, "state": "up", "health": "up", "snat": "3024-4023"}]`
	if err := backendsTable(&out, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	want := "vip   backend  address       weight  state  health     packets  bytes  override  snat_ports\n" +
		"mail  m        198.51.100.9  1       up     unchecked  0        0      -         -\n" +
		"web   a        198.51.100.1  1       up     up         0        0      -         3024-4023\n"
	if out.String() != want {
		t.Errorf("got\n%swant\n%s", out.String(), want)
	}
}
