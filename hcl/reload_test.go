package hcl

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestPipelineChanges: a pipeline block that differs from the running one
// is one warning naming each difference, located at the first one in the
// new file; the same pipeline (also written differently, with a default
// spelt out) is none.
func TestPipelineChanges(t *testing.T) {
	const base = `
hash_seed = 1
variable "cap" {
  default = 100
}
pipeline {
  workers = 2
  element "TestSource" "rx" {}
  element "TestTable" "ct" {
    capacity = var.cap
    timeout  = "30s"
  }
  element "TestSelect" "sel" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> ct.lookup", "ct.hit -> drop", "ct.miss -> sel -> ct.learn", "sel.nobackend -> drop"]
}
`
	load := func(src string, vars map[string]string) *File {
		t.Helper()
		f, diags := Load("p.hcl", []byte(src), Options{Vars: vars})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		return f
	}
	running := load(base, nil)
	same := strings.Replace(base, `    timeout  = "30s"`+"\n", "", 1) // the default
	if d := PipelineChanges(running, load(same, nil)); d != nil {
		t.Errorf("the same pipeline: %v", d)
	}
	changed := strings.NewReplacer(
		"workers = 2", "workers = 0",
		`element "TestSelect" "sel" {}`, `element "TestSelect" "sel" {
    weight = 2
  }
  element "TestParse" "parse" {}`,
		`element "TestDrop" "drop" {}`, `element "TestSink" "drop" {
    file = "x"
  }`,
		`"rx -> ct.lookup"`, `"rx -> parse -> ct.lookup", "parse.bad -> drop"`,
	).Replace(base)
	d := PipelineChanges(running, load(changed, map[string]string{"cap": "200"}))
	if len(d) != 1 || d[0].Severity != hcl.DiagWarning || d[0].Summary != "Pipeline changes take effect at restart" {
		t.Fatalf("diagnostics %v, want one warning", d)
	}
	for _, want := range []string{
		"element `ct` (TestTable): capacity 100 → 200",
		"element `sel` (TestSelect): weight 1 → 2",
		"element `parse` (TestParse) added",
		"element `drop` changed type from TestDrop to TestSink",
		"connection rx -> parse added",
		"connection parse.bad -> drop added",
		"connection rx -> ct.lookup removed",
		"workers changed from 2 to 0 (one per RX queue)",
		"restart xlbd to run the new pipeline",
	} {
		if !strings.Contains(d[0].Detail, want) {
			t.Errorf("warning lacks %q: %s", want, d[0].Detail)
		}
	}
	if s := d[0].Subject; s == nil || s.Start.Line != 9 {
		t.Errorf("warning at %v, want line 9 (ct, the first change)", s)
	}
	removed := strings.Replace(strings.Replace(base, `  element "TestSelect" "sel" {}`+"\n", "", 1),
		`"ct.miss -> sel -> ct.learn", "sel.nobackend -> drop"`, `"ct.miss -> ct.learn"`, 1)
	d = PipelineChanges(running, load(removed, nil))
	if len(d) != 1 || !strings.Contains(d[0].Detail, "element `sel` (TestSelect) removed") ||
		!strings.Contains(d[0].Detail, "connection ct.miss -> ct.learn added") {
		t.Errorf("removing an element: %v", d)
	}
}
