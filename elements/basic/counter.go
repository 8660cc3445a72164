package basic

import (
	"sync/atomic"

	"github.com/xlbproject/xlb/pipeline"
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "Counter",
		Doc:     "Counts packets and bytes passing through.",
		Inputs:  []string{"in"},
		Outputs: []string{"out"},
		New:     func() pipeline.Element { return &Counter{} },
	})
}

// Counter passes every packet through, counting packets and bytes.
type Counter struct {
	nPkts, nBytes uint64 // this batch, published in EndBatch
	pkts, bytes   atomic.Uint64
}

// Push counts the packet and passes it to out.
func (c *Counter) Push(_ int, p *pipeline.Packet) int {
	c.nPkts++
	c.nBytes += uint64(p.Len())
	return 0
}

// EndBatch publishes the batch's counts.
func (c *Counter) EndBatch() {
	if c.nPkts > 0 {
		c.pkts.Add(c.nPkts)
		c.bytes.Add(c.nBytes)
		c.nPkts, c.nBytes = 0, 0
	}
}

// Packets returns the published packet count.
func (c *Counter) Packets() uint64 { return c.pkts.Load() }

// Bytes returns the published byte count.
func (c *Counter) Bytes() uint64 { return c.bytes.Load() }

// Stats reports xlb_counter_packets_total and xlb_counter_bytes_total.
func (c *Counter) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_counter_packets_total", Help: "Packets that passed the counter.", Value: c.pkts.Load()})
	emit(pipeline.Metric{Name: "xlb_counter_bytes_total", Help: "Bytes that passed the counter (Ethernet frame, no FCS).", Value: c.bytes.Load()})
}

var (
	_ pipeline.Pusher        = (*Counter)(nil)
	_ pipeline.BatchEnder    = (*Counter)(nil)
	_ pipeline.StatsReporter = (*Counter)(nil)
)
