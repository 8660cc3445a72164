package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/admin"
)

const adminConfig = `hash_seed = 1
pipeline {
  element "TestIdle" "rx" {}
  element "Discard" "drop" {}
  connect = ["rx -> drop"]
}
pool "web" {
  backend "a" {
    address = "198.51.100.1"
  }
  backend "b" {
    address = "198.51.100.2"
  }
}
vip "web" {
  address = "192.0.2.10"
  protocol = "tcp"
  ports = [80]
  pool    = "web"
}
`

// TestRunAdmin runs xlbd with the admin API on a socket and asks it: the
// status, the VIPs, a drain applied (draining in /v1/backends, out of the
// table), a drain kept over a reload, a weight set, and bad requests
// refused while nothing changes; a second xlbd refuses the socket.
func TestRunAdmin(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.hcl")
	if err := os.WriteFile(path, []byte(adminConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "admin.sock")
	cmd := startRun(t, nil, "-admin-socket", sock, "-config", path, "-node", "lb1")
	stderr := &cmd.stderr
	waitUntil(t, "the admin API listening", stderr, func() bool { return strings.Contains(stderr.String(), "admin API listening") })
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode %v, want a socket of 0660", fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o750 {
		t.Errorf("socket directory: %v %v, want 0750", di.Mode(), err)
	}

	ctx := context.Background()
	c := admin.NewClient(sock)
	var st admin.Status
	if err := c.Get(ctx, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Node != "lb1" || st.Config != path || st.Generation == 0 || len(st.ConfigDigest) != 64 || st.Workers != 1 ||
		len(st.Version) == 0 || !strings.HasPrefix(st.Version[0], "xlbd ") {
		t.Errorf("status: %+v", st)
	}
	var vips []admin.VIP
	if err := c.Get(ctx, "/v1/vips", &vips); err != nil {
		t.Fatal(err)
	}
	if len(vips) != 1 || vips[0].Name != "web" || vips[0].Pool != "web" || vips[0].Backends != 2 || vips[0].Protocol != "tcp" {
		t.Fatalf("vips: %+v", vips)
	}
	digest := vips[0].TableDigest

	var res admin.Result
	if err := c.Post(ctx, "/v1/backends/a/drain", nil, &res); err != nil || !res.Applied || res.Generation <= st.Generation {
		t.Fatalf("drain: %+v %v", res, err)
	}
	drained := func(what string) {
		t.Helper()
		var bs []admin.Backend
		if err := c.Get(ctx, "/v1/backends?vip=web", &bs); err != nil {
			t.Fatal(err)
		}
		if len(bs) != 2 || bs[0].Backend != "a" || bs[0].State != "draining" || bs[1].State != "up" {
			t.Errorf("%s: backends %+v, want a draining and b up", what, bs)
		}
		if err := c.Get(ctx, "/v1/vips", &vips); err != nil {
			t.Fatal(err)
		}
		if vips[0].Backends != 1 || vips[0].TableDigest == digest {
			t.Errorf("%s: vips %+v, want one backend in a new table", what, vips)
		}
	}
	drained("after the drain")

	// A reload keeps the override.
	if err := c.Post(ctx, "/v1/reload", nil, &res); err != nil || !res.Applied {
		t.Fatalf("reload: %+v %v", res, err)
	}
	drained("after a reload")
	gen := res.Generation

	for _, bad := range []struct {
		path, body, want string
		code             int
	}{
		{"/v1/backends/nope/drain", "", `unknown backend "nope"`, 400},
		{"/v1/backends/b/weight", `{"weight": `, "malformed JSON", 400},
		{"/v1/backends/b/weight", `{"weight": -1}`, "bad weight -1", 400},
		{"/v1/backends/b/weight", `{"weight": 1.5}`, "bad weight 1.5", 400},
		{"/v1/nothing", "", "not found", 404},
	} {
		var body any
		if bad.body != "" {
			body = []byte(bad.body)
		}
		err := c.Post(ctx, bad.path, body, nil)
		var ae *admin.APIError
		if !errors.As(err, &ae) || ae.Code != bad.code || !strings.Contains(ae.Body.Error, bad.want) {
			t.Errorf("POST %s %s: %v, want %d %q", bad.path, bad.body, err, bad.code, bad.want)
		}
	}
	if err := c.Get(ctx, "/v1/reload", nil); err == nil || err.(*admin.APIError).Code != 405 {
		t.Errorf("GET /v1/reload: %v, want a 405", err)
	}
	if err := c.Get(ctx, "/v1/status", &st); err != nil || st.Generation != gen {
		t.Errorf("bad requests changed the generation: %d, was %d (%v)", st.Generation, gen, err)
	}

	if err := c.Post(ctx, "/v1/backends/b/weight", map[string]any{"weight": 7}, &res); err != nil || !res.Applied {
		t.Fatalf("weight: %+v %v", res, err)
	}
	var bs []admin.Backend
	if err := c.Get(ctx, "/v1/backends", &bs); err != nil || len(bs) != 2 || bs[1].Weight != 7 || bs[1].Override == nil {
		t.Errorf("after the weight: %+v %v", bs, err)
	}

	second := exec.Command(os.Args[0], "run", "-pin=false", "-admin-socket", sock, "-config", path)
	second.Env = append(os.Environ(), asXLBD+"=1")
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another xlbd answers on "+sock) {
		t.Errorf("a second xlbd on the socket: %v\n%s", err, out)
	}
	if _, err := net.DialTimeout("unix", sock, time.Second); err != nil {
		t.Errorf("the first xlbd's socket after the second gave up: %v", err)
	}
}
