package hcl

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

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

// TestWriteDiagnosticsCap: past 100 diagnostics, one line counts the rest.
func TestWriteDiagnosticsCap(t *testing.T) {
	src := strings.Repeat("x = 1\n", 300)
	var diags hcl.Diagnostics
	for i := range 250 {
		sev := hcl.DiagError
		if i >= 240 {
			sev = hcl.DiagWarning
		}
		r := hcl.Range{Filename: "f.hcl", Start: hcl.Pos{Line: i + 1, Column: 1, Byte: 6 * i}, End: hcl.Pos{Line: i + 1, Column: 2, Byte: 6*i + 1}}
		diags = append(diags, &hcl.Diagnostic{Severity: sev, Summary: "Bad", Detail: "Fix it.", Subject: &r})
	}
	var b strings.Builder
	if err := WriteDiagnostics(&b, map[string]*hcl.File{"f.hcl": {Bytes: []byte(src)}}, diags); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if n := strings.Count(out, ": error: Bad\n"); n != 100 || !strings.Contains(out, "f.hcl:100:1: error: Bad\n") {
		t.Errorf("%d errors printed, want the first 100", n)
	}
	want := "... and 140 errors and 10 warnings more, not shown: only the first 100 diagnostics are printed; fix these and run again.\n"
	if !strings.HasSuffix(out, want) {
		t.Errorf("output ends with %q, want %q", out[max(0, len(out)-200):], want)
	}
}

// TestWriteSnippetWindow: a long line is cut to a window around the
// subject, and carets line up under non-ASCII text.
func TestWriteSnippetWindow(t *testing.T) {
	var line strings.Builder
	line.WriteString("  ports = [")
	for i := 1; i <= 65535; i++ {
		fmt.Fprintf(&line, "%d, ", i)
	}
	src := "vip \"é\" {\n" + line.String() + "]\n}\n"
	at := strings.Index(src, " 40000,") + 1
	r := hcl.Range{Filename: "f.hcl", Start: hcl.Pos{Line: 2, Column: at - 10 + 1, Byte: at}, End: hcl.Pos{Line: 2, Column: at - 10 + 6, Byte: at + 5}}
	var b strings.Builder
	if err := WriteDiagnostics(&b, map[string]*hcl.File{"f.hcl": {Bytes: []byte(src)}}, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Bad", Subject: &r}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	shown, carets := []rune(lines[1]), []rune(lines[2])
	if len(shown) > snippetWidth+20 {
		t.Errorf("a line of %d runes printed for a subject in a long line", len(shown))
	}
	i := strings.IndexRune(string(carets), '^')
	if i < 0 || !strings.HasPrefix(string(shown[utf8.RuneCountInString(string(carets[:i])):]), "40000,") ||
		!strings.HasSuffix(string(carets), "^^^^^") || strings.Count(lines[2], "^") != 5 {
		t.Errorf("carets do not underline 40000:\n%s\n%s", lines[1], lines[2])
	}
	if !strings.Contains(lines[1], "…") {
		t.Errorf("no mark where the line is cut: %s", lines[1])
	}

	src = "x = \"éé\" bad\n"
	at = strings.Index(src, "bad")
	r = hcl.Range{Filename: "f.hcl", Start: hcl.Pos{Line: 1, Column: 10, Byte: at}, End: hcl.Pos{Line: 1, Column: 13, Byte: at + 3}}
	b.Reset()
	if err := WriteDiagnostics(&b, map[string]*hcl.File{"f.hcl": {Bytes: []byte(src)}}, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Bad", Subject: &r}}); err != nil {
		t.Fatal(err)
	}
	if want := "    1 | x = \"éé\" bad\n      |          ^^^\n"; !strings.Contains(b.String(), want) {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
