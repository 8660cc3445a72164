package control

import (
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
)

// TestSetHealth: many changes are one publication; no change is none;
// unknown backends are reported while the known ones apply.
func TestSetHealth(t *testing.T) {
	c := New()
	s1 := mustApply(t, c, webConfig("web-a", "web-b", "web-c"))
	if err := c.SetHealth(map[string]bool{"web-a": true, "web-b": true}); err != nil || c.Snapshot() != s1 {
		t.Fatalf("SetHealth(no change) = %v; it must not republish", err)
	}
	if err := c.SetHealth(map[string]bool{"web-a": false, "web-b": false, "web-c": true}); err != nil {
		t.Fatal(err)
	}
	s2 := c.Snapshot()
	if s2.Generation != s1.Generation+1 {
		t.Fatalf("generation %d, want %d: one publication for the batch", s2.Generation, s1.Generation+1)
	}
	for _, name := range []string{"web-a", "web-b"} {
		if r := realOf(s2, "web", name); r.State != snapshot.Down {
			t.Fatalf("%s: %+v, want Down", name, r)
		}
	}
	for _, name := range tableNames(s2, vipOf(t, s2, "web")) {
		if name != "web-c" {
			t.Fatalf("table holds %q, want only web-c", name)
		}
	}
	err := c.SetHealth(map[string]bool{"nope": false, "web-a": true})
	if err == nil {
		t.Fatal("SetHealth with an unknown backend: want an error")
	}
	if s3 := c.Snapshot(); s3.Generation != s2.Generation+1 || realOf(s3, "web", "web-a").State != snapshot.Up {
		t.Fatalf("the known backend must still apply: generation %d", s3.Generation)
	}
}
