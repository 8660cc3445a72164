package hcl

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary files to Load. It must never panic; every
// diagnostic must carry a subject inside the file; Graph must be set
// exactly when there is no error, and then every element must configure.
func FuzzLoad(f *testing.F) {
	// The test files: a valid one and every error fixture.
	paths, _ := filepath.Glob("testdata/errors/*.hcl")
	for _, p := range append(paths, "testdata/valid.hcl") {
		src, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
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
