package control

import (
	"testing"
	"time"
)

// OnBuild hears of every batch of tables built, and of nothing when a
// snapshot reuses them all.
func TestOnBuild(t *testing.T) {
	c := New()
	var calls, tables int
	c.OnBuild(func(n int, took time.Duration) {
		calls++
		tables += n
		if took < 0 {
			t.Errorf("took %v", took)
		}
	})
	mustApply(t, c, manyVIPs(10, 4, 101))
	if calls != 1 || tables != 10 {
		t.Fatalf("first apply: %d calls for %d tables, want 1 for 10", calls, tables)
	}
	mustApply(t, c, manyVIPs(10, 4, 101))
	if calls != 1 {
		t.Fatalf("an unchanged reload called OnBuild (%d calls)", calls)
	}
	cfg := manyVIPs(10, 4, 101)
	cfg.Pools[3].Backends[2].Weight = 3
	mustApply(t, c, cfg)
	if calls != 2 || tables != 11 {
		t.Fatalf("a one-backend change: %d calls for %d tables, want 2 for 11", calls, tables)
	}
}
