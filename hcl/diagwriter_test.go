package hcl

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func TestWriteDiagnostics(t *testing.T) {
	src := "a = 1\n\tbad = \"x\"\n"
	f := &hcl.File{Bytes: []byte(src)}
	diags := hcl.Diagnostics{
		{Severity: hcl.DiagError, Summary: "Unsupported argument", Detail: "Remove it.",
			Subject: &hcl.Range{Filename: "f.hcl", Start: hcl.Pos{Line: 2, Column: 2}, End: hcl.Pos{Line: 2, Column: 5}}},
		{Severity: hcl.DiagWarning, Summary: "hash_seed not set"},
	}
	var b strings.Builder
	if err := WriteDiagnostics(&b, map[string]*hcl.File{"f.hcl": f}, diags); err != nil {
		t.Fatal(err)
	}
	want := "f.hcl:2:2: error: Unsupported argument\n" +
		"    2 | \tbad = \"x\"\n" +
		"      | \t^^^\n" +
		"   Remove it.\n\n" +
		"warning: hash_seed not set\n\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}
}
