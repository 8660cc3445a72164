package dr

import (
	"bytes"
	"testing"

	"github.com/xlbproject/xlb/pipeline"
)

// FuzzPush: whatever the frame and the real it names, Push either sends
// it on out with only its destination MAC address changed, to the real's,
// and marked OnLink, or leaves it unchanged on bad with a reason.
func FuzzPush(f *testing.F) {
	f.Add(frame(), uint32(realOnLink), uint32(epoch)) // followed, resolved
	f.Add(frame(), uint32(realStatic), uint32(epoch)) // static
	f.Add(frame(), uint32(realOff), uint32(epoch))    // off the segment
	f.Add(frame(), uint32(realOnLink), uint32(1))     // stale epoch
	f.Add(frame()[:13], uint32(realStatic), uint32(epoch))
	f.Add([]byte{}, uint32(99), uint32(epoch)) // no such real
	nbs := &fakeNeighbors{}
	nbs.mac.Store(1<<48 | 0x02000000be01)
	e := newTestDR(f, nbs)
	// Whether the follower has started yet only moves packets between
	// dr.unresolved and out, both checked.
	want := map[uint32][]byte{realOnLink: {2, 0, 0, 0, 0xbe, 1}, realStatic: {2, 0, 0, 0, 0xbe, 3}}
	f.Fuzz(func(t *testing.T, data []byte, id, ep uint32) {
		buf := append([]byte(nil), data...)
		var p pipeline.Packet
		p.SetFrame(buf, 0, len(buf))
		p.Backend, p.Epoch = id, ep
		e.view.StartBatch(0)
		e.StartBatch(0)
		port := e.Push(0, &p)
		e.EndBatch()
		e.view.EndBatch()
		switch port {
		case portOut:
			if !p.OnLink || len(buf) < 14 || !bytes.Equal(buf[:6], want[id]) || !bytes.Equal(buf[6:], data[6:]) {
				t.Fatalf("sent % x for real %d, from % x", buf, id, data)
			}
		case portBad:
			if p.Reason == pipeline.ReasonNone || p.OnLink || !bytes.Equal(buf, data) {
				t.Fatalf("dropped with reason %v, OnLink %v, frame % x from % x", p.Reason, p.OnLink, buf, data)
			}
		default:
			t.Fatalf("port %d", port)
		}
	})
}
