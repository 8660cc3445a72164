package hcl

import "testing"

// TestReference checks that every attribute and block the loader takes is
// documented for docs/hcl.md, and nothing else.
func TestReference(t *testing.T) {
	ref, err := Reference()
	if err != nil {
		t.Fatal(err)
	}
	if len(ref.Blocks) != len(rootSchema.Blocks) {
		t.Fatalf("%d top-level blocks documented, want %d", len(ref.Blocks), len(rootSchema.Blocks))
	}
}
