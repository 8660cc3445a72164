package hcl

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// nestCase is a file that nests one construct n times: prefix, n copies
// of open, mid, n copies of close, suffix. With MaxNesting levels
// available, the k-th copy of open crosses the limit at byte off of it.
type nestCase struct {
	name                             string
	prefix, open, mid, close, suffix string
	k, off                           int
}

// nestCases are the constructs that make hclsyntax's parser, evaluation or
// tree walks recurse once per level, each inside `locals { x = … }` (one
// level) unless its prefix says otherwise.
var nestCases = []nestCase{
	{name: "parentheses", open: "(", mid: "1", close: ")", k: MaxNesting, off: 0},
	{name: "tuples", open: "[", mid: "1", close: "]", k: MaxNesting, off: 0},
	{name: "objects", open: "{a = ", mid: "1", close: "}", k: MaxNesting, off: 0},
	{name: "function calls", open: "max(", mid: "1", close: ")", k: MaxNesting, off: 3},
	{name: "blocks", prefix: "\n", open: "b {\n", mid: "", close: "}\n", suffix: "\n", k: MaxNesting + 1, off: 2},
	{name: "quotes and interpolations", open: `"${`, mid: "1", close: `}"`, k: MaxNesting / 2, off: 1},
	{name: "heredocs", open: "<<E\n${", mid: "1", close: "}\nE\n", suffix: "\n", k: MaxNesting / 2, off: 4},
	{name: "template directives", prefix: `"`, open: "%{if true}", mid: "x", close: "%{endif}", suffix: `"`, k: MaxNesting - 1, off: 9},
	{name: "for directives", prefix: "<<E\n", open: "%{for v in [1]}", mid: "x", close: "%{endfor}", suffix: "\nE\n", k: MaxNesting - 1, off: 11},
	{name: "not", open: "!", mid: "true", k: MaxNesting, off: 0},
	{name: "negation", open: "-", mid: "1", k: MaxNesting, off: 0},
	{name: "conditional false results", open: "true ? 1 : ", mid: "0", k: MaxNesting, off: 5},
	{name: "conditional true results", open: "true ? ", mid: "1", close: " : 0", k: MaxNesting, off: 5},
	{name: "binary operators", open: "1 + ", mid: "1", k: MaxNesting, off: 2},
	{name: "comparisons", open: "1 == ", mid: "1", k: MaxNesting, off: 2},
	{name: "for expressions", open: "[for v in ", mid: "local.y", close: " : v]", k: MaxNesting, off: 0},
	{name: "for over lines", prefix: "{for k, v in {} : k => 1", open: "\n+ 1", mid: "", close: "", suffix: "}", k: MaxNesting - 1, off: 1},
	{name: "indexes", prefix: "local.y", open: "[local.i]", mid: "", k: MaxNesting - 1, off: 0},
	{name: "splats", prefix: "local.y", open: "[*]", mid: "", k: MaxNesting - 2, off: 1},
}

func (c nestCase) src(n int) []byte {
	var b bytes.Buffer
	body := c.prefix + strings.Repeat(c.open, n) + c.mid + strings.Repeat(c.close, n) + c.suffix
	if c.name == "blocks" {
		b.WriteString(body)
	} else {
		b.WriteString("locals {\n  x = " + body + "\n}\n")
	}
	return b.Bytes()
}

// at returns the byte offset where the k-th open starts.
func (c nestCase) at() int {
	head := "locals {\n  x = "
	if c.name == "blocks" {
		head = ""
	}
	return len(head) + len(c.prefix) + (c.k-1)*len(c.open) + c.off
}

// TestNestingLimit loads each construct nested 100,000 times, which
// overflowed the goroutine stack and ended the process, and checks the
// one diagnostic at the token that crosses MaxNesting; one level below the
// limit parses.
func TestNestingLimit(t *testing.T) {
	for _, c := range nestCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src := c.src(100000)
			_, diags := Load("deep.hcl", src, Options{})
			if len(diags) != 1 || diags[0].Summary != "Expression nested too deeply" {
				t.Fatalf("diagnostics: %.1000s", diags.Error())
			}
			s := diags[0].Subject
			if s == nil || s.Filename != "deep.hcl" || s.Start.Byte != c.at() {
				t.Fatalf("subject %v, want byte %d (%q)", s, c.at(), src[c.at():min(c.at()+10, len(src))])
			}
			line, col := lineCol(src, s.Start.Byte)
			if s.Start.Line != line || s.Start.Column != col {
				t.Errorf("subject at %d:%d, want %d:%d", s.Start.Line, s.Start.Column, line, col)
			}
			if !strings.Contains(diags[0].Detail, "1000 levels") {
				t.Errorf("detail %q does not name the limit", diags[0].Detail)
			}
			_, diags = Load("deep.hcl", c.src(c.k-1), Options{})
			for _, d := range diags {
				if d.Summary == "Expression nested too deeply" || strings.Contains(d.Summary, "Unbalanced") {
					t.Errorf("one level below the limit: %s", d.Error())
				}
			}
		})
	}
}

