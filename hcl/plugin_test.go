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

// TestCheckable: a health_check block may go to its plugin when it and its
// method's plugin block have no error of their own, whatever the errors
// elsewhere in the file.
func TestCheckable(t *testing.T) {
	src := `
hash_seed = 1
variable "broken" {
  type    = number
  default = "x"
}
pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}
vip "v" {
  address = "192.0.2.1"
  pool    = "nowhere"
}
pool "p" {
  backend "b" {
    address = "not an address"
  }
  health_check "clean" {
    path = "/"
  }
  health_check "duration" {
    interval = "soon"
  }
  health_check "poisoned" {
    path = var.broken
  }
  health_check "badplugin" {}
  health_check "goodplugin" {
    rise = 2
  }
}
plugin "badplugin" {
  setting = null
}
plugin "goodplugin" {
  setting = 1
}
`
	f, diags := Load("c.hcl", []byte(src), Options{})
	if !diags.HasErrors() {
		t.Fatal("the file has errors")
	}
	want := map[string]bool{"clean": true, "duration": false, "poisoned": false, "badplugin": false, "goodplugin": true}
	for _, hc := range f.Service.Pools[0].HealthChecks {
		if got := f.Checkable(hc); got != want[hc.Method] {
			t.Errorf("health check %q: Checkable %v, want %v", hc.Method, got, want[hc.Method])
		}
	}
	if len(f.Plugins) != 1 || f.Plugins[0].Name != "goodplugin" {
		t.Errorf("plugins %+v, want goodplugin alone", f.Plugins)
	}
}
