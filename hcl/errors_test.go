package hcl

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// expectRE matches the markers in testdata/errors: each offending line
// carries "# ERROR: <summary>" (or WARNING), possibly several.
var expectRE = regexp.MustCompile(`#\s*(ERROR|WARNING):\s*([^#\n]*[^#\s])`)

type expectation struct {
	line     int
	severity hcl.DiagnosticSeverity
	summary  string
}

func (e expectation) String() string {
	sev := "ERROR"
	if e.severity == hcl.DiagWarning {
		sev = "WARNING"
	}
	return fmt.Sprintf("line %d: %s: %s", e.line, sev, e.summary)
}

// TestErrorFixtures loads each testdata/errors/*.hcl and checks that the
// diagnostics are exactly the marked ones: every diagnostic on a line that
// names its summary, and every marker answered, all from a single load.
func TestErrorFixtures(t *testing.T) {
	paths, err := filepath.Glob("testdata/errors/*.hcl")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var want []expectation
			for i, line := range strings.Split(string(src), "\n") {
				for _, m := range expectRE.FindAllStringSubmatch(line, -1) {
					sev := hcl.DiagError
					if m[1] == "WARNING" {
						sev = hcl.DiagWarning
					}
					want = append(want, expectation{i + 1, sev, m[2]})
				}
			}
			f, diags := Load(path, src, Options{})
			if f == nil {
				t.Fatal("Load returned a nil File")
			}
			if diags.HasErrors() && f.Graph != nil {
				t.Error("Graph is set although there are errors")
			}
			for _, d := range diags {
				if d.Subject == nil || d.Subject.Filename != path {
					t.Errorf("diagnostic without a subject in %s: %s: %s", path, d.Summary, d.Detail)
					continue
				}
				got := expectation{d.Subject.Start.Line, d.Severity, d.Summary}
				i := indexOf(want, got)
				if i < 0 {
					t.Errorf("unexpected diagnostic %v (%s)", got, d.Detail)
					continue
				}
				want = append(want[:i], want[i+1:]...)
				if d.Detail == "" || !strings.HasSuffix(d.Detail, ".") {
					t.Errorf("%v: detail %q is not a full sentence", got, d.Detail)
				}
			}
			for _, w := range want {
				t.Errorf("missing diagnostic %v", w)
			}
			if t.Failed() {
				for _, d := range diags {
					t.Logf("got: %s", d.Error())
				}
			}
		})
	}
}

func indexOf(es []expectation, e expectation) int {
	for i, x := range es {
		if x == e {
			return i
		}
	}
	return -1
}
