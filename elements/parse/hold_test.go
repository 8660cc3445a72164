package parse

import (
	"bytes"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// newHoldHarness is Parse5Tuple in a graph (so it has an Emitter) with
// a hold of slots fragments for 5 ms.
func newHoldHarness(t *testing.T, slots int) *pipelinetest.Harness {
	return pipelinetest.New(t, "Parse5Tuple", pipelinetest.Options{
		Values: snapshot.ContextValues(snapshot.NewStore(snapshot.New(1, testSeed, nil, nil))),
		Configure: func(el pipeline.Element) error {
			el.(*Parse5Tuple).FragHold = slots
			el.(*Parse5Tuple).FragHoldTime = "5ms"
			return nil
		}})
}

// holdStats returns the element's hold counters and its late drops by
// reason.
func holdStats(h *pipelinetest.Harness) map[string]uint64 {
	m := map[string]uint64{}
	for _, x := range h.Stats().Metrics {
		switch {
		case x.Name == pipeline.DropMetric:
			m[x.Labels[len(x.Labels)-1].Value] = x.Value
		case x.Name == "xlb_parse_fragment_hold_held_total", x.Name == "xlb_parse_fragment_hold_released_total":
			m[x.Name[len("xlb_parse_fragment_hold_"):]] = x.Value
		}
	}
	return m
}

// TestFragHold: a later fragment before its first is held, and sent on,
// byte for byte and with the first's flow and hash, ahead of the first
// fragment when it comes in a later batch; one whose first does not come
// within frag_hold_time is dropped as parse.fragment_without_first.
func TestFragHold(t *testing.T) {
	h := newHoldHarness(t, 4)
	later := laterFrag4(7)
	if out := h.Push(0, pipelinetest.Packet(later)); len(out) != 0 {
		t.Fatalf("a later fragment before its first left by %v, want held", out)
	}
	out := h.Push(int64(time.Millisecond), pipelinetest.Packet(firstFrag4(5353, 7)))
	ok := out["out"]
	if len(ok) != 2 || len(out["bad"]) != 0 {
		t.Fatalf("out %d, bad %d, want the held fragment and its first on out", len(ok), len(out["bad"]))
	}
	held, first := ok[0], ok[1]
	want := first.Flow
	want.Flags |= pipeline.FlowLaterFragment
	if !bytes.Equal(held.Data(), later) || held.Flow != want || held.Hash != first.Hash || held.L3 != 14 || held.L4 != 34 {
		t.Errorf("held fragment sent as % x\nflow %+v hash %#x L3 %d L4 %d, want its bytes, flow %+v hash %#x", held.Data(), held.Flow, held.Hash, held.L3, held.L4, want, first.Hash)
	}

	// Another orphan, whose first never comes: dropped after 5 ms, at the
	// end of the first batch past it.
	h.Push(int64(2*time.Millisecond), pipelinetest.Packet(laterFrag4(8)))
	h.Push(int64(6*time.Millisecond), pipelinetest.Packet(synPadded))
	if s := holdStats(h); s[reasonFragNoFirst.String()] != 0 {
		t.Errorf("dropped after 4 ms: %v", s)
	}
	h.Push(int64(8*time.Millisecond), pipelinetest.Packet(synPadded))
	s := holdStats(h)
	if s["held_total"] != 2 || s["released_total"] != 1 || s[reasonFragNoFirst.String()] != 1 {
		t.Errorf("counters %v, want 2 held, 1 released, 1 fragment_without_first", s)
	}
	// In: 5 packets and 1 emitted; out: 4; the released orphan's own
	// frame consumed, the other dropped.
	if st := h.Stats(); st.Consumed != 1 || st.Dropped != 1 || st.Emitted != 1 {
		t.Errorf("consumed %d dropped %d emitted %d, want 1 1 1: every packet in counted once", st.Consumed, st.Dropped, st.Emitted)
	}
}

// TestFragHoldBounded: with every slot taken, a new orphan takes the
// oldest one's, which is dropped; with frag_hold = 0 an orphan is dropped
// at once, as without a hold.
func TestFragHoldBounded(t *testing.T) {
	h := newHoldHarness(t, 2)
	for id := range uint16(3) {
		h.Push(int64(id), pipelinetest.Packet(laterFrag4(10+id)))
	}
	out := h.Push(3, pipelinetest.Packet(firstFrag4(1, 10)), pipelinetest.Packet(firstFrag4(2, 11)), pipelinetest.Packet(firstFrag4(3, 12)))
	if s := holdStats(h); len(out["out"]) != 5 || s[reasonFragNoFirst.String()] != 1 || s["released_total"] != 2 {
		t.Errorf("out %d (want 3 first fragments and 2 held ones), counters %v (want the oldest dropped)", len(out["out"]), s)
	}

	h = newHoldHarness(t, 0)
	if out := h.Push(0, pipelinetest.Packet(laterFrag4(1))); len(out["bad"]) != 1 || out["bad"][0].Reason != reasonFragNoFirst {
		t.Errorf("frag_hold = 0: %v, want dropped as fragment_without_first", out)
	}
}

// TestFragHoldAtStop: fragments still held when the graph stops are
// counted as dropped.
func TestFragHoldAtStop(t *testing.T) {
	h := newHoldHarness(t, 4)
	h.Push(0, pipelinetest.Packet(laterFrag4(1)))
	if err := h.Element().(*Parse5Tuple).Cleanup(); err != nil {
		t.Fatal(err)
	}
	if s := holdStats(h); s[reasonFragNoFirst.String()] != 1 {
		t.Errorf("counters %v, want the held fragment dropped", s)
	}
}
