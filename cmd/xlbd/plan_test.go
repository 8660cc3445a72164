package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control"
	xhcl "github.com/xlbproject/xlb/hcl"
)

// The pair: running.hcl, and new.hcl with web's be1 removed, be2
// reweighted 2 -> 4, be3 drained and be5 added (web4 and web6 share the
// pool), VIP api added, legacy removed and dns unchanged.
const (
	planRunning = "testdata/plan/running.hcl"
	planNew     = "testdata/plan/new.hcl"
	planGolden  = "testdata/plan/plan.golden"
)

func TestPlanGolden(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if rc := planCmd([]string{"-plugins=false", "-config", planNew, "-against", planRunning}, &stdout, &stderr); rc != 0 {
		t.Fatalf("xlbd plan exited %d:\n%s", rc, stderr.String())
	}
	if *update {
		if err := os.WriteFile(planGolden, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(planGolden)
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(want) {
		t.Errorf("xlbd plan printed:\n%s\nwant (%s; go test ./cmd/xlbd -run TestPlanGolden -args -update to refresh):\n%s", stdout.String(), planGolden, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// TestPlanJSON checks -o json against the tables the controller builds
// from each file, compared slot by slot here.
func TestPlanJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if rc := planCmd([]string{"-plugins=false", "-o", "json", "-config", planNew, "-against", planRunning}, &stdout, &stderr); rc != 0 {
		t.Fatalf("xlbd plan exited %d:\n%s", rc, stderr.String())
	}
	var out struct {
		Config, Against, Health string
		VIPs                    []struct {
			Name, Action string
			MovedShare   *float64 `json:"moved_share"`
			MovedSlots   int      `json:"moved_slots"`
			Slots        int
			Backends     []struct {
				Name, Action string
				Old, New     *struct {
					Weight uint32
					State  string
				}
			}
		}
		Total map[string]any
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("%v:\n%s", err, stdout.String())
	}
	if out.Config != planNew || out.Against != planRunning || out.Health == "" {
		t.Errorf("header: %q %q %q", out.Config, out.Against, out.Health)
	}
	old, cur := planTables(t, planRunning), planTables(t, planNew)
	actions := map[string]string{}
	for _, v := range out.VIPs {
		actions[v.Name] = v.Action
		if v.Action != control.ActionChange && v.Action != control.ActionNone {
			if v.MovedShare != nil {
				t.Errorf("%s (%s): moved_share %v", v.Name, v.Action, *v.MovedShare)
			}
			continue
		}
		moved := 0
		for i := range old[v.Name] {
			if old[v.Name][i] != cur[v.Name][i] {
				moved++
			}
		}
		if v.Slots != len(cur[v.Name]) || v.MovedSlots != moved || *v.MovedShare != float64(moved)/float64(v.Slots) {
			t.Errorf("%s: %d of %d slots moved (%v); counted %d of %d", v.Name, v.MovedSlots, v.Slots, *v.MovedShare, moved, len(cur[v.Name]))
		}
	}
	want := map[string]string{"api": "add", "dns": "none", "legacy": "remove", "web4": "change", "web6": "change"}
	if !maps.Equal(actions, want) {
		t.Errorf("VIP actions %v, want %v", actions, want)
	}
	for k, n := range map[string]float64{"vips_added": 1, "vips_removed": 1, "vips_changed": 2, "vips_unchanged": 1,
		"backends_added": 3, "backends_removed": 2, "backends_reweighted": 1, "backends_drained": 1} {
		if out.Total[k] != n {
			t.Errorf("total %s = %v, want %v", k, out.Total[k], n)
		}
	}
	if out.Total["changed"] != true {
		t.Errorf("total changed = %v", out.Total["changed"])
	}
}

// planTables are the Maglev tables a controller builds from the file at
// path, each slot as its backend's name.
func planTables(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, diags := xhcl.LoadFile(path, xhcl.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	c := control.New()
	if err := c.Apply(&f.Service); err != nil {
		t.Fatal(err)
	}
	s := c.Snapshot()
	out := map[string][]string{}
	for _, v := range s.VIPs {
		for _, id := range v.Table {
			out[v.Name] = append(out[v.Name], s.Reals.At(id).Backend)
		}
	}
	return out
}

func TestPlanInvalid(t *testing.T) {
	src, err := os.ReadFile(planNew)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	if err := os.WriteFile(bad, bytes.Replace(src, []byte(`weight  = 4`), []byte(`weight  = "four"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-config", bad, "-against", planRunning},
		{"-config", planNew, "-against", bad},
		{"-config", bad},
	} {
		var stdout, stderr bytes.Buffer
		if rc := planCmd(append([]string{"-plugins=false"}, args...), &stdout, &stderr); rc != 1 || stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q; want 1 and nothing", args, rc, stdout.String())
		}
		if !regexp.MustCompile(`bad\.hcl:\d+:\d+: error: `).MatchString(stderr.String()) {
			t.Errorf("%q: stderr has no file:line:col:\n%s", args, stderr.String())
		}
	}
}

func TestPlanExitCodes(t *testing.T) {
	for _, c := range []struct {
		args []string
		rc   int
	}{
		{[]string{"-config", planNew}, 0},
		{[]string{"-config", planNew, "-against", planRunning}, 0},
		{[]string{"-detailed-exitcode", "-config", planNew, "-against", planRunning}, 2},
		{[]string{"-detailed-exitcode", "-config", planRunning, "-against", planRunning}, 0},
		{[]string{"-detailed-exitcode", "-config", planRunning}, 2},
		{[]string{"-against", planRunning}, 2},
		{[]string{"-config", planNew, "-o", "yaml"}, 2},
		{[]string{"-config", planNew, "extra"}, 2},
	} {
		var stdout, stderr bytes.Buffer
		if rc := planCmd(append([]string{"-plugins=false"}, c.args...), &stdout, &stderr); rc != c.rc {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", c.args, rc, c.rc, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if rc := xlbd([]string{"help"}, &stdout, &stderr); rc != 0 || !strings.Contains(stdout.String(), "\n  plan -config NEW") {
		t.Errorf("help does not list plan:\n%s", stdout.String())
	}
}

// TestPlanSeedAndPipeline: a new hash_seed and a changed pipeline block
// are warned about at the top, the pipeline's changes located on stderr.
func TestPlanSeedAndPipeline(t *testing.T) {
	src, err := os.ReadFile(planRunning)
	if err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(t.TempDir(), "next.hcl")
	src = bytes.Replace(src, []byte("hash_seed = 20261121"), []byte("hash_seed = 1"), 1)
	src = bytes.Replace(src, []byte("capacity = 65536"), []byte("capacity = 1024"), 1)
	if err := os.WriteFile(next, src, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if rc := planCmd([]string{"-plugins=false", "-detailed-exitcode", "-config", next, "-against", planRunning}, &stdout, &stderr); rc != 2 {
		t.Fatalf("exit %d, want 2:\n%s", rc, stderr.String())
	}
	for _, want := range []string{"! hash_seed changes 20261121 -> 1", "ESTABLISHED flows too", "! the pipeline block changes", `~ vip "web4"`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	// legacy has one backend: no seed moves its flows.
	if strings.Contains(stdout.String(), `vip "legacy"`) {
		t.Errorf("legacy listed:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`next\.hcl:\d+:\d+: warning: Pipeline changes take effect at restart`).MatchString(stderr.String()) {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
