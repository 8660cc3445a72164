package hcl

import (
	"testing"
	"time"

	"github.com/xlbproject/xlb/pipeline"
)

const announceSrc = `hash_seed = 1
pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}
announce "bgp" {
  drain_time = "2s"
  local_as   = 65001
  neighbors = [
    { address = "10.90.2.1", peer_as = 65000 },
    { address = "fd00:90:2::1",
      peer_as = 65000 },
  ]
}
announce "quiet" {}
vip "web" {
  address = "192.0.2.10"
  pool    = "web"
  announce "bgp" {
    communities = ["65000:100"]
    med         = 10
  }
}
pool "web" {
  backend "a" {
    address = "198.51.100.1"
  }
}
`

func TestAnnounceBlocks(t *testing.T) {
	f, diags := Load("a.hcl", []byte(announceSrc), Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if len(f.Announcers) != 2 {
		t.Fatalf("announcers: %+v, want bgp and quiet", f.Announcers)
	}
	bgp, quiet := f.Announcers[0], f.Announcers[1]
	if bgp.Name != "bgp" || bgp.Path != "" || bgp.DrainTime != 2*time.Second {
		t.Errorf("bgp: name %q path %q drain %v, want bgp, the built-in, 2s", bgp.Name, bgp.Path, bgp.DrainTime)
	}
	const config = `{"local_as":65001,"neighbors":[{"address":"10.90.2.1","peer_as":65000},{"address":"fd00:90:2::1","peer_as":65000}]}`
	if string(bgp.Config) != config {
		t.Errorf("bgp config %s, want %s (drain_time is xlbd's)", bgp.Config, config)
	}
	if quiet.DrainTime != DefaultDrainTime || string(quiet.Config) != "{}" {
		t.Errorf("quiet: drain %v config %s, want the default and {}", quiet.DrainTime, quiet.Config)
	}
	at := func(r pipeline.Range) [2]int { return [2]int{r.Start.Line, r.Start.Column} }
	for path, want := range map[string][2]int{
		"neighbors":            {10, 3},
		"neighbors[0]":         {11, 5},
		"neighbors[1]":         {12, 5},
		"neighbors[1].peer_as": {13, 7},
		"neighbors[0].address": {11, 7},
	} {
		r, ok := bgp.AttrRange.Get(path)
		if !ok || at(r) != want {
			t.Errorf("AttrRange[%q] = %v (%v), want line:col %v", path, at(r), ok, want)
		}
	}
	vip := f.Service.VIPs[0]
	if len(vip.Announce) != 1 {
		t.Fatalf("vip announce: %+v", vip.Announce)
	}
	a := vip.Announce[0]
	if a.Announcer != "bgp" || string(a.ParamsJSON()) != `{"communities":["65000:100"],"med":10}` || !f.AnnounceCheckable(a) {
		t.Errorf("vip announce %q %s checkable %v", a.Announcer, a.ParamsJSON(), f.AnnounceCheckable(a))
	}
	if r := attrAt(a.AttrRange, "communities[0]"); at(r) != [2]int{21, 20} {
		t.Errorf("communities[0] at %v, want 21:20", at(r))
	}
}
