package hcl

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// FuzzLoad feeds arbitrary files to Load. It must never panic; every
// diagnostic must carry a subject inside the file; Graph must be set
// exactly when there is no error, and then every element must configure.
func FuzzLoad(f *testing.F) {
	addTestFiles(f)
	// The smallest valid file.
	f.Add([]byte("hash_seed = 1\npipeline {\n  element \"TestSource\" \"a\" {}\n  element \"TestDrop\" \"b\" {}\n  connect = [\"a -> b\"]\n}\n"))
	// A connect list that is not written out, so ranges cover the whole expression.
	f.Add([]byte("hash_seed = 1\nlocals { c = [\"a -> b\"] }\npipeline {\n  element \"TestSource\" \"a\" {}\n  element \"TestDrop\" \"b\" {}\n  connect = local.c\n}\n"))
	// Escapes and interpolation inside a chain string.
	f.Add([]byte("pipeline {\n  element \"TestSource\" \"a\" {}\n  connect = [\"a \\u002d> ${\"b\"}.x\"]\n}\n"))
	// A local referring to itself, used everywhere.
	f.Add([]byte("locals { x = local.x }\nhash_seed = local.x\npipeline { workers = local.x }\nvip \"v\" { address = local.x }\n"))
	// Heredoc, for expression and function calls.
	f.Add([]byte("locals {\n  s = <<EOT\nrx -> tx\nEOT\n  l = [for p in range(3) : p * 2]\n}\nhash_seed = max(local.l...)\n"))
	// Non-ASCII text in a chain and an attribute.
	f.Add([]byte("pipeline {\n  element \"TestSource\" \"é\" { file = \"ü.pcap\" }\n  connect = [\"é -> ü\"]\n}\n"))

	f.Fuzz(func(t *testing.T, src []byte) {
		const name = "fuzz.hcl"
		file, diags := Load(name, src, Options{})
		if file == nil {
			t.Fatal("nil File")
		}
		for _, d := range diags {
			if d.Summary == "" {
				t.Errorf("diagnostic without a summary: %#v", d)
			}
			s := d.Subject
			if s == nil || s.Filename != name {
				t.Fatalf("diagnostic %q without a subject in %s: %v", d.Summary, name, s)
			}
			if s.Start.Byte < 0 || s.Start.Byte > s.End.Byte || s.End.Byte > len(src) || s.Start.Line < 1 {
				t.Fatalf("diagnostic %q has subject %#v outside the %d-byte file", d.Summary, s, len(src))
			}
		}
		if diags.HasErrors() != (file.Graph == nil) {
			t.Fatalf("errors %v but Graph %v: %s", diags.HasErrors(), file.Graph != nil, diags.Error())
		}
		if file.Graph != nil {
			for _, d := range file.Spec.Elements {
				if err := d.Configure(newOf(t, d.Type)); err != nil {
					t.Fatalf("element %s: Configure after a clean load: %v", d.Name, err)
				}
			}
		}
	})
}

// FuzzQuickTokens checks quickTokens against hclsyntax's lexer: whenever it
// reads a text, its tokens are the lexer's, less quoted text and the end
// of file, with the same types, text and ends. The limits and the pieces
// that files are parsed in rest on this.
func FuzzQuickTokens(f *testing.F) {
	addTestFiles(f)
	for _, s := range []string{
		// Numbers: dots and exponents inside, never last.
		"a = 1.2.3 + 1..2 - 1.e5 * 1e+5 / 1E-5 % 1e\nb = 1. c\nd = [1...]\ne = 1ee5 1e+ 1.x",
		// Names with dashes and digits; operators of two and three characters.
		"a-1 = a - 1 -a b_2-c\nx = a==b != c <= d >= e && f || g => h :: i ... !j\ny = a&b|c<d>e=f!g?h:i",
		// Comments, at the end of the file too; CRLF.
		"# c\r\na = 1 // d\r\n/ / x\n#e",
		"a = 1 # no newline at the end",
		// Strings: escapes, lone $ and %, empty.
		`a = "x\"y" "\\" "$" "%" "a$b%c" "" "\t"` + "\n",
		// What quickTokens leaves to the lexer.
		"a = \"${x}\"\n", "a = \"%{if x}y%{endif}\"\n", "a = <<EOT\nx\nEOT\n", "/* c */ a = 1\n",
		"a = \"é\"\n", "a = \"x\ny\"\n", "a ~ b; c @ d $ e\n", "a = \"\\\n\"", "a = 1 <<< 2\n", "a\rb\n",
		// Brackets and blocks.
		"vip \"v\" {\n  ports = [80, 443]\n  x = {a = 1, b = [for k, v in m : k => v if v]}\n  f = max(local.a[0]...)\n}\n",
	} {
		f.Add([]byte(s))
	}
	type token struct {
		ty   hclsyntax.TokenType
		text string
		end  int
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		var quick []token
		if !quickTokens(src, func(ty hclsyntax.TokenType, text []byte, end int) bool {
			quick = append(quick, token{ty, string(text), end})
			return true
		}) {
			return
		}
		tokens, _ := hclsyntax.LexConfig(src, "f.hcl", hcl.InitialPos)
		var lexed []token
		for _, tok := range tokens {
			if tok.Type != hclsyntax.TokenQuotedLit && tok.Type != hclsyntax.TokenEOF {
				lexed = append(lexed, token{tok.Type, string(tok.Bytes), tok.Range.End.Byte})
			}
		}
		if !slices.Equal(quick, lexed) {
			t.Fatalf("quickTokens read %q as\n%v\nthe lexer as\n%v", src, quick, lexed)
		}
	})
}

// addTestFiles seeds f with the test files: a valid one and every error
// fixture.
func addTestFiles(f *testing.F) {
	paths, _ := filepath.Glob("testdata/errors/*.hcl")
	for _, p := range append(paths, "testdata/valid.hcl") {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
}
