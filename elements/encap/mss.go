package encap

import (
	"sync/atomic"

	"github.com/xlbproject/xlb/elements/internal/csum"
	"github.com/xlbproject/xlb/pipeline"
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "MSSClamp",
		Doc:     "Lowers the MSS option of TCP SYNs to at most mss, so that segments fit a tunnel without path MTU discovery.",
		Inputs:  []string{"in"},
		Outputs: []string{"out"},
		New:     func() pipeline.Element { return &MSSClamp{} },
	})
}

// MSSClamp rewrites the MSS option (RFC 9293 section 3.7.1) of TCP SYNs
// down to MSS, as routers in front of tunnels do, for clients behind
// networks that drop the ICMP errors path MTU discovery needs. Path MTU
// handling in the encapsulation elements makes it optional; it changes
// only SYNs whose MSS is larger, and every packet leaves by out.
type MSSClamp struct {
	MSS int `hcl:"mss" doc:"largest MSS a TCP SYN may announce, 536 to 65535: the tunnel's MTU minus the outer, inner IP and TCP headers (1500 - 44 - 40 - 20 = 1396 covers every GRE case)"`

	clamped uint64 // this batch's, owned by the worker
	total   atomic.Uint64
}

// Validate checks mss.
func (m *MSSClamp) Validate() error {
	if m.MSS < 536 || m.MSS > 65535 {
		return &pipeline.AttrError{Attr: "mss", Msg: "must be between 536 (RFC 9293's default) and 65535"}
	}
	return nil
}

// Push clamps p's MSS option when p is a TCP SYN. Input: L3, L4 and Flow
// as Parse5Tuple writes them; fragments and ICMP errors pass unchanged.
func (m *MSSClamp) Push(_ int, p *pipeline.Packet) int {
	if p.Flow.Proto != 6 || p.Flow.Flags&(pipeline.FlowFragment|pipeline.FlowICMPError) != 0 {
		return 0
	}
	data := p.Data()
	l4 := int(p.L4)
	if l4 < int(p.L3) || l4+20 > len(data) || data[l4+13]&0x02 == 0 {
		return 0
	}
	end := l4 + int(data[l4+12]>>4)*4
	if end > len(data) {
		return 0
	}
	for i := l4 + 20; i < end; {
		switch data[i] {
		case 0: // end of option list
			return 0
		case 1: // no-operation
			i++
			continue
		}
		if i+1 >= end || data[i+1] < 2 || i+int(data[i+1]) > end {
			return 0
		}
		if data[i] == 2 && data[i+1] == 4 {
			old := be16(data[i+2:])
			if int(old) > m.MSS {
				put16(data[i+2:], uint16(m.MSS))
				// The value's bytes straddle two checksum words when
				// it starts at an odd offset: sum them swapped.
				o, n := old, uint16(m.MSS)
				if (i+2-l4)&1 == 1 {
					o, n = o<<8|o>>8, n<<8|n>>8
				}
				put16(data[l4+16:], csum.Replace(be16(data[l4+16:]), o, n))
				m.clamped++
			}
			return 0
		}
		i += int(data[i+1])
	}
	return 0
}

// EndBatch publishes the batch's count.
func (m *MSSClamp) EndBatch() {
	if m.clamped != 0 {
		m.total.Add(m.clamped)
		m.clamped = 0
	}
}

// Stats reports the SYNs clamped.
func (m *MSSClamp) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_mss_clamped_total", Help: "TCP SYNs whose MSS option was lowered.", Value: m.total.Load()})
}

var (
	_ pipeline.Pusher        = (*MSSClamp)(nil)
	_ pipeline.Validator     = (*MSSClamp)(nil)
	_ pipeline.BatchEnder    = (*MSSClamp)(nil)
	_ pipeline.StatsReporter = (*MSSClamp)(nil)
)
