package snapshot

import (
	"fmt"
	"testing"
)

func testReals(n int) []Real {
	rs := make([]Real, n)
	for i := range rs {
		rs[i] = Real{ID: uint32(i), Epoch: 1, Backend: fmt.Sprintf("b%d", i)}
	}
	return rs
}

// An Editor copies the chunks it writes to and shares the others with the
// reals it started from, which it leaves as they were.
func TestRealsEditShares(t *testing.T) {
	old := MakeReals(testReals(5 * RealChunk))
	e := old.Edit(5 * RealChunk)
	e.Set(2*RealChunk+7, Real{ID: 2*RealChunk + 7, Epoch: 2, Backend: "new"})
	e.Set(2*RealChunk+8, Real{})
	cur := e.Done()
	for k := range cur.Chunks() {
		if shared := cur.Chunk(k) == old.Chunk(k); shared != (k != 2) {
			t.Errorf("chunk %d shared %v, want %v", k, shared, k != 2)
		}
	}
	if r := old.At(2*RealChunk + 7); r.Backend != fmt.Sprint("b", 2*RealChunk+7) || r.Epoch != 1 {
		t.Errorf("the old reals changed: %+v", r)
	}
	if r := cur.At(2*RealChunk + 7); r.Backend != "new" || r.Epoch != 2 {
		t.Errorf("the new real: %+v", r)
	}
	if r := cur.At(2*RealChunk + 8); r.Epoch != 0 {
		t.Errorf("a cleared real: %+v", r)
	}
	if r := cur.At(2*RealChunk + 9); r.Backend != fmt.Sprint("b", 2*RealChunk+9) {
		t.Errorf("a real copied with its chunk: %+v", r)
	}
}

// Growing adds IDs without reals; shrinking drops the reals at and above
// the new length, also in a shared last chunk, which is then copied.
func TestRealsEditLength(t *testing.T) {
	old := MakeReals(testReals(RealChunk + 10))
	grown := old.Edit(3*RealChunk + 1).Done()
	if grown.Len() != 3*RealChunk+1 || grown.Chunks() != 4 || grown.Chunk(0) != old.Chunk(0) || grown.Chunk(1) != old.Chunk(1) {
		t.Fatalf("grown: %d reals in %d chunks", grown.Len(), grown.Chunks())
	}
	for _, id := range []uint32{RealChunk + 10, 2 * RealChunk, 3 * RealChunk} {
		if r := grown.At(id); r.Epoch != 0 {
			t.Errorf("grown: ID %d holds %+v", id, r)
		}
	}
	shrunk := old.Edit(RealChunk + 3).Done()
	if shrunk.Len() != RealChunk+3 || shrunk.Chunk(1) == old.Chunk(1) || shrunk.Chunk(0) != old.Chunk(0) {
		t.Fatalf("shrunk: %d reals, last chunk shared %v", shrunk.Len(), shrunk.Chunk(1) == old.Chunk(1))
	}
	if shrunk.At(RealChunk+2).Epoch != 1 || shrunk.At(RealChunk+3).Epoch != 0 || old.At(RealChunk+3).Epoch != 1 {
		t.Errorf("shrunk: reals beyond the length kept, or the old reals changed")
	}
	n := 0
	for id, r := range shrunk.All() {
		if id != uint32(n) || r != shrunk.At(id) {
			t.Fatalf("All: ID %d at %d", id, n)
		}
		n++
	}
	if n != shrunk.Len() {
		t.Errorf("All yields %d reals, want %d", n, shrunk.Len())
	}
	s := New(1, 0, nil, nil)
	if s.Reals.Len() != 0 || s.Real(0, 1) != nil {
		t.Errorf("a snapshot without reals has %d", s.Reals.Len())
	}
}
