package hcl

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFormat(t *testing.T) {
	cases := []struct{ in, want string }{
		{ // indentation, spaces around "=", aligned equals signs
			"pipeline {\nworkers=1\n    element \"TestTable\" \"ct\" {\n capacity   =  65536\n  timeout=\"30s\"\n}\n}\n",
			"pipeline {\n  workers = 1\n  element \"TestTable\" \"ct\" {\n    capacity = 65536\n    timeout  = \"30s\"\n  }\n}\n",
		},
		{ // lists, calls, attribute access, negation and subtraction (a-1 is one name)
			"x = [ 1,2 ,3 ]\ny = max( 1 , -2 )\nz = var.a  -1\nv = a-1\nw = local . b [ 0 ]\n",
			"x = [1, 2, 3]\ny = max(1, -2)\nz = var.a - 1\nv = a-1\nw = local.b[0]\n",
		},
		{ // trailing comments aligned; strings and their spaces untouched
			"a = \"x  y\" # one\nbbb = \"${ var.z }\"   # two\n",
			"a   = \"x  y\"     # one\nbbb = \"${var.z}\" # two\n",
		},
		{ // single-line blocks, empty blocks, multi-line lists
			"backend \"b\" {address=\"198.51.100.1\"}\nelement \"D\" \"d\" {   }\nconnect = [\n\"a -> b\",\n    \"b -> c\",\n]\n",
			"backend \"b\" { address = \"198.51.100.1\" }\nelement \"D\" \"d\" {}\nconnect = [\n  \"a -> b\",\n  \"b -> c\",\n]\n",
		},
		{ // heredocs keep their text
			"x = <<EOT\n  keep   this\nEOT\n",
			"x = <<EOT\n  keep   this\nEOT\n",
		},
	}
	for _, tc := range cases {
		out, diags := Format("t.hcl", []byte(tc.in))
		if len(diags) > 0 {
			t.Fatalf("%q: %s", tc.in, diags.Error())
		}
		got := string(out)
		if got != tc.want {
			t.Errorf("Format(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
		if again, _ := Format("t.hcl", out); string(again) != got {
			t.Errorf("Format is not idempotent on %q: %q", got, again)
		}
	}
}

// TestFormatFixtures checks that the test files are formatted and that
// formatting a file keeps its meaning (the same diagnostics at the same
// lines).
func TestFormatFixtures(t *testing.T) {
	paths, _ := filepath.Glob("testdata/errors/*.hcl")
	paths = append(paths, "testdata/valid.hcl")
	for _, path := range paths {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := Format(path, src)
		if string(out) != string(src) {
			t.Errorf("%s is not formatted:\n%s", path, out)
		}
		_, d1 := Load(path, src, Options{})
		_, d2 := Load(path, out, Options{})
		if len(d1) != len(d2) {
			t.Errorf("%s: %d diagnostics before formatting, %d after", path, len(d1), len(d2))
		}
	}
}

func TestFormatSyntaxError(t *testing.T) {
	src := []byte("a = = 1\n")
	out, diags := Format("bad.hcl", src)
	if !diags.HasErrors() || string(out) != string(src) {
		t.Errorf("Format of a broken file: %q, %v", out, diags)
	}
	if diags[0].Subject == nil || diags[0].Subject.Filename != "bad.hcl" {
		t.Errorf("diagnostic subject %v", diags[0].Subject)
	}
}
