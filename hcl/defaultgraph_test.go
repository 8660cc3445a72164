package hcl

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// defaultGraphFile declares the default graph's instance names over the
// test element types and connects them with %s.
const defaultGraphFile = `
hash_seed = 1
pipeline {
  element "TestSource" "rx" {}
  element "TestParse" "parse" {}
  element "TestTable" "ct" {}
  element "TestSelect" "sel" {}
  element "TestEncap" "encap" {}
  element "TestSink" "tx" { file = "out" }
  element "TestDrop" "drop" {}
  element "TestSink" "extra" { file = "extra" }
  element "TestSource" "rx2" {}
  connect = %s
}
`

// TestDefaultGraph: default_graph() is the default graph's chains, written
// out or extended with concat, and a file that lacks one of its elements
// is told which.
func TestDefaultGraph(t *testing.T) {
	conns := func(connect string) ([]string, string) {
		f, diags := Load("g.hcl", fmt.Appendf(nil, defaultGraphFile, connect), Options{})
		var got []string
		if f != nil {
			for _, c := range f.Spec.Connections {
				got = append(got, c.From.String()+" -> "+c.To.String())
			}
		}
		var msgs []string
		for _, d := range diags {
			msgs = append(msgs, d.Error())
		}
		return got, strings.Join(msgs, "\n")
	}
	want := []string{"rx -> parse", "parse -> ct", "ct.hit -> encap", "encap -> tx", "encap.icmp -> tx", "ct.miss -> sel", "sel -> ct.learn",
		"parse.bad -> drop", "sel.nobackend -> drop", "encap.bad -> drop"}
	written, _ := conns(`["` + strings.Join(defaultGraph, `", "`) + `", "rx2 -> extra"]`)
	got, diags := conns(`concat(default_graph(), ["rx2 -> extra"])`)
	if !slices.Equal(got, append(want, "rx2 -> extra")) || !slices.Equal(got, written) || diags != "" {
		t.Errorf("concat(default_graph(), ...): %v (%s)\nwritten out: %v\nwant %v", got, diags, written, want)
	}

	var kept []string
	for _, line := range strings.Split(fmt.Sprintf(defaultGraphFile, "default_graph()"), "\n") {
		if !strings.Contains(line, `"sel"`) && !strings.Contains(line, `"extra"`) && !strings.Contains(line, `"rx2"`) {
			kept = append(kept, line)
		}
	}
	src := strings.Join(kept, "\n")
	_, d := Load("g.hcl", []byte(src), Options{})
	if len(d) != 3 {
		t.Fatalf("default_graph() without sel: %v, want the three connections that name sel reported", d)
	}
	for _, d := range d {
		if d.Summary != "Unknown element" || !strings.Contains(d.Detail, `No element named "sel" is declared`) ||
			string(d.Subject.SliceBytes([]byte(src))) != "default_graph()" {
			t.Errorf("default_graph() without sel: %v", d)
		}
	}
}
