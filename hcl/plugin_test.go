package hcl

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPluginPathAbsolute: a plugin path written relative (a bare name, or
// "./name") in a file in the current directory is resolved against that
// directory to an absolute path: exec must never look it up on $PATH.
func TestPluginPathAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, path, want string }{
		{"main.hcl", "redis-check", filepath.Join(wd, "redis-check")},
		{"main.hcl", "./redis-check", filepath.Join(wd, "redis-check")},
		{"conf/main.hcl", "bin/redis-check", filepath.Join(wd, "conf/bin/redis-check")},
		{"/etc/xlb/main.hcl", "../lib/check", "/etc/lib/check"},
		{"/etc/xlb/main.hcl", "/usr/lib/xlb/check", "/usr/lib/xlb/check"},
	} {
		src := "hash_seed = 1\npipeline {\n  element \"TestSource\" \"rx\" {}\n  element \"TestDrop\" \"drop\" {}\n  connect = [\"rx -> drop\"]\n}\n" +
			"plugin \"redis\" {\n  path = \"" + tc.path + "\"\n}\n"
		f, diags := Load(tc.file, []byte(src), Options{})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if got := f.Plugins[0].Path; got != tc.want {
			t.Errorf("%s: path %q is %q, want %q", tc.file, tc.path, got, tc.want)
		}
	}
}