func lineCol(src []byte, off int) (int, int) {
	before := src[:off]
	return bytes.Count(before, []byte("\n")) + 1, off - bytes.LastIndexByte(before, '\n')
}

// TestNestingLimitEverywhere checks the other entry points that parse
// user text: xlbd fmt (Format) and -var and XLB_VAR_ values.
func TestNestingLimitEverywhere(t *testing.T) {
	deep := nestCases[0].src(100000)
	out, diags := Format("deep.hcl", deep)
	if !bytes.Equal(out, deep) || len(diags) != 1 || diags[0].Summary != "Expression nested too deeply" {
		t.Errorf("Format: %.500s", diags.Error())
	}
	value := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	src := []byte("hash_seed = 1\nvariable \"a\" {}\nvariable \"b\" { type = list(any) }\n")
	for _, opts := range []Options{
		{Vars: map[string]string{"a": value, "b": "[]"}},
		{EnvVars: map[string]string{"a": "1", "b": value}},
	} {
		_, diags := Load("vars.hcl", src, opts)
		found := false
		for _, d := range diags {
			found = found || d.Summary == "Invalid value for variable" && strings.Contains(d.Detail, "nested too deeply")
		}
		if !found {
			t.Errorf("%+v: %.1000s", opts, diags.Error())
		}
	}
}

