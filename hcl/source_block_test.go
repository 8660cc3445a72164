package hcl

import (
	"strings"
	"testing"
)

// sourceMain is a main file with two config sources (one using a local)
// and a VIP whose pool lives in a source: not a whole configuration alone.
const sourceMain = `hash_seed = 1
locals {
  prefix = "/xlb/services/"
}
pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}
source "file" {
  paths    = ["services.d"]
  debounce = "200ms"
}
source "etcd" {
  path      = "bin/etcd-source"
  endpoints = ["http://127.0.0.1:2379"]
  prefix    = local.prefix
}
vip "web" {
  address = "192.0.2.10"
  pool    = "in-etcd"
}
`

// TestSourceBlocks: source blocks are decoded as announce blocks are,
// relative paths against the file's directory; SourcesOnly decodes them
// from a main file that is not a whole configuration alone, and the whole
// load finds the missing pool.
func TestSourceBlocks(t *testing.T) {
	f, diags := Load("/etc/xlb/main.hcl", []byte(sourceMain), Options{SourcesOnly: true})
	if diags.HasErrors() {
		t.Fatalf("SourcesOnly: %v", diags)
	}
	if len(f.Sources) != 2 {
		t.Fatalf("sources %+v, want file and etcd", f.Sources)
	}
	file, etcd := f.Sources[0], f.Sources[1]
	if file.Name != "file" || file.Path != "" || string(file.Config) != `{"debounce":"200ms","paths":["services.d"]}` {
		t.Errorf("file: %+v", file)
	}
	if etcd.Name != "etcd" || etcd.Path != "/etc/xlb/bin/etcd-source" ||
		string(etcd.Config) != `{"endpoints":["http://127.0.0.1:2379"],"prefix":"/xlb/services/"}` {
		t.Errorf("etcd: path %q config %s", etcd.Path, etcd.Config)
	}
	if r := attrAt(etcd.AttrRange, "endpoints"); r.Start.Line != 16 || r.Start.Column != 3 {
		t.Errorf("etcd endpoints at %d:%d, want 16:3", r.Start.Line, r.Start.Column)
	}
	if f.Graph != nil || len(f.Service.VIPs) != 0 {
		t.Error("SourcesOnly decoded more than the source blocks")
	}
	whole, diags := Load("/etc/xlb/main.hcl", []byte(sourceMain), Options{})
	if !strings.Contains(diags.Error(), `in-etcd`) || len(whole.Sources) != 2 {
		t.Errorf("the whole file alone: %d sources, %v; want the unknown pool", len(whole.Sources), diags)
	}
	whole, diags = LoadSources("/etc/xlb/main.hcl", []byte(sourceMain), []Fragment{{Name: "etcd:/xlb/services/pool",
		Src: []byte("pool \"in-etcd\" {\n  backend \"a\" {\n    address = \"198.51.100.1\"\n  }\n}\n")}}, Options{})
	if diags.HasErrors() || len(whole.Sources) != 2 {
		t.Errorf("with its fragment: %d sources, %v", len(whole.Sources), diags)
	}
}

// TestSourceBlockErrors: every problem of a source block is placed at
// file:line:col, also when only the source blocks are loaded; a fragment
// cannot declare a source.
func TestSourceBlockErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"duplicate", "source \"file\" {}\nsource \"file\" {}\n",
			[]string{`m.hcl:2:8: error: Duplicate source`, `already declared at m.hcl:1:1`}},
		{"name of a plugin", "plugin \"file\" {\n  path = \"/bin/x\"\n}\nsource \"file\" {}\n",
			[]string{`m.hcl:4:8: error: Name used twice`, `taken by the block at m.hcl:1:1`}},
		{"name of an announcer", "announce \"x\" {}\nsource \"x\" {}\n", []string{`m.hcl:2:8: error: Name used twice`}},
		{"bad checksum", "source \"etcd\" {\n  path = \"/bin/x\"\n  sha256 = \"00\"\n}\n", []string{`m.hcl:3:3: error: Invalid checksum`}},
		{"unknown variable", "source \"etcd\" {\n  prefix = var.nope\n}\n", []string{`m.hcl:2:12: error: Unknown variable`}},
		{"no label", "source {}\n", []string{`m.hcl:1:8: error: Missing name for source`}},
	} {
		for _, only := range []bool{true, false} {
			f, diags := Load("m.hcl", []byte(tc.src), Options{SourcesOnly: only})
			var b strings.Builder
			_ = WriteDiagnostics(&b, f.Files(), diags)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("%s (SourcesOnly %v): lacks %q:\n%s", tc.name, only, w, b.String())
				}
			}
		}
	}
	_, _, out := loadSources(t, Fragment{Name: "etcd:/xlb/x", Src: []byte("source \"file\" {}\n")})
	wantPrinted(t, out, "etcd:/xlb/x:1:1: error: Not allowed in a config source", `1 | source "file" {}`)
}
