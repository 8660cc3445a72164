package hcl

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
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
}
