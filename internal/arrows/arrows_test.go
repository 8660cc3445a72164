package arrows

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/xlbproject/xlb"

// deps returns the packages of this module that the packages matching
// patterns depend on, themselves included, and whether they use packages
// outside the module and the standard library.
func deps(t *testing.T, patterns ...string) (own []string, external []string) {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	args := append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, patterns...)
	out, err := exec.Command(gobin, args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == module || strings.HasPrefix(p, module+"/") {
			own = append(own, p)
		} else {
			external = append(external, p)
		}
	}
	return own, external
}

// Nothing under control/, hcl/ or plugins/ reaches an element: elements
// read control's snapshots, never the other way round.
func TestNoElementsBelowCmd(t *testing.T) {
	own, _ := deps(t, module+"/control/...", module+"/hcl/...", module+"/plugins/...")
	for _, p := range own {
		if p == module+"/elements" || strings.HasPrefix(p, module+"/elements/") {
			t.Errorf("%s is reached from control/, hcl/ or plugins/; only cmd/ and elements/ may import elements", p)
		}
	}
}

// control/ (the service model, health, snapshots, tables) reaches only
// itself and pipeline: not hcl, plugins, elements or cmd.
func TestControlBelowPlugins(t *testing.T) {
	own, _ := deps(t, module+"/control/...")
	for _, p := range own {
		if !strings.HasPrefix(p, module+"/control") && !strings.HasPrefix(p, module+"/pipeline") {
			t.Errorf("%s is reached from control/; control may import only control/... and pipeline", p)
		}
	}
}

// The engine and the table algorithm are leaves on the standard library.
func TestLeavesUseOnlyTheStandardLibrary(t *testing.T) {
	for _, leaf := range []string{"pipeline", "control/maglev"} {
		own, external := deps(t, module+"/"+leaf)
		for _, p := range append(own, external...) {
			if p != module+"/"+leaf {
				t.Errorf("%s imports %s; it must use only the standard library", leaf, p)
			}
		}
	}
}
