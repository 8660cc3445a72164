package pipeline

import "testing"

// TestNewContexts: each worker has its own Context, index and drop
// counter; what Shared holds is one object for all of them.
func TestNewContexts(t *testing.T) {
	cs := NewContexts("rx", 2, nil)
	if len(cs) != 2 || cs[0].Worker != 0 || cs[1].Worker != 1 || cs[1].Workers != 2 {
		t.Fatalf("contexts %+v", cs)
	}
	a := cs[0].Shared("k", func() any { return new(int) })
	b := cs[1].Shared("k", func() any { return new(int) })
	if a != b {
		t.Error("the workers' Contexts do not share what Shared holds")
	}
	if cs[0].DropCounter() == cs[1].DropCounter() {
		t.Error("the workers share one drop counter")
	}
	if cs[0].Local("l", func() any { return new(int) }) == cs[1].Local("l", func() any { return new(int) }) {
		t.Error("the workers share what Local holds")
	}
}
