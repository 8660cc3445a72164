// Package basic holds the small elements every xlb graph uses: Discard, the
// sink for dropped packets, and Counter, a pass-through packet and byte
// counter. They are Click's Discard and Counter elements (Kohler et al.,
// "The Click modular router", TOCS 2000); drops are counted by the engine,
// per element and reason, as VPP's error counters are.
package basic

import (
	"github.com/xlbproject/xlb/pipeline"
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:   "Discard",
		Doc:    "Drops every packet; the engine counts it under this element and its drop reason.",
		Inputs: []string{"in"},
		New:    func() pipeline.Element { return Discard{} },
	})
}

// Discard is a sink that drops every packet: the engine counts it under
// the Discard instance and p.Reason, which the element that sent it here
// set, and recycles it.
type Discard struct{}

// Push drops the packet.
func (Discard) Push(int, *pipeline.Packet) int { return pipeline.Drop }

var _ pipeline.Pusher = Discard{}