func TestFileSizeLimit(t *testing.T) {
	src := bytes.Repeat([]byte("# comment\n"), MaxFileSize/10+1)
	_, diags := Load("big.hcl", src, Options{})
	if len(diags) != 1 || diags[0].Summary != "File too large" {
		t.Fatalf("diagnostics: %.1000s", diags.Error())
	}
	want := hcl.Pos{Line: MaxFileSize/10 + 1, Column: MaxFileSize%10 + 1, Byte: MaxFileSize}
	if s := diags[0].Subject; s == nil || s.Start != want {
		t.Errorf("subject %v, want %v", s, want)
	}
	if _, diags := Format("big.hcl", src); len(diags) != 1 || diags[0].Summary != "File too large" {
		t.Errorf("Format: %.1000s", diags.Error())
	}
	if diags := checkLimits(src[:MaxFileSize], "big.hcl", hcl.InitialPos); diags != nil {
		t.Errorf("a file of MaxFileSize bytes: %s", diags.Error())
	}
	// LoadFile reads no more than it needs to refuse a file.
	path := filepath.Join(t.TempDir(), "big.hcl")
	if err := os.WriteFile(path, append(src, src...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, diags := LoadFile(path, Options{}); len(diags) != 1 || diags[0].Summary != "File too large" {
		t.Errorf("LoadFile: %.1000s", diags.Error())
	}
}

// TestJSONDecodeDepth: jsondecode, which go-cty runs by recursion, refuses
// a document nested deeper than MaxNesting (a string of millions of
// brackets overflowed the stack); brackets inside JSON strings do not
// count.
func TestJSONDecodeDepth(t *testing.T) {
	doc := func(n int) string { return strings.Repeat("[", n) + `"[\"{"` + strings.Repeat("]", n) }
	load := func(n int) hcl.Diagnostics {
		src := "locals {\n  x = jsondecode(\"" + strings.ReplaceAll(strings.ReplaceAll(doc(n), `\`, `\\`), `"`, `\"`) + "\")\n}\n"
		_, diags := Load("json.hcl", []byte(src), Options{})
		return diags
	}
	found := false
	for _, d := range load(1000000) {
		found = found || d.Summary == "Invalid function argument" && strings.Contains(d.Detail, "nested deeper than 1000 levels")
	}
	if !found {
		t.Error("a deep document was not refused")
	}
	for _, d := range load(MaxNesting) {
		if d.Summary == "Invalid function argument" {
			t.Errorf("a document at the limit: %s", d.Error())
		}
	}
	if got := jsonDepth(`{"a": [1, {"b": "]]]"}], "c": "\"["}`); got != 3 {
		t.Errorf("jsonDepth = %d, want 3", got)
	}
}

// TestLocalsChain: locals that each nest the next build a value deeper
// than any one expression; the first local past MaxNesting is refused at
// its name, and those that use it are not reported again.
func TestLocalsChain(t *testing.T) {
	var b strings.Builder
	b.WriteString("locals {\n")
	const n = 3000
	for i := range n {
		fmt.Fprintf(&b, "  a%d = [local.a%d]\n", i, i+1)
	}
	fmt.Fprintf(&b, "  a%d = 1\n}\n", n)
	src := []byte(b.String())
	_, diags := Load("chain.hcl", src, Options{})
	var got []string
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			got = append(got, fmt.Sprintf("%d: %s", d.Subject.Start.Line, d.Summary))
		}
	}
	// a2999 is 1 deep, a(n-k) k deep: a1999, on line 2001, is the first
	// past 1000.
	want := []string{"1: Missing pipeline block", fmt.Sprintf("%d: Value nested too deeply", n-MaxNesting-1+2)}
	if !slices.Equal(got, want) {
		t.Errorf("errors %.5q, want %q", got, want)
	}
}

// TestPieces: a file parsed in pieces, cut wherever scanLimits allows
// (between top-level items, and between the items of a top-level block's
// body), gives the body and diagnostics of the whole file parsed at once;
// the cuts are the same whether quickScan or the lexer finds them.
func TestPieces(t *testing.T) {
	paths, _ := filepath.Glob("testdata/errors/*.hcl")
	files := map[string][]byte{}
	for _, p := range append(paths, "testdata/valid.hcl") {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = src
	}
	var w bytes.Buffer
	genPipeline(&w, testTypes, 50, false)
	for i := range 50 {
		fmt.Fprintf(&w, "\nvip \"v%d\" {\n  address = %q\n  ports   = [80, 443]\n  pool    = \"p\" # c\n}\n", i, addr(10, i))
	}
	w.WriteString("hash_seed = 2 # set twice: reported across pieces\n" + oneVIP)
	w.WriteString("pool \"q\" {\n  backend \"x\" { address = \"198.51.100.1\" }\n  backend \"x\" {\n    address = \"198.51.100.2\"\n  }\n  pools = []\n  pools = [\"p\"]\n} # end\n")
	w.WriteString("pool \"r\" {\n  pools = []\n  x = 1 }\n")
	files["generated.hcl"] = w.Bytes()
	// A long block last, closed at the end of the file.
	files["block-last.hcl"] = []byte("a = 1\npool \"p\" {\n  backend \"a\" { address = \"198.51.100.1\" }\n\n  pools = []\n}")
	for name, src := range files {
		segs, diags := scanLimits(src, name, hcl.InitialPos, 1)
		if diags.HasErrors() {
			continue // the nesting fixture
		}
		lexSegs, _ := lexScan(src, name, hcl.InitialPos, 1)
		if quick, ok := quickScan(src, name, hcl.InitialPos, 1); ok && !reflect.DeepEqual(quick, lexSegs) {
			t.Errorf("%s: quickScan cuts at %v, the lexer at %v", name, quick, lexSegs)
		}
		whole, wantDiags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		got, gotDiags := parsePieces(src, name, segs)
		if wantDiags.HasErrors() && !slices.ContainsFunc(wantDiags, func(d *hcl.Diagnostic) bool { return d.Summary == "Attribute redefined" }) {
			// Recovery from a syntax error may go on differently in a
			// piece than in the whole; the load stops either way.
			if !gotDiags.HasErrors() {
				t.Errorf("%s: no error in pieces for %s", name, wantDiags.Error())
			}
			continue
		}
		split := 0
		for _, s := range segs {
			split += len(s.body)
		}
		if len(segs) < 2 || (name == "generated.hcl" || name == "block-last.hcl") && split == 0 {
			t.Errorf("%s: %d segments, %d cuts in blocks", name, len(segs), split)
		}
		sortDiags(gotDiags)
		sortDiags(wantDiags)
		if !reflect.DeepEqual(got.Body, whole.Body) || !reflect.DeepEqual(gotDiags, wantDiags) {
			t.Errorf("%s: parsed in %d segments, body or diagnostics differ from the whole's: %v, want %v", name, len(segs), gotDiags, wantDiags)
		}
	}
}
