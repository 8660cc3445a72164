package hcldoc

import (
	"bytes"
	"os"
	"testing"
)

// TestUpToDate fails when docs/hcl.md is not what the specs generate: an
// element, attribute, plugin setting or the template changed without the
// file being regenerated.
func TestUpToDate(t *testing.T) {
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/hcl.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/hcl.md is stale: it differs from what the element and plugin specs and internal/hcldoc/hcl.md.tmpl generate; run `%s` and commit the result", Command)
	}
}
